"""`meshserve apply -f DIR` and the example resources it is shown with."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from click.testing import CliRunner

from meshserve.cli._resources import apply, get
from meshserve.resources import load_documents
from tests._examples import ROOT

EXAMPLES = ROOT / "examples" / "resources"


def _store_args(tmp_path: pathlib.Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path / 'store.db'}"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_each_example_resource_parses_with_nothing_ignored(path: pathlib.Path) -> None:
    (resource,) = load_documents(path.read_text())
    assert resource.ignored_fields() == []


def test_apply_of_a_directory_applies_its_manifests_in_name_order(tmp_path: pathlib.Path) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, manifests)
    (manifests / "notes.txt").write_text("not a manifest")
    (manifests / "nested").mkdir()
    shutil.copy(EXAMPLES / "onnx.yaml", manifests / "nested" / "other.yaml")

    result = CliRunner().invoke(apply, ["-f", str(manifests), *_store_args(tmp_path)])

    assert result.exit_code == 0, result.output
    names = [path.stem for path in sorted(EXAMPLES.glob("*.yaml"))]
    assert [line.split("/")[1].split()[0] for line in result.output.splitlines()] == names
    listed = CliRunner().invoke(get, ["isvc", "-o", "json", *_store_args(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count('"kind": "InferenceService"') == 6


def test_a_bad_file_in_a_directory_is_named_and_nothing_is_applied(
    tmp_path: pathlib.Path,
) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLES, manifests)
    # A typo of a meshserve kind (its API group) is an error, not skipped.
    (manifests / "zz-broken.yaml").write_text(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceServce\nmetadata: {name: x}\n"
    )

    result = CliRunner().invoke(apply, ["-f", str(manifests), *_store_args(tmp_path)])

    assert result.exit_code == 1
    assert "zz-broken.yaml" in result.output
    listed = CliRunner().invoke(get, ["isvc", *_store_args(tmp_path)])
    assert listed.output.splitlines()[1:] == []


def test_without_a_running_up_the_commands_say_where_else_to_look(tmp_path: pathlib.Path) -> None:
    result = CliRunner().invoke(get, ["isvc", "--data-dir", str(tmp_path / "no-up")])

    assert result.exit_code == 3
    assert "endpoints.json" in result.output
    assert "--grpc" in result.output and "--store" in result.output


def test_root_prefix_goes_with_store(tmp_path: pathlib.Path) -> None:
    result = CliRunner().invoke(get, ["isvc", "--data-dir", str(tmp_path), "--root-prefix", "x"])

    assert result.exit_code == 2
    assert "--store" in result.output
