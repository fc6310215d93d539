"""Test doubles that implement meshserve's real interfaces."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from meshserve import errors
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorMetadata,
)
from meshserve.runtime import LoadResult, ModelSpec, Runtime, RuntimeState, RuntimeStatus


@dataclass
class FakeModel:
    """How a fake model behaves when loaded: its size, a delay, a failure."""

    size: int = 100_000
    predicted: int | None = None
    delay: float = 0.0
    fail: errors.ModelLoadError | None = None
    gate: asyncio.Event | None = None


@dataclass
class FakeRuntime(Runtime):
    """A runtime whose models double their input; loads are scripted."""

    capacity: int = 1_000_000
    timeout_ms: int = 90_000
    max_loading: int = 1
    models: dict[str, FakeModel] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    load_calls: list[str] = field(default_factory=list)
    unload_calls: list[str] = field(default_factory=list)
    restarting: bool = False
    """Inference fails as it does while a runtime process restarts."""

    def behaviour(self, spec: ModelSpec) -> FakeModel:
        # Models are scripted by path so a test can register any id for them.
        return self.models.setdefault(spec.model_path, FakeModel())

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.loaded.clear()

    async def status(self) -> RuntimeStatus:
        return RuntimeStatus(
            state=RuntimeState.READY,
            capacity_bytes=self.capacity,
            max_loading_concurrency=self.max_loading,
            model_loading_timeout_ms=self.timeout_ms,
            default_model_size_bytes=50_000,
            runtime_version="fake",
        )

    async def load(self, spec: ModelSpec) -> LoadResult:
        self.load_calls.append(spec.model_id)
        model = self.behaviour(spec)
        if model.gate is not None:
            await model.gate.wait()
        if model.delay:
            await asyncio.sleep(model.delay)
        if model.fail is not None:
            raise model.fail
        self.loaded[spec.model_id] = model.size
        return LoadResult(size_bytes=model.size)

    async def unload(self, model_id: str) -> None:
        self.unload_calls.append(model_id)
        self.loaded.pop(model_id, None)

    async def predict_size(self, spec: ModelSpec) -> int:
        model = self.behaviour(spec)
        return model.predicted if model.predicted is not None else model.size

    async def model_size(self, model_id: str) -> int:
        return self.loaded[model_id]

    async def metadata(self, model_id: str) -> ModelMetadata:
        self._check(model_id)
        spec = TensorMetadata("x", Datatype.FP64, (-1,))
        return ModelMetadata(name=model_id, platform="fake", inputs=(spec,), outputs=(spec,))

    def _check(self, model_id: str) -> None:
        if model_id not in self.loaded:
            raise errors.ModelNotFoundError(f"model '{model_id}' is not loaded in this runtime")

    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        self._check(model_id)
        doubled = Tensor("y", Datatype.FP64, request.inputs[0].data * 2)
        return InferenceResponse(model_name=model_id, outputs=[doubled], id=request.id)

    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        if self.restarting:
            raise errors.RuntimeRestartingError("the runtime process is restarting")
        self._check(model_id)
        return model_id.encode() + b":" + body
