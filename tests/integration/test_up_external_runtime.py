"""`meshserve up --runtime-host external`: an instance driving a runtime it
did not start, over ModelMesh's SPI on a loopback address."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import tritonclient.grpc as triton_grpc

from tests._processes import meshserve, wait_for_line
from tests.integration._mesh import make_model
from tests.integration._up import run_up


def test_up_serves_through_an_external_runtime(tmp_path: pathlib.Path) -> None:
    """`up --runtime-host external` drives a runtime it did not start."""
    model = make_model(tmp_path / "m.skops")
    with meshserve(["runtime", "--listen", "127.0.0.1:0"]) as runtime:
        address = wait_for_line(runtime, r"listening on (\S+)").group(1)
        args = ["--runtime-host", "external", "--runtime-address", address]
        with run_up(tmp_path / "data", args=args) as up:
            reply = up.management.register(
                "ext", type="sklearn", path=model, load_now=True, sync=True
            )
            assert up.management.status_name("ext") == "LOADED", reply.errors
            client = up.grpc_client()
            try:
                tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
                tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
                result = client.infer("ext", [tensor], client_timeout=30)
            finally:
                client.close()
            assert result.as_numpy("predict") is not None
            # The runtime's own capacity is the instance's.
            assert up.management.models()["ext"].sizeBytes > 0


def test_an_external_runtime_needs_a_loopback_address(tmp_path: pathlib.Path) -> None:
    up = [sys.executable, "-m", "meshserve", "up", "--runtime-host", "external"]
    done = subprocess.run(
        [*up, "--runtime-address", "10.0.0.1:9000", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--runtime-address" in done.stderr
    missing = subprocess.run(
        [*up, "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "needs --runtime-address" in missing.stderr


def test_a_runtime_that_never_answers_ends_up_with_a_message_not_a_traceback(
    tmp_path: pathlib.Path,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
    command = [sys.executable, "-m", "meshserve", "up", "--runtime-host", "external"]
    command += ["--runtime-address", address, "--data-dir", str(tmp_path)]
    command += ["--grpc-port", "0", "--rest-port", "0", "--metrics-port", "0"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MESHSERVE_RUNTIME__START_TIMEOUT_S": "2"},
    )
    assert done.returncode == 1
    assert "Error: UnavailableError" in done.stderr
    assert address in done.stderr
    assert "Traceback" not in done.stderr
