"""The in-process host: the instance calls the built-in runtime directly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from meshserve.errors import PickleRefusedError
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.runtime._batch_run import BatchRun, Item, run_batch
from meshserve.runtime._batcher import Batcher
from meshserve.runtime._builtin import BuiltinRuntime, load_workers, start_preload
from meshserve.runtime._interface import Runtime
from meshserve.runtime._records import LoadResult, ModelSpec, RuntimeStatus
from meshserve.settings import RuntimeSettings

__all__ = ["InProcessRuntime"]

T = TypeVar("T")


class InProcessRuntime(Runtime):
    """Runs the built-in runtime inside the instance's process.

    Only for formats that execute no user code on load: pickle is refused
    here whatever the settings say, because a pickle would run with the
    instance's privileges and memory.
    """

    def __init__(
        self, *, settings: RuntimeSettings, observe_batch: Callable[[str, int], None] | None = None
    ) -> None:
        if settings.allow_pickle:
            raise PickleRefusedError(
                "allow_pickle needs the out-of-process runtime host (--runtime-host process): "
                "a pickle executes code on load and must not run inside the instance"
            )
        self._runtime = BuiltinRuntime(settings=settings)
        self._load_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._predict_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._observe_batch = observe_batch
        self._batcher = self._new_batcher()

    def _new_batcher(self) -> Batcher:
        return Batcher(
            execute=self._execute,
            limits_for=self._runtime.batch_limits,
            observe=self._observe_batch,
        )

    async def start(self) -> None:
        settings = self._runtime.settings
        # A batcher closed by a previous stop refuses requests.
        self._batcher = self._new_batcher()
        self._load_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=load_workers(settings), thread_name_prefix="meshserve-load"
        )
        self._predict_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.predict_workers, thread_name_prefix="meshserve-predict"
        )
        start_preload(self._runtime)

    async def stop(self) -> None:
        await self._batcher.close()
        self._runtime.purge()
        for pool in (self._load_pool, self._predict_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._load_pool = self._predict_pool = None

    async def _run(
        self, pool: concurrent.futures.Executor | None, fn: Callable[..., T], *args: object
    ) -> T:
        if pool is None:
            raise RuntimeError("the in-process runtime is not started")
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))

    async def status(self) -> RuntimeStatus:
        return self._runtime.status()

    async def load(self, spec: ModelSpec) -> LoadResult:
        return await self._run(self._load_pool, self._runtime.load, spec)

    async def unload(self, model_id: str) -> None:
        self._runtime.unload(model_id)
        self._batcher.forget(model_id)

    async def predict_size(self, spec: ModelSpec) -> int:
        return self._runtime.predict_size(spec)

    async def model_size(self, model_id: str) -> int:
        return self._runtime.model_size(model_id)

    async def metadata(self, model_id: str) -> ModelMetadata:
        return self._runtime.metadata(model_id)

    def _execute(
        self, model_id: str, items: list[Item], *, merging: bool
    ) -> asyncio.Future[BatchRun]:
        # The executor's future itself, not a coroutine around it: this
        # runs for every batch.
        pool = self._predict_pool
        if pool is None:
            raise RuntimeError("the in-process runtime is not started")
        return asyncio.get_running_loop().run_in_executor(
            pool, functools.partial(run_batch, self._runtime, model_id, items, merging=merging)
        )

    def infer(
        self, model_id: str, request: InferenceRequest
    ) -> Coroutine[Any, Any, InferenceResponse]:
        # The batcher's coroutine, not one more around it (every request).
        return self._batcher.infer(model_id, request)

    def infer_grpc(self, model_id: str, body: bytes) -> Coroutine[Any, Any, bytes]:
        return self._batcher.infer_grpc(model_id, body)
