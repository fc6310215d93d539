"""The quickstart's serving half, scripts/serve-examples, run for real: it
starts `meshserve up`, applies examples/resources/, and takes `up` down with
it on Ctrl-C or SIGTERM. scripts/quickstart only installs and makes the
models before it hands over to it."""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import tritonclient.grpc as triton_grpc
import yaml

from tests._examples import ROOT, assert_outputs_match, iris_rows, library_predictions
from tests._processes import read_until
from tests.integration._resources import status, status_field, wait_status
from tests.integration._up import grpc_outputs, iris_grpc_input

pytestmark = pytest.mark.timeout(180)

SCRIPT = ROOT / "scripts" / "serve-examples"
RESOURCES = ROOT / "examples" / "resources"
_APPLIED = re.compile(r"^serve-examples: applied")
_GRPC = re.compile(r"meshserve up: gRPC (\S+)")
_FREE_PORTS = ("--grpc-port", "0", "--rest-port", "0", "--metrics-port", "0")


@dataclass(frozen=True, slots=True)
class ServeExamples:
    """A running scripts/serve-examples."""

    proc: subprocess.Popen[bytes]
    data_dir: pathlib.Path
    grpc: str
    stdout: list[str]
    log: pathlib.Path
    """stderr of the script and of `up`."""

    def up_process(self) -> psutil.Process:
        (child,) = psutil.Process(self.proc.pid).children()
        return child


@pytest.fixture(scope="module")
def pvc_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A stand-in for examples/: the example models under models/ (the claim
    the resources name), made here since examples/models/ is not committed."""
    root = tmp_path_factory.mktemp("examples")
    from tests._examples import make_models_module

    make_models_module().make_models(root / "models")
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")}
    # The script runs `meshserve` from PATH: this venv's.
    env["PATH"] = f"{pathlib.Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@contextlib.contextmanager
def serve_examples(data_dir: pathlib.Path, pvc_root: pathlib.Path) -> Iterator[ServeExamples]:
    """Run the script on free ports until it has applied the resources; at
    the end, stop whatever of its process group is left."""
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(SCRIPT), "--data-dir", str(data_dir), "--pvc-root", str(pvc_root), *_FREE_PORTS],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=_env(),
            # Its own process group, so a test can press "Ctrl-C" on it alone.
            start_new_session=True,
        )
        try:
            try:
                lines = read_until(proc, _APPLIED, timeout=90)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nstderr:\n{log.read_text()[-4000:]}") from None
            grpc = next(m.group(1) for line in lines if (m := _GRPC.search(line)))
            yield ServeExamples(proc=proc, data_dir=data_dir, grpc=grpc, stdout=lines, log=log)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture(scope="module")
def served(
    pvc_root: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeExamples]:
    with serve_examples(tmp_path_factory.mktemp("quickstart") / "data", pvc_root) as running:
        yield running


def _documents() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(RESOURCES.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def _model_dir(document: dict[str, Any]) -> str:
    """The example model (its directory under the claim) a resource serves."""
    spec = document["spec"]
    if document["kind"] == "Predictor":
        assert spec["storage"]["parameters"] == {"type": "pvc", "name": "models"}
        return str(spec["storage"]["path"])
    (block,) = spec["predictor"].values()
    uri: str = block["storageUri"]
    assert uri.startswith("pvc://models/"), uri
    return uri.removeprefix("pvc://models/")


def test_the_resources_cover_every_example_model_in_each_form() -> None:
    documents = _documents()
    registered = yaml.safe_load((ROOT / "examples" / "models.yaml").read_text())["models"]
    isvcs = {
        d["metadata"]["name"]: _model_dir(d)
        for d in documents
        if d["kind"] == "InferenceService" and "model" in d["spec"]["predictor"]
    }
    assert isvcs == {m["name"]: m["name"] for m in registered}
    for document in documents:
        assert (
            document["metadata"]
            .get("annotations", {})
            .get("serving.kserve.io/deploymentMode", "ModelMesh")
            == "ModelMesh"
        )
    kinds = [(d["kind"], sorted(d["spec"].get("predictor", {}))) for d in documents]
    assert ("Predictor", []) in kinds
    assert ("InferenceService", ["sklearn"]) in kinds  # the old framework form


def test_every_example_becomes_ready_and_answers_like_its_library(
    served: ServeExamples, pvc_root: pathlib.Path
) -> None:
    documents = _documents()
    applied = [line for line in served.stdout if line.endswith((" created", " configured"))]
    assert len(applied) == len(documents), served.stdout
    rows = iris_rows(5)
    client = triton_grpc.InferenceServerClient(served.grpc)
    try:
        for document in documents:
            name, model = document["metadata"]["name"], _model_dir(document)
            kind = "predictor" if document["kind"] == "Predictor" else "isvc"
            ready = wait_status(served, name, kind=kind, ready=True)
            assert status_field(ready, "activeModelState", kind=kind) == "Loaded", (name, ready)
            assert status_field(ready, "transitionStatus", kind=kind) == "UpToDate", (name, ready)
            result = client.infer(name, [iris_grpc_input(model, rows)], client_timeout=30)
            source = "ksp" if kind == "predictor" else "isvc"
            assert result.get_response().model_name.startswith(f"{name}__{source}-")
            (artifact,) = (pvc_root / "models" / model).iterdir()
            expected = library_predictions(model, artifact, rows)
            assert_outputs_match(grpc_outputs(result), expected)
    finally:
        client.close()


def test_get_isvc_lists_every_inference_service_ready(served: ServeExamples) -> None:
    names = sorted(d["metadata"]["name"] for d in _documents() if d["kind"] == "InferenceService")
    for name in names:
        wait_status(served, name, ready=True)
    assert all(status_field(status(served, "isvc", name), "ready") for name in names)


@pytest.mark.parametrize(
    ("how", "code"),
    [("ctrl-c", 130), ("sigterm", 143)],
)
def test_stopping_the_script_stops_up(
    how: str, code: int, pvc_root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with serve_examples(tmp_path / "data", pvc_root) as running:
        up = running.up_process()
        assert "meshserve" in " ".join(up.cmdline()) and "up" in up.cmdline()
        if how == "ctrl-c":
            # A terminal's Ctrl-C: SIGINT to the whole foreground group.
            os.killpg(running.proc.pid, signal.SIGINT)
        else:
            # A supervisor's stop: SIGTERM to the script alone.
            running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(45) == code
        assert not up.is_running() or up.status() == psutil.STATUS_ZOMBIE
        # It shut down (SIGTERM's drain), not killed after the script's patience ran out.
        assert "Finished server process" in running.log.read_text()
