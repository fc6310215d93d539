"""The mesh benchmark's gRPC calls: readiness, registration, listing, and
the raw v2 ModelInfer bodies the load driver sends.

Management calls use meshserve's generated mmesh / admin stubs. Inference
requests are serialized once per model id and sent as raw bytes (identity
serializers, as bench/_floor.py serves them), so the client spends its CPU
on sending, not on building messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import numpy as np

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from meshserve.protocol.datatypes import Datatype, numpy_dtype

__all__ = [
    "MODEL_INFER",
    "ListedModel",
    "decode_label",
    "infer_body",
    "list_models",
    "register_models",
    "wait_listed",
    "wait_ready",
]

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
_SERVER_READY = "/inference.GRPCInferenceService/ServerReady"
_REGISTER_CONCURRENCY = 16


def infer_body(*, model_id: str, input_name: str, row: Sequence[float]) -> bytes:
    """A serialized ModelInferRequest: one FP64 row, asking for ``predict`` only."""
    data = np.asarray([row], dtype="<f8")
    request = v2.ModelInferRequest(model_name=model_id)
    tensor = request.inputs.add()
    tensor.name = input_name
    tensor.datatype = "FP64"
    tensor.shape.extend(data.shape)
    request.outputs.add().name = "predict"
    request.raw_input_contents.append(data.tobytes())
    body: bytes = request.SerializeToString()
    return body


def decode_label(reply: bytes) -> int:
    """The first value of the ``predict`` output of a serialized ModelInferResponse."""
    response = v2.ModelInferResponse.FromString(reply)
    for index, output in enumerate(response.outputs):
        if output.name != "predict":
            continue
        if index < len(response.raw_output_contents):
            dtype = numpy_dtype(Datatype(output.datatype)).newbyteorder("<")
            values = np.frombuffer(response.raw_output_contents[index], dtype=dtype)
        else:
            contents = output.contents
            values = np.asarray(
                list(contents.int64_contents)
                or list(contents.int_contents)
                or list(contents.uint64_contents)
                or list(contents.uint_contents)
            )
        if values.size == 0:
            raise ValueError("the predict output is empty")
        return int(values.reshape(-1)[0])
    raise ValueError(f"no predict output among {[o.name for o in response.outputs]}")


async def wait_ready(addresses: Iterable[str], *, timeout_s: float) -> None:
    """Return once every address answers ServerReady with ready: true."""
    deadline = time.monotonic() + timeout_s
    for address in addresses:
        last = "no answer"
        async with grpc.aio.insecure_channel(address) as channel:
            call = channel.unary_unary(
                _SERVER_READY,
                request_serializer=v2.ServerReadyRequest.SerializeToString,
                response_deserializer=v2.ServerReadyResponse.FromString,
            )
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{address} not ready within {timeout_s:.0f} s ({last})")
                try:
                    reply = await call(v2.ServerReadyRequest(), timeout=min(remaining, 5.0))
                except grpc.aio.AioRpcError as exc:
                    last = f"{exc.code().name}: {exc.details()}"
                else:
                    if reply.ready:
                        break
                    last = "ready: false"
                await asyncio.sleep(0.1)


async def register_models(
    address: str,
    models: Sequence[tuple[str, str, str]],
    *,
    timeout_s: float,
    load_now: bool = False,
) -> None:
    """registerModel each ``(model_id, type, path)``, a few calls in flight;
    with ``load_now`` each call returns once its load has finished."""
    limit = asyncio.Semaphore(_REGISTER_CONCURRENCY)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = mm_grpc.ModelMeshStub(channel)

        async def register(model_id: str, model_type: str, path: str) -> None:
            request = mm.RegisterModelRequest(
                modelId=model_id,
                modelInfo=mm.ModelInfo(type=model_type, path=path),
                loadNow=load_now,
                sync=load_now,
            )
            async with limit:
                await stub.registerModel(request, timeout=timeout_s)

        async with asyncio.TaskGroup() as tasks:
            for model_id, model_type, path in models:
                tasks.create_task(register(model_id, model_type, path))


@dataclass(frozen=True, slots=True)
class ListedModel:
    model_id: str
    status: str
    size_bytes: int
    """Accounted size of this instance's copy; 0 when it holds none."""
    load_count: int
    eviction_count: int


async def list_models(address: str, *, timeout_s: float = 30.0) -> list[ListedModel]:
    """Admin.ListModels on one instance."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await admin_grpc.AdminStub(channel).ListModels(
            admin.ListModelsRequest(), timeout=timeout_s
        )
    return [
        ListedModel(
            model_id=m.modelId,
            status=m.status,
            size_bytes=int(m.sizeBytes),
            load_count=int(m.loadCount),
            eviction_count=int(m.evictionCount),
        )
        for m in reply.models
    ]


async def wait_listed(addresses: Iterable[str], *, count: int, timeout_s: float) -> None:
    """Return once every instance lists at least ``count`` models (the
    registrations reached each instance's view of the registry)."""
    deadline = time.monotonic() + timeout_s
    for address in addresses:
        while True:
            listed = len(await list_models(address))
            if listed >= count:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} lists {listed} of {count} models")
            await asyncio.sleep(0.2)
