"""The client commands (`meshserve models|vmodels|infer`) against one real
`meshserve up`, run as subprocesses so exit codes and streams are real."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import grpc
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from meshserve.cli import _output, cli
from meshserve.protocol import codecs
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from tests._examples import ROOT, assert_outputs_match, library_predictions, model_type
from tests._processes import meshserve, wait_for_line

pytestmark = pytest.mark.integration

REQUESTS = ROOT / "examples" / "requests"
# The in-process runtime refuses pickle, so sklearn-joblib is not served here.
SERVED = ("sklearn-skops", "xgboost-json", "xgboost-ubj", "lightgbm", "onnx")


@dataclass(frozen=True)
class Instance:
    grpc: str
    rest: str
    data_dir: pathlib.Path
    cwd: pathlib.Path  # has no .meshserve/, so nothing picks an endpoint by accident
    models: dict[str, pathlib.Path]  # example name -> model directory


@pytest.fixture(scope="module")
def instance(
    tmp_path_factory: pytest.TempPathFactory, example_models: dict[str, pathlib.Path]
) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("cli")
    models = {name: example_models[name].parent for name in SERVED}
    register = root / "models.yaml"
    register.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": name, "type": model_type(name), "path": str(path)}
                    for name, path in models.items()
                ]
            }
        )
    )
    data_dir = root / "data"
    cwd = root / "cwd"
    cwd.mkdir()
    args = ["up", "--data-dir", str(data_dir), "--grpc-port", "0", "--rest-port", "0"]
    args += ["--metrics-port", "0"]
    with meshserve([*args, "--register", str(register)]) as proc:
        # One wait: wait_for_line drops what it read past the matching line.
        wait_for_line(proc, r"meshserve up: ready")
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        yield Instance(
            grpc=endpoints["grpc"],
            rest=endpoints["rest"],
            data_dir=data_dir,
            cwd=cwd,
            models=models,
        )
    shutil.rmtree(root, ignore_errors=True)


def run(
    args: Sequence[str], *, cwd: pathlib.Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")}
    return subprocess.run(
        [sys.executable, "-m", "meshserve", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def client(inst: Instance, *args: str) -> subprocess.CompletedProcess[str]:
    """A client command against the fixture's instance."""
    return run([*args, "--endpoint", inst.grpc], cwd=inst.cwd)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int, prefix: str) -> None:
    """Exit ``code``, nothing on stdout, stderr starting with ``prefix``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith(prefix), result.stderr


def table(stdout: str) -> list[dict[str, str]]:
    """Parse an aligned table, checking every cell starts under its header."""
    header, *lines = stdout.rstrip("\n").split("\n")
    names = header.split()
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines:
        cells = line.split()
        assert len(cells) == len(names), (header, line)
        assert [line.index(c, s) for c, s in zip(cells, starts, strict=True)] == starts, line
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def parallel(
    *calls: Callable[[], subprocess.CompletedProcess[str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at once: each start costs about a second."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def outputs(stdout: str) -> tuple[str, dict[str, np.ndarray]]:
    response = codecs.response_from_json(stdout.encode())
    return response.model_name, {t.name: np.asarray(t.data) for t in response.outputs}


def request_rows(name: str) -> np.ndarray:
    (tensor,) = json.loads((REQUESTS / f"{name}.json").read_text())["inputs"]
    return np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- models -------------------------------------------------------------------


def test_register_makes_path_absolute_is_idempotent_and_conflicts(instance: Instance) -> None:
    skops = instance.models["sklearn-skops"]
    args = ["models", "register", "cli-reg", "--type", "sklearn", "--path", skops.name]
    relative = run([*args, "--endpoint", instance.grpc], cwd=skops.parent)
    (row,) = table(ok(relative))
    assert row == {"MODEL": "cli-reg", "STATUS": "NOT_LOADED", "COPIES": "-", "ERRORS": "-"}
    register = partial(client, instance, "models", "register", "cli-reg", "--path")
    onnx = str(instance.models["onnx"])
    identical, conflict, listed = parallel(
        # Identical: the server compares paths as strings, so the CLI made it absolute.
        partial(register, str(skops), "--type", "sklearn"),
        partial(register, onnx, "--type", "onnx"),
        partial(client, instance, "models", "list", "-o", "json"),
    )
    ok(identical)
    fails(conflict, 1, "error: ALREADY_EXISTS: model 'cli-reg' is already registered")
    (summary,) = [m for m in json.loads(ok(listed))["models"] if m["modelId"] == "cli-reg"]
    assert summary["path"] == str(skops) and summary["type"] == "sklearn"
    assert ok(client(instance, "models", "unregister", "cli-reg")) == "unregistered cli-reg\n"
    fails(client(instance, "models", "status", "cli-reg"), 1, "error: NOT_FOUND: ")


def test_list_as_table_and_json(instance: Instance) -> None:
    as_table, as_json = parallel(
        partial(client, instance, "models", "list"),
        partial(client, instance, "models", "list", "-o", "json"),
    )
    rows = table(ok(as_table))
    assert list(rows[0]) == [
        "MODEL", "TYPE", "STATUS", "COPIES", "SIZE", "LAST-USED", "PULL", "VMODELS"
    ]  # fmt: skip
    by_name = {row["MODEL"]: row for row in rows}
    assert set(SERVED) <= set(by_name)
    assert by_name["xgboost-json"]["TYPE"] == "xgboost"
    summaries = {m["modelId"]: m for m in json.loads(ok(as_json))["models"]}
    assert set(SERVED) <= set(summaries)
    assert set(summaries["lightgbm"]) == {
        "modelId", "type", "path", "status", "errors", "sizeBytes", "lastUsedTime", "copies",
        "loadCount", "evictionCount", "lastLoadMillis", "autoDelete", "vModelIds",
        "pullMillis", "pullBytes", "pullTotalBytes", "pulledFromCache",
    }  # fmt: skip
    assert summaries["lightgbm"]["path"] == str(instance.models["lightgbm"])


def test_status_and_ensure_loaded_sync(instance: Instance) -> None:
    path = str(instance.models["onnx"])
    registered = client(
        instance, "models", "register", "cli-load", "--type", "onnx", "--path", path, "-o", "json"
    )
    assert json.loads(ok(registered)) == {
        "modelId": "cli-load", "status": "NOT_LOADED", "errors": [], "modelCopyInfos": []
    }  # fmt: skip
    loaded = client(instance, "models", "ensure-loaded", "cli-load", "--sync", "-o", "json")
    assert json.loads(ok(loaded))["status"] == "LOADED"
    as_json, as_table = parallel(
        partial(client, instance, "models", "status", "cli-load", "-o", "json"),
        partial(client, instance, "models", "status", "cli-load"),
    )
    status = json.loads(ok(as_json))
    assert status["modelId"] == "cli-load" and status["status"] == "LOADED"
    (copy,) = status["modelCopyInfos"]
    assert copy["copyStatus"] == "LOADED" and copy["location"] and copy["time"] > 0
    (row,) = table(ok(as_table))
    assert row == {
        "MODEL": "cli-load", "STATUS": "LOADED", "COPIES": f"{copy['location']}(LOADED)",
        "ERRORS": "-", "PULL": "-",
    }  # fmt: skip
    assert status["pull"] == {"millis": 0, "bytes": 0, "totalBytes": 0, "fromCache": False}


def test_not_found_and_failed_loads_exit_1(instance: Instance) -> None:
    request = str(REQUESTS / "onnx.json")
    status, ensure, infer_grpc, infer_rest, broken, unregister = parallel(
        partial(client, instance, "models", "status", "no-such-model"),
        partial(client, instance, "models", "ensure-loaded", "no-such-model", "--sync"),
        partial(client, instance, "infer", "no-such-model", "--input", request),
        partial(
            client,
            instance,
            "infer",
            "no-such-model",
            "--input",
            request,
            "--rest-url",
            instance.rest,
        ),
        partial(
            client,
            instance,
            "models",
            "register",
            "cli-broken",
            "--type",
            "onnx",
            "--path",
            str(instance.cwd / "missing"),
            "--load-now",
            "--sync",
        ),
        partial(client, instance, "models", "unregister", "no-such-model"),
    )
    not_registered = "model 'no-such-model' is not registered"
    fails(status, 1, f"error: NOT_FOUND: {not_registered}")
    fails(ensure, 1, f"error: NOT_FOUND: {not_registered}")
    fails(infer_grpc, 1, f"error: NOT_FOUND: {not_registered}")
    fails(infer_rest, 1, f"error: HTTP 404 NOT_FOUND: {not_registered}")
    fails(broken, 1, "error: LOADING_FAILED: model 'cli-broken': ")
    # Unregistering is idempotent, as in ModelMesh: nothing to do is success.
    assert ok(unregister) == "unregistered no-such-model\n"


# -- infer --------------------------------------------------------------------


def test_infer_matches_the_libraries(instance: Instance) -> None:
    results = parallel(
        *(
            partial(client, instance, "infer", name, "--input", str(REQUESTS / f"{name}.json"))
            for name in SERVED
        )
    )
    for name, result in zip(SERVED, results, strict=True):
        model_name, got = outputs(ok(result))
        assert model_name == name
        (file,) = instance.models[name].iterdir()
        assert_outputs_match(got, library_predictions(name, file, request_rows(name)))


def test_infer_over_rest_prints_what_grpc_prints(instance: Instance) -> None:
    infer = partial(client, instance, "infer", "lightgbm", "--input")
    request = str(REQUESTS / "lightgbm.json")
    over_rest, over_grpc = parallel(
        partial(infer, request, "--rest-url", instance.rest), partial(infer, request)
    )
    assert ok(over_rest) == ok(over_grpc)
    file = instance.models["lightgbm"] / "model.txt"
    expected = library_predictions("lightgbm", file, request_rows("lightgbm"))
    assert_outputs_match(outputs(over_rest.stdout)[1], expected)


# -- vmodels ------------------------------------------------------------------


def test_vmodel_lifecycle_owners_and_routing(instance: Instance) -> None:
    onnx = str(instance.models["onnx"])
    created = client(
        instance, "vmodels", "set", "cli-v", "--target", "cli-vtarget", "--owner", "alice",
        "--type", "onnx", "--path", onnx, "--load-now", "--sync", "-o", "json",
    )  # fmt: skip
    answer = json.loads(ok(created))
    assert answer["vModelId"] == "cli-v" and answer["status"] == "DEFINED"
    assert answer["activeModelId"] == answer["targetModelId"] == "cli-vtarget"
    assert answer["owner"] == "alice" and answer["targetModelStatus"] is None
    assert answer["activeModelStatus"]["status"] == "LOADED"

    vmodels = partial(client, instance, "vmodels")
    bob = ("--owner", "bob")
    request = str(REQUESTS / "onnx.json")
    results = parallel(
        partial(vmodels, "status", "cli-v"),
        partial(client, instance, "infer", "--vmodel-id", "cli-v", "--input", request),
        partial(vmodels, "list", "-o", "json"),
        partial(vmodels, "list"),
        partial(client, instance, "models", "list", "-o", "json"),
        partial(vmodels, "set", "cli-v", "--target", "cli-vtarget", *bob),
        partial(vmodels, "status", "cli-v", *bob),
        partial(vmodels, "delete", "cli-v", *bob),
        partial(client, instance, "models", "unregister", "cli-vtarget"),
    )
    status, routed, listed, list_table, models, set_bob, status_bob, delete_bob, unregister = (
        results
    )
    assert table(ok(status)) == [
        {"VMODEL": "cli-v", "STATUS": "DEFINED", "ACTIVE": "cli-vtarget",
         "ACTIVE-STATUS": "LOADED", "TARGET": "cli-vtarget", "TARGET-STATUS": "-",
         "OWNER": "alice"}
    ]  # fmt: skip
    model_name, got = outputs(ok(routed))
    assert model_name == "cli-vtarget"
    file = instance.models["onnx"] / "model.onnx"
    assert_outputs_match(got, library_predictions("onnx", file, request_rows("onnx")))
    assert {
        "vModelId": "cli-v", "status": "DEFINED", "activeModelId": "cli-vtarget",
        "targetModelId": "cli-vtarget", "owner": "alice",
    } in json.loads(ok(listed))["vModels"]  # fmt: skip
    assert {"VMODEL": "cli-v", "STATUS": "DEFINED", "ACTIVE": "cli-vtarget",
            "TARGET": "cli-vtarget", "OWNER": "alice"} in table(ok(list_table))  # fmt: skip
    # --type/--path registered the target (path made absolute) with autoDeleteTargetModel.
    (target,) = [m for m in json.loads(ok(models))["models"] if m["modelId"] == "cli-vtarget"]
    assert (target["type"], target["path"], target["autoDelete"]) == ("onnx", onnx, True)
    assert target["vModelIds"] == ["cli-v"]

    fails(set_bob, 1, "error: ALREADY_EXISTS: vmodel 'cli-v' exists with owner 'alice'")
    fails(status_bob, 1, "error: NOT_FOUND: vmodel 'cli-v' with owner 'bob' does not exist")
    fails(delete_bob, 1, "error: FAILED_PRECONDITION: vmodel 'cli-v' is owned by 'alice'")
    fails(
        unregister,
        1,
        "error: FAILED_PRECONDITION: model 'cli-vtarget' is used by vmodel(s) cli-v",
    )

    assert ok(vmodels("delete", "cli-v", "--owner", "alice")) == "deleted cli-v\n"
    vmodel_after, model_after = parallel(
        partial(vmodels, "status", "cli-v"),
        partial(client, instance, "models", "status", "cli-vtarget"),
    )
    fails(vmodel_after, 1, "error: NOT_FOUND: vmodel 'cli-v' does not exist")
    # Deleted with the last vmodel that used it.
    fails(model_after, 1, "error: NOT_FOUND: model 'cli-vtarget' is not registered")


# -- usage, connection, defaults ----------------------------------------------


def test_usage_errors_exit_2(instance: Instance) -> None:
    not_v2 = instance.cwd / "not-v2.json"
    not_v2.write_text('{"inputs": 3}')
    bad_flag, lonely_path, malformed = parallel(
        partial(client, instance, "models", "list", "--no-such-flag"),
        partial(client, instance, "vmodels", "set", "v", "--target", "m", "--path", "x"),
        partial(client, instance, "infer", "onnx", "--input", str(not_v2)),
    )
    assert bad_flag.returncode == 2 and "No such option" in bad_flag.stderr
    assert lonely_path.returncode == 2 and "--type and --path go together" in lonely_path.stderr
    assert malformed.returncode == 2 and "--input" in malformed.stderr


def test_unreachable_endpoint_exits_3(instance: Instance) -> None:
    closed = f"127.0.0.1:{closed_port()}"
    request = str(REQUESTS / "onnx.json")
    with socket.create_server(("127.0.0.1", 0)) as silent_server:
        # Accepts TCP connections (the kernel does) but never speaks HTTP/2.
        silent = f"127.0.0.1:{silent_server.getsockname()[1]}"
        flag, env, rest, mute = parallel(
            partial(run, ["models", "list", "--endpoint", closed], cwd=instance.cwd),
            partial(run, ["vmodels", "list"], cwd=instance.cwd, env={"MESHSERVE_ENDPOINT": closed}),
            partial(
                run,
                ["infer", "onnx", "--input", request, "--rest-url", f"http://{closed}"],
                cwd=instance.cwd,
            ),
            partial(
                run, ["models", "list", "--endpoint", silent, "--timeout", "1"], cwd=instance.cwd
            ),
        )
    fails(flag, 3, f"error: cannot connect to {closed}: UNAVAILABLE: ")
    fails(env, 3, f"error: cannot connect to {closed}: UNAVAILABLE: ")
    fails(rest, 3, f"error: cannot connect to http://{closed}: ")
    fails(mute, 3, f"error: cannot connect to {silent}: DEADLINE_EXCEEDED: ")


class _SlowModelMesh(mm_grpc.ModelMeshServicer):
    def getModelStatus(self, request: mm.GetStatusRequest, context: object) -> mm.ModelStatusInfo:
        time.sleep(5)
        return mm.ModelStatusInfo(status=mm.ModelStatusInfo.LOADED)


def test_call_outlasting_its_timeout_exits_1(instance: Instance) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    mm_grpc.add_ModelMeshServicer_to_server(_SlowModelMesh(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        slow = run(
            ["models", "status", "m", "--endpoint", f"127.0.0.1:{port}", "--timeout", "0.5"],
            cwd=instance.cwd,
        )
    finally:
        server.stop(grace=None)
    # It connected, so this is not "cannot connect" (3).
    fails(slow, 1, "error: DEADLINE_EXCEEDED: ")


def test_default_endpoint_comes_from_dot_meshserve(
    instance: Instance, tmp_path: pathlib.Path
) -> None:
    (tmp_path / ".meshserve").mkdir()
    shutil.copy(instance.data_dir / "endpoints.json", tmp_path / ".meshserve" / "endpoints.json")
    request = str(REQUESTS / "onnx.json")
    listed, over_rest = parallel(
        partial(run, ["models", "list", "-o", "json"], cwd=tmp_path),
        partial(run, ["infer", "onnx", "--rest", "--input", request], cwd=tmp_path),
    )
    assert set(SERVED) <= {m["modelId"] for m in json.loads(ok(listed))["models"]}
    assert outputs(ok(over_rest))[0] == "onnx"


@pytest.mark.parametrize(
    "command",
    [["models", name] for name in ("register", "list", "status", "unregister", "ensure-loaded")]
    + [["vmodels", name] for name in ("set", "status", "delete", "list")]
    + [["infer"]],
)
def test_help_documents_exit_codes_and_common_options(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    for text in ("Exit codes:", "3  cannot connect", "--endpoint", "--timeout"):
        assert text in result.output


def test_json_keeps_every_field_and_tables_align() -> None:
    reply = mm.VModelStatusInfo(status=mm.VModelStatusInfo.DEFINED, activeModelId="m")
    reply.activeModelStatus.modelCopyInfos.add(location="i", copyStatus=3, time=2**40)
    assert _output.proto_json(reply) == {
        "status": "DEFINED", "activeModelId": "m", "targetModelId": "",
        "activeModelStatus": {
            "status": "NOT_FOUND", "errors": [],
            "modelCopyInfos": [{"location": "i", "copyStatus": "LOADED", "time": 2**40}],
        },
        "targetModelStatus": None, "owner": "",
    }  # fmt: skip
    rendered = _output.Table(("A", "LONG-NAME"), [("xyz", "1"), ("w", "22")]).render()
    assert rendered.split("\n") == ["A    LONG-NAME", "xyz  1", "w    22"]
    assert [_output.size(n) for n in (0, 512, 1536, 3 * 2**30)] == ["-", "512B", "1.5KiB", "3.0GiB"]
    now_s = 1_000_000.0
    ages = [_output.age(int((now_s - s) * 1000), now_s=now_s) for s in (5, 125, 7200, 3 * 86400)]
    assert ages == ["5s", "2m", "2h", "3d"] and _output.age(0) == "-"
