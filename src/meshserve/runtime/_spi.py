"""Messages of ModelMesh's runtime SPI, shared by the hosts that speak it
to a runtime process (ours: ProcessRuntime; anyone's: ExternalRuntime)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol.inference import InferenceRequest, InferenceResponse
from meshserve.runtime._records import ModelSpec, RuntimeState, RuntimeStatus

__all__ = [
    "PREDICT_SIZE_TIMEOUT_S",
    "infer_through_bytes",
    "load_request",
    "predict_size_request",
    "spec_from_request",
    "status_from_proto",
]

PREDICT_SIZE_TIMEOUT_S = 0.5
"""ModelMesh's bound on predictModelSize: it must answer almost at once."""


def status_from_proto(message: spi.RuntimeStatusResponse) -> RuntimeStatus:
    return RuntimeStatus(
        state=RuntimeState(spi.RuntimeStatusResponse.Status.Name(message.status)),
        capacity_bytes=message.capacityInBytes,
        max_loading_concurrency=message.maxLoadingConcurrency,
        model_loading_timeout_ms=message.modelLoadingTimeoutMs,
        default_model_size_bytes=message.defaultModelSizeInBytes,
        runtime_version=message.runtimeVersion,
    )


def load_request(spec: ModelSpec) -> spi.LoadModelRequest:
    return spi.LoadModelRequest(
        modelId=spec.model_id,
        modelType=spec.model_type,
        modelPath=spec.model_path,
        modelKey=spec.model_key,
    )


def spec_from_request(request: spi.LoadModelRequest | spi.PredictModelSizeRequest) -> ModelSpec:
    """What a runtime serving the SPI was asked to load (or size)."""
    return ModelSpec(
        model_id=request.modelId,
        model_type=request.modelType,
        model_path=request.modelPath,
        model_key=request.modelKey,
    )


def predict_size_request(spec: ModelSpec) -> spi.PredictModelSizeRequest:
    return spi.PredictModelSizeRequest(
        modelId=spec.model_id,
        modelType=spec.model_type,
        modelPath=spec.model_path,
        modelKey=spec.model_key,
    )


async def infer_through_bytes(
    infer_grpc: Callable[[str, bytes], Awaitable[bytes]],
    model_id: str,
    request: InferenceRequest,
) -> InferenceResponse:
    """A decoded request run through a host's raw-bytes path (one wire path
    to test and to measure)."""
    body = codecs.request_to_proto(request, raw=True).SerializeToString()
    reply = await infer_grpc(model_id, body)
    return codecs.response_from_proto(v2.ModelInferResponse.FromString(reply))
