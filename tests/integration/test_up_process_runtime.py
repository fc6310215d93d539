"""`meshserve up --runtime-host process --allow-pickle`: the runtime runs as a
sandboxed child on a Unix socket, serves pickle, and comes back after a crash."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import urllib.parse
from collections.abc import Iterator

import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests._examples import assert_outputs_match, iris_rows, library_predictions
from tests.integration._credentials import credential
from tests.integration._proc import listening_tcp_ports, unix_socket_paths
from tests.integration._up import (
    Registration,
    Up,
    grpc_outputs,
    http_outputs,
    iris_grpc_input,
    iris_http_input,
    run_up,
    wait_until,
)

pytestmark = pytest.mark.integration

PICKLE = "sklearn-joblib"
SEALING_KEY = "5ea1" * 16
CLOUD_SECRET = "cloud-secret-for-pulls-only"


@pytest.fixture(scope="module")
def up(
    example_models: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    register = [Registration.example(name, path) for name, path in example_models.items()]
    args = ["--runtime-host", "process", "--allow-pickle"]
    # The child keeps our user (the interpreter may be unreadable to `nobody`);
    # tests/integration/test_privileges.py covers the drop.
    env = {
        "MESHSERVE_RUNTIME__RESTART_BACKOFF_INITIAL_S": "0.2",
        "MESHSERVE_RUNTIME__RUN_AS_USER": "",
        # Secrets the instance holds in its environment, which the runtime
        # (and a pickle it loads) must not inherit.
        "MESHSERVE_SECURITY__SEALING_KEY": credential(SEALING_KEY),
        "AWS_SECRET_ACCESS_KEY": credential(CLOUD_SECRET),
    }
    data_dir = tmp_path_factory.mktemp("up-process") / "data"
    with run_up(data_dir, register=register, args=args, env=env) as up:
        yield up


def _runtime_child(up: Up) -> psutil.Process:
    """The one `meshserve runtime` process under `up`."""
    runtimes = [
        child
        for child in psutil.Process(up.pid).children(recursive=True)
        if "runtime" in child.cmdline()
    ]
    assert len(runtimes) == 1, [c.cmdline() for c in runtimes]
    return runtimes[0]


def _assert_every_example_answers(
    example_models: dict[str, pathlib.Path],
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    rows = iris_rows(6)
    for name, path in example_models.items():
        expected = library_predictions(name, path, rows)
        result = grpc_client.infer(name, [iris_grpc_input(name, rows)])
        assert result.get_response().model_name == name
        assert_outputs_match(grpc_outputs(result), expected)
        answer = http_client.infer(name, [iris_http_input(name, rows, binary=True)])
        assert_outputs_match(http_outputs(answer), expected)


def test_every_example_including_pickle_answers_over_grpc_and_rest(
    example_models: dict[str, pathlib.Path],
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    assert PICKLE in example_models
    _assert_every_example_answers(example_models, grpc_client, http_client)


def test_runtime_child_listens_on_no_tcp_port(
    up: Up, grpc_client: triton_grpc.InferenceServerClient
) -> None:
    grpc_client.infer(PICKLE, [iris_grpc_input(PICKLE, iris_rows(1))])
    child = _runtime_child(up)
    assert listening_tcp_ports(child.pid) == []
    assert unix_socket_paths(child.pid), "the runtime should serve on a Unix socket"
    # Only `up` itself listens on TCP: its gRPC, REST, internal, data and
    # metrics ports, the ones endpoints.json lists.
    endpoints = json.loads((up.data_dir / "endpoints.json").read_text())
    instance = endpoints["instances"][0]
    ports = {int(up.grpc.rsplit(":", 1)[1]), int(up.rest.rsplit(":", 1)[1])}
    ports |= {
        int(instance["internal"].rsplit(":", 1)[1]),
        int(instance["data"].rsplit(":", 1)[1]),
        urllib.parse.urlsplit(instance["metrics"]).port,
    }
    assert set(listening_tcp_ports(up.pid)) == ports


def test_runtime_child_inherits_none_of_the_instances_secrets(
    up: Up, grpc_client: triton_grpc.InferenceServerClient
) -> None:
    grpc_client.infer(PICKLE, [iris_grpc_input(PICKLE, iris_rows(1))])
    environ = _runtime_child(up).environ()
    assert psutil.Process(up.pid).environ()["MESHSERVE_SECURITY__SEALING_KEY"] == SEALING_KEY
    assert "MESHSERVE_SECURITY__SEALING_KEY" not in environ
    assert "AWS_SECRET_ACCESS_KEY" not in environ
    assert not [
        value for value in environ.values() if SEALING_KEY in value or CLOUD_SECRET in value
    ]
    # What the runtime needs still reaches it: its own settings.
    assert environ["MESHSERVE_RUNTIME__RESTART_BACKOFF_INITIAL_S"] == "0.2"


def test_killed_runtime_is_restarted_and_requests_succeed_again(
    up: Up,
    example_models: dict[str, pathlib.Path],
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    rows = iris_rows(3)
    expected = library_predictions(PICKLE, example_models[PICKLE], rows)
    grpc_client.infer(PICKLE, [iris_grpc_input(PICKLE, rows)])
    loads_before = up.management.models()[PICKLE].loadCount
    child = _runtime_child(up)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    def answers() -> dict[str, np.ndarray] | None:
        try:
            result = grpc_client.infer(PICKLE, [iris_grpc_input(PICKLE, rows)], client_timeout=10)
        except InferenceServerException:
            return None
        return grpc_outputs(result)

    outputs = wait_until(answers, timeout=60, what="requests to succeed after the runtime crash")
    assert_outputs_match(outputs, expected)
    restarted = _runtime_child(up)
    assert restarted.pid != child.pid
    assert listening_tcp_ports(restarted.pid) == []
    assert up.management.models()[PICKLE].loadCount > loads_before
    # Every model is served by the new child.
    _assert_every_example_answers(example_models, grpc_client, http_client)
    assert up.proc.poll() is None


def test_a_restarted_runtime_announces_it_and_gets_its_models_back_unasked(
    up: Up, grpc_client: triton_grpc.InferenceServerClient
) -> None:
    # The runtime announces its restart to the instance (an event the
    # instance subscribes to), which reloads what it had: no request needed.
    grpc_client.infer(PICKLE, [iris_grpc_input(PICKLE, iris_rows(1))])
    loads_before = up.management.models()[PICKLE].loadCount
    child = _runtime_child(up)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    def reloaded() -> bool:
        summary = up.management.models()[PICKLE]
        return summary.loadCount > loads_before and summary.status == "LOADED"

    wait_until(reloaded, timeout=60, what="the model to be reloaded after the runtime restart")
    assert _runtime_child(up).pid != child.pid
