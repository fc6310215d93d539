"""A kubectl user's habits and the checks `apply` makes up front, on a real
`meshserve up`: refused storage locations (exit 1, nothing stored), -n,
mixed files, delete -f, unchanged re-apply, `models status` of an
InferenceService, MESHSERVE_ENDPOINT and a stale endpoints.json."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.integration._mesh import make_model, wait_until
from tests.integration._resources import apply, cli, isvc
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(240)

_DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
_SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: modelmesh-serving}\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, pathlib.Path]:
    """A pvc root with claim ``claim``, and a directory served as claim ``trial``."""
    pvc = tmp_path_factory.mktemp("pvc")
    make_model(pvc / "claim" / "v1" / "model.skops")
    trial = tmp_path_factory.mktemp("trial")
    make_model(trial / "model.skops")
    return pvc, trial


@pytest.fixture(scope="module")
def up(
    dirs: tuple[pathlib.Path, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    pvc, trial = dirs
    args = ["--pvc-root", str(pvc), "--pvc-root", f"trial={trial}"]
    with run_up(tmp_path_factory.mktemp("habits"), args=args) as running:
        yield running


def _names(up: Up, *args: str) -> list[str]:
    done = cli(up, "get", "isvc", "-o", "json", *args)
    assert done.returncode == 0, done.stderr
    return [item["metadata"]["name"] for item in json.loads(done.stdout)["items"]]


def _predictor(name: str, path: str) -> str:
    return (
        "apiVersion: serving.kserve.io/v1alpha1\nkind: Predictor\n"
        f"metadata: {{name: {name}}}\n"
        f"spec: {{modelType: {{name: sklearn}}, path: {path}}}\n"
    )


def _model_status(up: Up, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshserve", "models", "status", name, "-o", "json", *args,
         "--endpoint", up.grpc],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("claim/v1/model.skops", "has no scheme"),
        ("ftp://example.test/model.skops", "'ftp' is not supported"),
        ("pvc://claim/../../etc/model.skops", "escapes its root"),
    ],
)
def test_a_bad_storage_uri_exits_1_and_nothing_is_stored(up: Up, uri: str, said: str) -> None:
    text = isvc("fine", uri="pvc://claim/v1/model.skops") + "---\n" + isvc("bad", uri=uri)

    done = apply(up, text)

    assert done.returncode == 1
    assert "INVALID_ARGUMENT" in done.stderr and said in done.stderr, done.stderr
    assert "storageUri" in done.stderr and done.stdout == ""
    if said != "escapes its root":
        for scheme in ("s3://", "gs://", "pvc://", ".blob.core.windows.net", "http(s)://"):
            assert scheme in done.stderr
    assert _names(up) == []


def test_a_local_path_outside_the_roots_is_refused(
    up: Up, dirs: tuple[pathlib.Path, pathlib.Path]
) -> None:
    outside = apply(up, _predictor("outside", "/etc/passwd"))
    escaping = apply(up, _predictor("escaping", f"{dirs[0]}/../../etc/passwd"))

    assert outside.returncode == 1
    assert "outside the allowed roots" in outside.stderr, outside.stderr
    assert escaping.returncode == 1 and "escapes its root" in escaping.stderr
    listed = cli(up, "get", "predictor", "-o", "json")
    assert json.loads(listed.stdout)["items"] == []


def test_a_named_claim_serves_a_local_directory_and_models_status_takes_the_isvc_name(
    up: Up,
) -> None:
    done = apply(up, isvc("trial", uri="pvc://trial/model.skops"))
    assert done.returncode == 0, done.stderr

    def loaded() -> bool:
        shown = _model_status(up, "trial")
        return shown.returncode == 0 and json.loads(shown.stdout)["status"] == "LOADED"

    wait_until(loaded, 60, "isvc trial loaded")
    shown = _model_status(up, "trial")
    assert json.loads(shown.stdout)["modelId"].startswith("trial__isvc-")
    assert "vmodels status trial" in shown.stderr
    assert cli(up, "delete", "isvc", "trial").returncode == 0


def test_namespace_on_apply_get_and_delete(up: Up) -> None:
    done = apply(up, isvc("iris", namespace="team-a", uri="pvc://claim/v1/model.skops"))
    assert done.returncode == 0, done.stderr
    placed = cli(up, "apply", "-n", "team-b", "-f", "-", stdin=_unnamespaced("iris"))
    assert placed.returncode == 0, placed.stderr

    assert _names(up, "-n", "team-a") == ["iris"]
    assert _names(up, "-n", "team-b") == ["iris"]
    assert _names(up) == []
    assert cli(up, "delete", "isvc", "iris", "-n", "team-a").returncode == 0
    assert _names(up, "-n", "team-a") == []
    assert cli(up, "delete", "isvc", "iris", "-n", "team-b").returncode == 0


def _unnamespaced(name: str) -> str:
    return isvc(name, uri="pvc://claim/v1/model.skops").replace("  namespace: default\n", "")


def test_a_mixed_file_applies_its_resources_lists_the_rest_and_delete_f_removes_them(
    up: Up,
) -> None:
    text = "---\n".join([_SERVICE, _unnamespaced("one"), _DEPLOYMENT, _unnamespaced("two")])

    done = apply(up, text)
    again = apply(up, text)
    deleted = cli(up, "delete", "-f", "-", stdin=text)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "inferenceservice/one created",
        "inferenceservice/two created",
        "skipped: Service/modelmesh-serving (not managed by meshserve)",
        "skipped: Deployment/web (not managed by meshserve)",
    ]
    assert again.stdout.splitlines()[:2] == [
        "inferenceservice/one unchanged",
        "inferenceservice/two unchanged",
    ]
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.splitlines()[:2] == [
        "inferenceservice/one deleted",
        "inferenceservice/two deleted",
    ]
    assert _names(up) == []


def test_get_honours_meshserve_endpoint(up: Up, tmp_path: pathlib.Path) -> None:
    done = apply(up, _unnamespaced("env"))
    assert done.returncode == 0, done.stderr
    env = {**os.environ, "MESHSERVE_ENDPOINT": up.grpc}

    listed = subprocess.run(
        [sys.executable, "-m", "meshserve", "get", "isvc", "-o", "json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip

    assert listed.returncode == 0, listed.stderr
    assert [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]] == ["env"]
    assert cli(up, "delete", "isvc", "env").returncode == 0


def test_a_stale_endpoints_file_names_the_up_that_exited(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "gone"
    with run_up(data_dir) as gone:
        pid = gone.pid
    assert (data_dir / "endpoints.json").exists()

    done = cli(gone, "get", "isvc")

    assert done.returncode == 3
    assert str(data_dir / "endpoints.json") in done.stderr
    assert f"pid {pid}" in done.stderr and "no longer running" in done.stderr
