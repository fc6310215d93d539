"""The one interface the instance uses to drive a runtime, wherever it runs."""

from __future__ import annotations

import abc

from meshserve._lifecycle import Service
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.runtime._records import LoadResult, ModelSpec, RuntimeStatus

__all__ = ["Runtime"]


class Runtime(Service):
    """A runtime hosting loaded models: the SPI's operations plus inference.

    Use as an async context manager: entering starts it (and waits until it
    is READY), leaving stops it. Errors are :mod:`meshserve.errors` types
    whichever host raised them.
    """

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the runtime and wait until it reports READY."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the runtime; loaded models are gone afterwards."""

    @abc.abstractmethod
    async def status(self) -> RuntimeStatus: ...

    @abc.abstractmethod
    async def load(self, spec: ModelSpec) -> LoadResult: ...

    @abc.abstractmethod
    async def unload(self, model_id: str) -> None: ...

    @abc.abstractmethod
    async def predict_size(self, spec: ModelSpec) -> int: ...

    @abc.abstractmethod
    async def model_size(self, model_id: str) -> int: ...

    @abc.abstractmethod
    async def metadata(self, model_id: str) -> ModelMetadata: ...

    @abc.abstractmethod
    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        """Run a decoded request against ``model_id``."""

    @abc.abstractmethod
    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        """Run a serialized ``ModelInferRequest``; returns a serialized
        ``ModelInferResponse``. The hot path for gRPC callers: a runtime in
        another process receives the bytes untouched."""
