"""The built-in runtime's model table: load, predict, size, unload.

Synchronous and thread-safe; the hosts (in-process, or the runtime server in
a child process) call it from executor threads so blocking library code
never runs on an event loop.
"""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from dataclasses import dataclass

from meshserve import __version__
from meshserve.errors import (
    ModelLoadError,
    ModelNotFoundError,
    ModelTooLargeError,
    UnsupportedModelError,
)
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.model_key import ModelKey
from meshserve.runtime import _formats
from meshserve.runtime._batch_limits import BatchLimits
from meshserve.runtime._records import (
    LoadResult,
    ModelSpec,
    RuntimeState,
    RuntimeStatus,
)
from meshserve.settings import RuntimeSettings

__all__ = ["BuiltinRuntime", "load_workers", "resolve_model_type", "start_preload"]

# Threads beyond maxLoadingConcurrency: a load abandoned at its timeout keeps
# running in its thread (Python cannot stop it), and must not hold up the
# loads after it. The instance bounds how many loads it runs at once.
_SPARE_LOAD_THREADS = 4


def load_workers(settings: RuntimeSettings) -> int:
    """Size of a load thread pool for ``settings``."""
    return settings.max_loading_concurrency + _SPARE_LOAD_THREADS


def start_preload(runtime: BuiltinRuntime) -> None:
    """Import the format libraries in a thread of its own, so the preload
    holds no load slot (loads wait for it to finish, see ``load``)."""
    runtime.begin_preload()
    threading.Thread(target=runtime.preload, name="meshserve-preload", daemon=True).start()


log = logging.getLogger(__name__)


def resolve_model_type(spec: ModelSpec) -> str:
    """The format name (sklearn, xgboost...) a load request asks for.

    ModelMesh Serving puts the format in the model key
    (``model_type.name``); plain mmesh clients put it in modelType, possibly
    as a label such as ``mt:sklearn:1`` or ``mt:onnx|pv:grpc-v2``.
    """
    key = ModelKey.parse(spec.model_key, error=UnsupportedModelError)
    if key.model_type:
        return key.model_type.lower()
    label = spec.model_type.split("|", 1)[0].strip()
    if label.startswith("mt:"):
        label = label[3:].split(":", 1)[0]
    elif label.startswith("rt:"):
        raise UnsupportedModelError(
            f"model type '{spec.model_type}' names a runtime, not a format; "
            "put the format in the model key's model_type.name"
        )
    if not label:
        raise UnsupportedModelError("no model type given (modelType and model key are empty)")
    return label.lower()


@dataclass(slots=True)
class _Loaded:
    model: _formats.LoadedModel
    size_bytes: int
    loaded_at: float
    batch_limits: BatchLimits


class BuiltinRuntime:
    """Loads artifacts of the supported formats and serves predictions."""

    def __init__(self, *, settings: RuntimeSettings) -> None:
        self._settings = settings
        self._batch_limits = BatchLimits.of_settings(settings)
        self._lock = threading.Lock()
        self._models: dict[str, _Loaded] = {}
        self._loading: set[str] = set()
        # unloadModel may arrive while the load it cancels is still running;
        # the load then discards its result instead of leaking the memory.
        self._unload_requested: set[str] = set()
        # Set once no preload runs: importing one package tree from two
        # threads at once can hand one of them a half-initialised module.
        self._preloaded = threading.Event()
        self._preloaded.set()

    @property
    def settings(self) -> RuntimeSettings:
        return self._settings

    def status(self) -> RuntimeStatus:
        return RuntimeStatus(
            state=RuntimeState.READY,
            capacity_bytes=self._settings.capacity_bytes,
            max_loading_concurrency=self._settings.max_loading_concurrency,
            model_loading_timeout_ms=self._settings.model_loading_timeout_ms,
            default_model_size_bytes=self._settings.default_model_size_bytes,
            runtime_version=__version__,
        )

    def preload(self) -> None:
        """Import the format libraries (blocking; run it off the loop)."""
        try:
            if self._settings.preload_libraries:
                started = time.monotonic()
                loaded = _formats.preload_libraries()
                log.info("preloaded %s in %.1f s", ", ".join(loaded), time.monotonic() - started)
        finally:
            self._preloaded.set()

    def begin_preload(self) -> None:
        """Make loads wait for a preload about to start."""
        self._preloaded.clear()

    def purge(self) -> int:
        """Drop every loaded model (runtimeStatus does this before READY)."""
        with self._lock:
            count = len(self._models)
            self._models.clear()
            self._unload_requested.update(self._loading)
        return count

    def _artifact(self, spec: ModelSpec) -> _formats.Artifact:
        model_type = resolve_model_type(spec)
        if not spec.model_path:
            raise UnsupportedModelError(f"model '{spec.model_id}': no model path given")
        return _formats.find_artifact(
            model_type=model_type, model_path=pathlib.Path(spec.model_path)
        )

    def predict_size(self, spec: ModelSpec) -> int:
        """A cheap, conservative size estimate made without loading."""
        return _formats.estimate_size(self._artifact(spec))

    def load(self, spec: ModelSpec) -> LoadResult:
        """Load a model; loading one already loaded returns its size."""
        with self._lock:
            existing = self._models.get(spec.model_id)
            if existing is not None:
                return LoadResult(size_bytes=existing.size_bytes)
            self._loading.add(spec.model_id)
            self._unload_requested.discard(spec.model_id)
        try:
            self._preloaded.wait()
            artifact = self._artifact(spec)
            limits = self._batch_limits.for_key(
                ModelKey.parse(spec.model_key, error=UnsupportedModelError)
            )
            estimate = _formats.estimate_size(artifact)
            capacity = self._settings.capacity_bytes
            if estimate > capacity:
                raise ModelTooLargeError(
                    f"model '{spec.model_id}' needs about {estimate} bytes, more than the "
                    f"runtime's whole capacity of {capacity} bytes"
                )
            started = time.monotonic()
            model = _formats.load_model(
                artifact,
                allow_pickle=self._settings.allow_pickle,
                trusted_types=self._settings.trusted_types,
            )
            size = max(int(model.size_bytes), 1)
            log.info(
                "loaded model %s (%s, %d bytes) in %.3f s",
                spec.model_id,
                artifact.format.name.lower(),
                size,
                time.monotonic() - started,
            )
        except ModelLoadError:
            raise
        except Exception as exc:  # a library failing in a way no loader anticipated
            raise ModelLoadError(f"model '{spec.model_id}' failed to load: {exc}") from exc
        finally:
            with self._lock:
                self._loading.discard(spec.model_id)
        with self._lock:
            if spec.model_id in self._unload_requested:
                self._unload_requested.discard(spec.model_id)
                raise ModelLoadError(f"model '{spec.model_id}' was unloaded while loading")
            self._models[spec.model_id] = _Loaded(model, size, time.time(), limits)
        return LoadResult(size_bytes=size)

    def unload(self, model_id: str) -> None:
        """Unload a model; unknown ids are not an error (the SPI's contract)."""
        with self._lock:
            removed = self._models.pop(model_id, None)
            if removed is None and model_id in self._loading:
                self._unload_requested.add(model_id)
        if removed is not None:
            log.info("unloaded model %s", model_id)

    def _get(self, model_id: str) -> _Loaded:
        try:
            return self._models[model_id]
        except KeyError:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded in this runtime") from None

    def model_size(self, model_id: str) -> int:
        return self._get(model_id).size_bytes

    def batch_limits(self, model_id: str) -> BatchLimits:
        """How far ``model_id``'s requests are merged: its model key's limits,
        else the runtime's (also for a model not loaded, which fails alone)."""
        loaded = self._models.get(model_id)
        return self._batch_limits if loaded is None else loaded.batch_limits

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._models

    def metadata(self, model_id: str) -> ModelMetadata:
        model = self._get(model_id).model
        return ModelMetadata(
            name=model_id,
            platform=model.platform,
            inputs=tuple(model.metadata_inputs),
            outputs=tuple(model.metadata_outputs),
        )

    def infer(self, request: InferenceRequest, *, model_id: str | None = None) -> InferenceResponse:
        """Run one request; ``model_id`` overrides the request's model name."""
        target = model_id or request.model_name
        model = self._get(target).model
        outputs = model.predict(request.inputs, outputs=[o.name for o in request.outputs])
        return InferenceResponse(
            model_name=target,
            model_version=request.model_version,
            id=request.id,
            outputs=outputs,
        )
