"""ExternalRuntime driving a `meshserve runtime` process it did not start."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import numpy as np
import pytest
import pytest_asyncio

from meshserve import errors
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import grpc_predict_v2_pb2_grpc as v2_grpc
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, Tensor
from meshserve.runtime import ExternalRuntime, ExternalState, ModelSpec, RuntimeState
from meshserve.runtime._external import INFER_METHOD
from tests._examples import assert_outputs_match, iris_rows, library_predictions
from tests._processes import meshserve, wait_for_line

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CAPACITY = 123_456_789
MODEL = "sklearn-skops"
LISTENING = r"listening on (\S+)"


@contextlib.contextmanager
def _runtime_process(listen: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`meshserve runtime` on ``listen``; yields it and its bound address."""
    with meshserve(["runtime", "--listen", listen, "--capacity", str(CAPACITY)]) as proc:
        yield proc, wait_for_line(proc, LISTENING).group(1)


@pytest.fixture(scope="module")
def runtime_address() -> Iterator[str]:
    with _runtime_process("127.0.0.1:0") as (_, address):
        yield address


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def external(runtime_address: str) -> AsyncIterator[ExternalRuntime]:
    async with ExternalRuntime(address=runtime_address, start_timeout_s=30) as runtime:
        yield runtime


def _state(runtime: ExternalRuntime) -> ExternalState:
    # Read afresh: the state changes across awaits.
    return runtime.state


def _spec(model_id: str, path: pathlib.Path) -> ModelSpec:
    return ModelSpec(model_id=model_id, model_type="sklearn", model_path=str(path))


def _request(rows: np.ndarray) -> InferenceRequest:
    # model_name is what a client asked for; the runtime must go by the id.
    return InferenceRequest(model_name="vmodel", inputs=[Tensor("input-0", Datatype.FP64, rows)])


async def test_status_is_the_runtimes(external: ExternalRuntime) -> None:
    status = await external.status()
    assert status.state is RuntimeState.READY
    assert status.capacity_bytes == CAPACITY
    assert status.model_loading_timeout_ms == 90_000
    assert status.default_model_size_bytes == 1_000_000
    assert status.max_loading_concurrency >= 1
    assert external.method_infos[INFER_METHOD] == (1,)


async def test_a_loaded_model_answers_what_its_library_predicts(
    external: ExternalRuntime, example_models: dict[str, pathlib.Path]
) -> None:
    path = example_models[MODEL]
    spec = _spec("iris__isvc-0001", path)
    assert await external.predict_size(spec) > 0
    loaded = await external.load(spec)
    assert loaded.size_bytes > 0
    assert await external.model_size(spec.model_id) == loaded.size_bytes

    rows = iris_rows(6)
    expected = library_predictions(MODEL, path, rows)
    for raw in (True, False):
        body = codecs.request_to_proto(_request(rows), raw=raw).SerializeToString()
        reply = v2.ModelInferResponse.FromString(await external.infer_grpc(spec.model_id, body))
        assert reply.model_name == spec.model_id
        assert bool(reply.raw_output_contents) is raw
        response = codecs.response_from_proto(reply)
        assert_outputs_match({t.name: t.data for t in response.outputs}, expected)

    decoded = await external.infer(spec.model_id, _request(rows))
    assert_outputs_match({t.name: t.data for t in decoded.outputs}, expected)

    metadata = await external.metadata(spec.model_id)
    assert metadata.name == spec.model_id
    assert [(i.name, i.shape) for i in metadata.inputs] == [("input-0", (-1, 4))]
    assert [o.name for o in metadata.outputs] == ["predict", "predict_proba"]

    await external.unload(spec.model_id)
    with pytest.raises(errors.ModelNotFoundError, match=spec.model_id):
        await external.infer(spec.model_id, _request(rows))


async def test_a_missing_model_is_not_found(external: ExternalRuntime) -> None:
    with pytest.raises(errors.ModelNotFoundError, match="never-loaded"):
        await external.infer("never-loaded", _request(iris_rows(1)))
    with pytest.raises(errors.ModelNotFoundError, match="never-loaded"):
        await external.metadata("never-loaded")
    with pytest.raises(errors.ModelNotFoundError, match="never-loaded"):
        await external.model_size("never-loaded")


async def test_load_failures_keep_their_exact_types(
    external: ExternalRuntime, tmp_path: pathlib.Path, example_models: dict[str, pathlib.Path]
) -> None:
    corrupt = tmp_path / "broken.skops"
    corrupt.write_bytes(b"this is not a model\x00\x01")
    with pytest.raises(errors.CorruptModelError, match=r"broken\.skops"):
        await external.load(_spec("broken", corrupt))
    with pytest.raises(errors.UnsupportedModelError, match="tensorflow") as unsupported:
        await external.load(
            ModelSpec(model_id="tf", model_type="tensorflow", model_path=str(example_models[MODEL]))
        )
    assert type(unsupported.value) is errors.UnsupportedModelError
    await external.load(_spec("short", example_models[MODEL]))
    with pytest.raises(errors.TensorError, match="input-0"):
        await external.infer("short", _request(iris_rows(2)[:, :3]))


async def test_stopping_unloads_what_it_loaded(
    runtime_address: str, example_models: dict[str, pathlib.Path]
) -> None:
    async with grpc.aio.insecure_channel(runtime_address) as channel:
        probe = v2_grpc.GRPCInferenceServiceStub(channel)
        async with ExternalRuntime(address=runtime_address) as runtime:
            await runtime.load(_spec("transient", example_models[MODEL]))
            assert (await probe.ModelReady(v2.ModelReadyRequest(name="transient"))).ready
        assert not (await probe.ModelReady(v2.ModelReadyRequest(name="transient"))).ready


async def test_a_unix_socket_runtime_is_reached_too(
    example_models: dict[str, pathlib.Path],
) -> None:
    with tempfile.TemporaryDirectory(prefix="ms-ext-") as directory:
        listen = f"unix:{directory}/runtime.sock"
        with _runtime_process(listen) as (_, address):
            assert address == listen
            async with ExternalRuntime(address=address) as runtime:
                assert (await runtime.status()).capacity_bytes == CAPACITY
                await runtime.load(_spec("iris", example_models[MODEL]))
                response = await runtime.infer("iris", _request(iris_rows(3)))
                assert response.outputs[0].data.shape == (3,)


async def test_a_runtime_on_a_network_interface_is_refused(runtime_address: str) -> None:
    port = runtime_address.rsplit(":", 1)[1]
    for address in (f"0.0.0.0:{port}", f"192.168.1.10:{port}", f"runtime.internal:{port}"):
        with pytest.raises(ValueError, match="never on a network interface"):
            ExternalRuntime(address=address)


async def test_a_killed_runtime_is_lost_then_found_again_on_its_port(
    example_models: dict[str, pathlib.Path],
) -> None:
    lost, back = asyncio.Event(), asyncio.Event()

    async def on_lost() -> None:
        lost.set()

    async def on_reconnect() -> None:
        back.set()

    spec = _spec("iris", example_models[MODEL])
    with contextlib.ExitStack() as processes:
        proc, address = processes.enter_context(_runtime_process("127.0.0.1:0"))
        runtime = ExternalRuntime(
            address=address,
            on_lost=on_lost,
            on_reconnect=on_reconnect,
            reconnect_backoff_max_s=0.5,
        )
        async with runtime:
            await runtime.load(spec)
            assert (await runtime.infer("iris", _request(iris_rows(2)))).outputs
            proc.kill()
            with pytest.raises(errors.UnavailableError):
                # Until the loss is noticed calls may reach the dead socket;
                # they fail as retryable, never as a raw transport error.
                for _ in range(500):
                    await runtime.infer("iris", _request(iris_rows(1)))
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(lost.wait(), 10)
            assert _state(runtime) is ExternalState.LOST
            assert runtime.losses == 1
            assert (await runtime.status()).state is RuntimeState.FAILING
            with pytest.raises(errors.UnavailableError, match="lost"):
                await runtime.load(spec)
            with pytest.raises(errors.UnavailableError, match="lost"):
                await runtime.infer_grpc("iris", b"")

            # The same port again, as a supervisor restarting it would.
            processes.enter_context(_runtime_process(address))
            await asyncio.wait_for(back.wait(), 30)
            assert _state(runtime) is ExternalState.READY
            assert (await runtime.status()).state is RuntimeState.READY
            with pytest.raises(errors.ModelNotFoundError):
                await runtime.infer("iris", _request(iris_rows(1)))
            await runtime.load(spec)
            response = await runtime.infer("iris", _request(iris_rows(2)))
            expected = library_predictions(MODEL, example_models[MODEL], iris_rows(2))
            assert_outputs_match({t.name: t.data for t in response.outputs}, expected)
            assert runtime.losses == 1
