"""Both runtime hosts behind one interface, with the real model libraries."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import stat
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio

from meshserve import errors
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, RequestedOutput, Tensor
from meshserve.runtime import InProcessRuntime, ModelSpec, ProcessRuntime, Runtime
from meshserve.runtime._link import link_path
from meshserve.settings import RuntimeSettings
from tests._examples import assert_outputs_match, iris_rows, library_predictions, model_type
from tests.integration._proc import listening_tcp_ports, unix_socket_paths

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ONNX_INPUT = "float_input"
# The child keeps our user: the interpreter here may be unreadable to
# `nobody`; tests/integration/test_privileges.py covers the drop.
AS_IS = ""


def _request(name: str, rows: np.ndarray) -> InferenceRequest:
    if model_type(name) == "onnx":
        tensor = Tensor(ONNX_INPUT, Datatype.FP32, rows.astype(np.float32))
    else:
        tensor = Tensor("input-0", Datatype.FP64, rows)
    return InferenceRequest(model_name=name, inputs=[tensor])


def _spec(name: str, path: pathlib.Path, *, model_id: str | None = None) -> ModelSpec:
    return ModelSpec(model_id=model_id or name, model_type=model_type(name), model_path=str(path))


@pytest_asyncio.fixture(loop_scope="module", scope="module", params=["inprocess", "process"])
async def host(request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    if request.param == "inprocess":
        runtime: Runtime = InProcessRuntime(settings=RuntimeSettings())
    else:
        runtime = ProcessRuntime(
            settings=RuntimeSettings(
                allow_pickle=True, restart_backoff_initial_s=0.1, run_as_user=AS_IS
            )
        )
    async with runtime:
        yield runtime


def _allowed(host: Runtime, name: str) -> bool:
    return isinstance(host, ProcessRuntime) or not name.endswith("joblib")


async def test_every_format_serves_what_its_library_predicts(
    host: Runtime, example_models: dict[str, pathlib.Path]
) -> None:
    rows = iris_rows(7)
    for name, path in example_models.items():
        if not _allowed(host, name):
            continue
        result = await host.load(_spec(name, path))
        assert result.size_bytes > 0
        response = await host.infer(name, _request(name, rows))
        assert response.model_name == name
        got = {t.name: t.data for t in response.outputs}
        assert_outputs_match(got, library_predictions(name, path, rows))


async def test_grpc_bytes_path_answers_in_the_form_the_client_chose(
    host: Runtime, example_models: dict[str, pathlib.Path]
) -> None:
    name = "xgboost-json"
    await host.load(_spec(name, example_models[name]))
    rows = iris_rows(3)
    request = _request(name, rows)
    request.outputs = [RequestedOutput("predict_proba")]
    for raw in (True, False):
        body = codecs.request_to_proto(request, raw=raw).SerializeToString()
        reply = v2.ModelInferResponse.FromString(await host.infer_grpc(name, body))
        assert bool(reply.raw_output_contents) is raw
        response = codecs.response_from_proto(reply)
        assert [t.name for t in response.outputs] == ["predict_proba"]
        expected = library_predictions(name, example_models[name], rows)["predict_proba"]
        np.testing.assert_allclose(response.outputs[0].data, expected, rtol=1e-6)


async def test_metadata_lists_inputs_and_outputs(
    host: Runtime, example_models: dict[str, pathlib.Path]
) -> None:
    await host.load(_spec("onnx", example_models["onnx"]))
    metadata = await host.metadata("onnx")
    assert metadata.name == "onnx"
    assert [i.name for i in metadata.inputs] == [ONNX_INPUT]
    assert metadata.inputs[0].datatype is Datatype.FP32
    assert metadata.inputs[0].shape == (-1, 4)
    assert [o.name for o in metadata.outputs] == ["label", "probabilities"]

    await host.load(_spec("lightgbm", example_models["lightgbm"]))
    tabular = await host.metadata("lightgbm")
    assert [i.name for i in tabular.inputs] == ["input-0"]
    assert tabular.inputs[0].shape == (-1, 4)
    assert [o.name for o in tabular.outputs] == ["predict", "predict_proba"]


async def test_sizes_are_reported_before_and_after_load(
    host: Runtime, example_models: dict[str, pathlib.Path]
) -> None:
    spec = _spec("sklearn-skops", example_models["sklearn-skops"], model_id="sized")
    predicted = await host.predict_size(spec)
    loaded = await host.load(spec)
    assert predicted > 0
    assert loaded.size_bytes > 0
    assert await host.model_size("sized") == loaded.size_bytes
    status = await host.status()
    assert status.capacity_bytes == RuntimeSettings().capacity_bytes
    assert status.model_loading_timeout_ms == 90_000


async def test_corrupt_file_fails_with_its_reason(host: Runtime, tmp_path: pathlib.Path) -> None:
    for kind, file in [("sklearn", "m.skops"), ("xgboost", "m.json"), ("onnx", "m.onnx")]:
        path = tmp_path / kind / file
        path.parent.mkdir()
        path.write_bytes(b"this is not a model\x00\x01")
        with pytest.raises(errors.CorruptModelError, match=str(path.name)):
            await host.load(
                ModelSpec(model_id=f"bad-{kind}", model_type=kind, model_path=str(path))
            )


async def test_unknown_type_and_missing_path_fail_with_reasons(
    host: Runtime, example_models: dict[str, pathlib.Path]
) -> None:
    with pytest.raises(errors.UnsupportedModelError, match="tensorflow"):
        await host.load(
            ModelSpec(
                model_id="tf", model_type="tensorflow", model_path=str(example_models["onnx"])
            )
        )
    with pytest.raises(errors.UnsupportedModelError, match="does-not-exist"):
        await host.load(ModelSpec(model_id="gone", model_type="onnx", model_path="/does-not-exist"))


async def test_unloaded_model_is_not_found_and_bad_tensors_are_rejected(
    host: Runtime, example_models: dict[str, pathlib.Path]
) -> None:
    name = "lightgbm"
    await host.load(_spec(name, example_models[name], model_id="short-lived"))
    with pytest.raises(errors.TensorError, match="input-0"):
        await host.infer("short-lived", _request(name, iris_rows(2)[:, :3]))
    await host.unload("short-lived")
    await host.unload("short-lived")  # unloading twice is not an error
    with pytest.raises(errors.ModelNotFoundError, match="short-lived"):
        await host.infer("short-lived", _request(name, iris_rows(2)))


async def test_in_process_host_never_runs_pickle(example_models: dict[str, pathlib.Path]) -> None:
    with pytest.raises(errors.PickleRefusedError, match="process"):
        InProcessRuntime(settings=RuntimeSettings(allow_pickle=True))
    async with InProcessRuntime(settings=RuntimeSettings()) as runtime:
        with pytest.raises(errors.PickleRefusedError, match="--allow-pickle"):
            await runtime.load(_spec("sklearn-joblib", example_models["sklearn-joblib"]))


async def test_process_host_refuses_pickle_unless_allowed_and_has_no_tcp_port(
    example_models: dict[str, pathlib.Path],
) -> None:
    async with ProcessRuntime(settings=RuntimeSettings(run_as_user=AS_IS)) as runtime:
        with pytest.raises(errors.PickleRefusedError, match="--allow-pickle"):
            await runtime.load(_spec("sklearn-joblib", example_models["sklearn-joblib"]))

        assert runtime.pid is not None and runtime.socket_path is not None
        mode = runtime.socket_path.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(runtime.socket_path.parent.stat().st_mode) == 0o700
        assert listening_tcp_ports(runtime.pid) == []
        data_link = link_path(runtime.socket_path)
        assert stat.S_IMODE(data_link.stat().st_mode) == 0o600
        assert set(unix_socket_paths(runtime.pid)) >= {str(runtime.socket_path), str(data_link)}
        socket_dir = runtime.socket_path.parent
    assert not socket_dir.exists()  # stop() removes the private directory


async def test_process_host_restarts_a_killed_child(
    example_models: dict[str, pathlib.Path],
) -> None:
    restarted = asyncio.Event()

    async def on_restart() -> None:
        restarted.set()

    settings = RuntimeSettings(restart_backoff_initial_s=0.1, run_as_user=AS_IS)
    async with ProcessRuntime(settings=settings, on_restart=on_restart) as runtime:
        spec = _spec("onnx", example_models["onnx"])
        await runtime.load(spec)
        first_pid = runtime.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(errors.UnavailableError):
            # Until the supervisor notices, calls may fail; they must fail as
            # "unavailable" (retryable), never with a raw transport error.
            for _ in range(200):
                await runtime.infer("onnx", _request("onnx", iris_rows(1)))
                await asyncio.sleep(0.01)
        await asyncio.wait_for(restarted.wait(), 60)
        assert runtime.restarts == 1
        assert runtime.pid not in (None, first_pid)
        # The new child starts empty; the owner reloads what it needs.
        with pytest.raises(errors.ModelNotFoundError):
            await runtime.infer("onnx", _request("onnx", iris_rows(1)))
        await runtime.load(spec)
        response = await runtime.infer("onnx", _request("onnx", iris_rows(2)))
        assert response.outputs
