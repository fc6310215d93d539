"""kubectl users' habits in the resource commands, against a store opened
directly (``--store``): -n, mixed files, delete -f, unchanged re-apply,
refused locations, MESHSERVE_ENDPOINT and a stale endpoints.json."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from meshserve.cli._namespaces import in_listing, in_namespace
from meshserve.cli._resources import apply, delete, get
from meshserve.cli._serve_options import overrides_from_flags


def _isvc(name: str, *, uri: str = "pvc://models/x", namespace: str | None = None) -> str:
    metadata: dict[str, Any] = {
        "name": name,
        "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
    }
    if namespace is not None:
        metadata["namespace"] = namespace
    document = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }
    return yaml.safe_dump(document)


_DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
_CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"


def _run(command: click.Command, tmp_path: pathlib.Path, *args: str, stdin: str = "") -> Result:
    store = ["--store", f"sqlite:///{tmp_path / 'store.db'}"]
    return CliRunner().invoke(command, [*args, *store], input=stdin)


def _names(tmp_path: pathlib.Path, *args: str) -> list[str]:
    listed = _run(get, tmp_path, "isvc", "-o", "json", *args)
    assert listed.exit_code == 0, listed.output
    return [item["metadata"]["name"] for item in json.loads(listed.output)["items"]]


def test_a_mixed_file_applies_what_meshserve_manages_and_lists_the_rest(
    tmp_path: pathlib.Path,
) -> None:
    text = "---\n".join([_DEPLOYMENT, _isvc("iris"), _CONFIGMAP])

    result = _run(apply, tmp_path, "-f", "-", stdin=text)

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "inferenceservice/iris created",
        "skipped: Deployment/web (not managed by meshserve)",
        "skipped: ConfigMap/settings (not managed by meshserve)",
    ]
    assert _names(tmp_path) == ["iris"]


def test_a_file_with_nothing_meshserve_manages_exits_1(tmp_path: pathlib.Path) -> None:
    result = _run(apply, tmp_path, "-f", "-", stdin=_DEPLOYMENT)

    assert result.exit_code == 1
    assert "skipped: Deployment/web" in result.output
    assert "no resources meshserve manages" in result.output


def test_a_re_apply_says_unchanged_and_a_change_configured(tmp_path: pathlib.Path) -> None:
    assert _run(apply, tmp_path, "-f", "-", stdin=_isvc("iris")).exit_code == 0

    again = _run(apply, tmp_path, "-f", "-", stdin=_isvc("iris"))
    changed = _run(apply, tmp_path, "-f", "-", stdin=_isvc("iris", uri="pvc://models/y"))

    assert again.output.strip() == "inferenceservice/iris unchanged"
    assert changed.output.strip() == "inferenceservice/iris configured"


def test_namespace_option_places_documents_and_refuses_another(tmp_path: pathlib.Path) -> None:
    placed = _run(apply, tmp_path, "-n", "team-a", "-f", "-", stdin=_isvc("iris"))
    clash = _run(apply, tmp_path, "-n", "team-a", "-f", "-", stdin=_isvc("x", namespace="team-b"))

    assert placed.exit_code == 0, placed.output
    assert _names(tmp_path, "-n", "team-a") == ["iris"]
    assert _names(tmp_path) == []  # not in default
    assert clash.exit_code == 1
    assert "team-b" in clash.output and "-n team-b" in clash.output
    assert _names(tmp_path, "-n", "team-b") == []


def test_delete_f_deletes_what_the_file_names_in_the_namespace(tmp_path: pathlib.Path) -> None:
    text = "---\n".join([_isvc("a"), _isvc("b"), _DEPLOYMENT])
    assert _run(apply, tmp_path, "-n", "team-a", "-f", "-", stdin=text).exit_code == 0
    assert _run(apply, tmp_path, "-n", "team-a", "-f", "-", stdin=_isvc("kept")).exit_code == 0

    deleted = _run(delete, tmp_path, "-n", "team-a", "-f", "-", stdin=text)

    assert deleted.exit_code == 0, deleted.output
    assert deleted.output.splitlines() == [
        "inferenceservice/a deleted",
        "inferenceservice/b deleted",
        "skipped: Deployment/web (not managed by meshserve)",
    ]
    assert _names(tmp_path, "-n", "team-a") == ["kept"]


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("models/x", "no scheme"),
        ("ftp://host/x", "'ftp' is not supported"),
        ("pvc://models/../../etc", "escapes its root"),
    ],
)
def test_a_bad_storage_uri_is_refused_with_nothing_written(
    tmp_path: pathlib.Path, uri: str, said: str
) -> None:
    text = "---\n".join([_isvc("good"), _isvc("bad", uri=uri)])

    result = _run(apply, tmp_path, "-f", "-", stdin=text)

    assert result.exit_code == 1
    assert said in result.output and "storageUri" in result.output
    if said != "escapes its root":
        for scheme in ("s3://", "gs://", "pvc://", ".blob.core.windows.net", "http(s)://"):
            assert scheme in result.output
    assert _names(tmp_path) == []


def test_meshserve_endpoint_names_the_server_of_get(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.meshserve here
    result = CliRunner().invoke(
        get, ["isvc", "--timeout", "2"], env={"MESHSERVE_ENDPOINT": "127.0.0.1:9"}
    )

    assert result.exit_code == 3
    assert "127.0.0.1:9" in result.output


def test_a_stale_endpoints_file_is_named_with_its_pid(tmp_path: pathlib.Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"grpc": "127.0.0.1:9", "pid": gone.pid}))

    result = CliRunner().invoke(get, ["isvc", "--data-dir", str(tmp_path)])

    assert result.exit_code == 3
    assert str(endpoints) in result.output
    assert f"pid {gone.pid}" in result.output and "no longer running" in result.output


def test_namespace_qualifies_model_ids() -> None:
    assert in_namespace("iris", None) == "iris"
    assert in_namespace("iris", "default") == "iris"
    assert in_namespace("iris", "team-a") == "team-a/iris"
    assert in_namespace("team-a/iris", "team-a") == "team-a/iris"
    with pytest.raises(click.UsageError, match="team-b"):
        in_namespace("team-b/iris", "team-a")
    assert in_listing("team-a/iris", "team-a") and not in_listing("iris", "team-a")
    assert in_listing("iris", "default") and in_listing("team-a/iris", None)


def _pvc_flags(*values: str) -> dict[str, Any]:
    flags: dict[str, Any] = dict.fromkeys(
        overrides_from_flags.__code__.co_varnames[: overrides_from_flags.__code__.co_kwonlyargcount]
    )
    flags["pvc_roots"] = values
    storage: dict[str, Any] = overrides_from_flags(**flags)["storage"]
    return storage


def test_pvc_root_takes_a_root_and_named_claims(tmp_path: pathlib.Path) -> None:
    storage = _pvc_flags(str(tmp_path / "pvc"), f"models={tmp_path / 'mine'}", "rel=some/dir")

    assert storage["pvc_root"] == tmp_path / "pvc"
    assert storage["pvc_claims"] == {
        "models": tmp_path / "mine",
        "rel": pathlib.Path("some/dir").absolute(),
    }
    assert _pvc_flags()["pvc_claims"] is None
    # A later root wins (scripts/serve-examples passes a default one first).
    assert _pvc_flags(str(tmp_path / "a"), str(tmp_path / "b"))["pvc_root"] == tmp_path / "b"
    for bad in (("=dir",), ("a/b=dir",), ("name=",)):
        with pytest.raises(click.BadParameter):
            _pvc_flags(*bad)
