"""The puller: model key + path -> a local directory the runtime loads from.

    async with Puller(settings=settings.storage, data_dir=data_dir) as puller:
        pulled = await puller.pull(model_id=mid, model_path=path, model_key=key)
        ...  # load pulled.local_path
        await puller.release(mid)

A pull lands in ``<models_dir>/<model id>/<basename of path>`` (ModelMesh's
layout), built in a temporary directory and renamed into place. Concurrent
pulls of one artifact share one download; the artifact cache serves it again
after a release. pvc paths are used where they are (nothing is copied), and a
plain local path with no storage in the model key is returned unchanged.

Storage keys come from the storage-config file and, when a
:class:`SecretReader` is given, from the ``storage.secretName`` Secret in the
model's namespace (``team-a/x`` is in ``team-a``; an id without a ``/`` in
``default``), read again at every pull that needs storage.

Every blocking call (store clients, file system) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pathlib
import random
import time
import types
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from meshserve.errors import (
    ArtifactRejectedError,
    InvalidRequestError,
    StorageError,
    StorageUnavailableError,
)
from meshserve.protocol.model_key import ModelKey
from meshserve.security import namespace_of
from meshserve.storage._cache import ArtifactCache, cache_key, link_tree, remove_tree
from meshserve.storage._config import StorageConfig
from meshserve.storage._factory import SourceFactory, open_source
from meshserve.storage._local_roots import LocalRoots
from meshserve.storage._location import check_location
from meshserve.storage._paths import (
    check_no_escaping_symlinks,
    model_dir_name,
    tree_size,
)
from meshserve.storage._providers import (
    PvcConfig,
)
from meshserve.storage._pull_plan import PullPlan, check_pin, plan_pull
from meshserve.storage._pvc import resolve_pvc
from meshserve.storage._secrets import SecretEntries, SecretReader
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import TransientStorageError
from meshserve.storage._transfer import ProgressCallback, Transfer
from meshserve.storage._uri import is_storage_uri

__all__ = ["PulledModel", "Puller"]

log = logging.getLogger("meshserve.storage")

_STAGING = ".staging"


@dataclass(frozen=True, slots=True)
class PulledModel:
    """Where a pulled model is, and what pulling it cost."""

    local_path: str
    """The file or directory to load (``<models_dir>/<id>/<basename>``; the
    path itself for pvc and plain local paths)."""
    bytes: int
    """Bytes on disk."""
    seconds: float
    """Wall time of the pull, waiting for a shared download included."""
    from_cache: bool
    """Served by the artifact cache (no object was downloaded)."""


@dataclass(frozen=True, slots=True)
class _Artifact:
    staging: pathlib.Path
    name: str
    bytes: int
    digests: dict[str, str]
    is_directory: bool
    from_cache: bool


class _Shared:
    """One download that several pulls wait on."""

    def __init__(self) -> None:
        self.users = 0
        self.task: asyncio.Task[_Artifact] | None = None


class Puller:
    """Pulls models from storage into per-model directories."""

    def __init__(
        self,
        *,
        settings: StorageSettings,
        data_dir: pathlib.Path,
        config: StorageConfig | None = None,
        secrets: SecretReader | None = None,
        progress: ProgressCallback | None = None,
        source_factory: SourceFactory = open_source,
        local_roots: LocalRoots | None = None,
    ) -> None:
        """``config`` defaults to ``settings.config_path`` (read on entering);
        ``secrets`` reads each namespace's ``settings.secret_name`` Secret,
        whose keys win over the config's; ``progress`` receives events of
        pulls larger than ``settings.progress_bytes``, on the event loop;
        ``local_roots`` bounds plain local paths (default: the settings'
        roots as if auth were off)."""
        self._settings = settings
        self._local_roots = local_roots or LocalRoots.from_settings(settings, auth_enabled=False)
        self._models_dir = (settings.models_dir or data_dir / "models").absolute()
        self._cache = ArtifactCache(
            (settings.cache_dir or data_dir / "artifact-cache").absolute(),
            max_bytes=settings.cache_max_bytes,
        )
        self._config = config
        self._secrets = secrets
        self._progress = progress
        self._source_factory = source_factory
        self._inflight: dict[str, _Shared] = {}
        self._tasks: set[asyncio.Task[_Artifact]] = set()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._open = False

    @property
    def models_dir(self) -> pathlib.Path:
        return self._models_dir

    @property
    def cache(self) -> ArtifactCache:
        return self._cache

    async def __aenter__(self) -> Puller:
        await asyncio.to_thread(self._open_sync)
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._open = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _open_sync(self) -> None:
        if self._config is None:
            path = self._settings.config_path
            self._config = StorageConfig.from_path(path) if path else StorageConfig.empty()
        self._models_dir.mkdir(parents=True, exist_ok=True)
        # Leftovers of a run that stopped mid-pull.
        for child in self._models_dir.iterdir():
            if child.name.startswith("."):
                remove_tree(child)
        self._cache.open()

    def check_location(self, *, model_id: str, model_path: str, model_key: str) -> None:
        """Refuse, as InvalidRequestError, a location no pull would take: a
        credential in the path or key, an unusable storage URI, or a local
        path outside the roots allowed for the model's namespace. Reads
        nothing at the path beyond resolving it."""
        check_location(model_path=model_path, model_key=model_key)
        if is_storage_uri(model_path) or ModelKey.parse(model_key).uses_storage:
            return
        refusal = self._local_roots.refusal(model_path, namespace=namespace_of(model_id))
        if refusal is not None:
            raise InvalidRequestError(refusal)

    async def pull(self, *, model_id: str, model_path: str, model_key: str) -> PulledModel:
        """Pull the model at ``model_path`` as its key (ModelMesh's JSON)
        describes. Raises ``StorageError`` subclasses naming the storage key
        and path."""
        if not self._open:
            raise RuntimeError("Puller used outside 'async with'")
        started = time.monotonic()
        config = await self._config_for(model_id, model_path=model_path, model_key=model_key)
        plan = await asyncio.to_thread(plan_pull, model_path, model_key=model_key, config=config)
        if plan is None:
            # Also at load: a record may predate the roots (or come from a
            # resource, which registerModel never saw).
            refusal = self._local_roots.refusal(model_path, namespace=namespace_of(model_id))
            if refusal is not None:
                raise ArtifactRejectedError(refusal)
            size = await asyncio.to_thread(_size_if_exists, pathlib.Path(model_path))
            return PulledModel(local_path=model_path, bytes=size, seconds=0.0, from_cache=False)
        async with self._model_lock(model_id):
            if isinstance(plan.resolved.config, PvcConfig):
                local, size = await asyncio.to_thread(
                    resolve_pvc,
                    plan,
                    pvc_root=self._settings.pvc_root,
                    claims=self._settings.pvc_claims,
                    max_bytes=self._settings.max_model_bytes,
                )
                return PulledModel(
                    local_path=str(local),
                    bytes=size,
                    seconds=time.monotonic() - started,
                    from_cache=False,
                )
            shared, artifact = await self._acquire(plan, model_id)
            try:
                local = await asyncio.to_thread(self._install, artifact, model_id, plan)
            finally:
                await self._leave(shared)
        seconds = time.monotonic() - started
        log.info(
            "pulled model %s from %s: %d bytes in %.2f s%s",
            model_id,
            plan.where,
            artifact.bytes,
            seconds,
            " (from the artifact cache)" if artifact.from_cache else "",
        )
        return PulledModel(
            local_path=str(local),
            bytes=artifact.bytes,
            seconds=seconds,
            from_cache=artifact.from_cache,
        )

    async def release(self, model_id: str) -> None:
        """Remove the model's directory (a no-op for pvc and local paths, and
        for models never pulled)."""
        async with self._model_lock(model_id):
            await asyncio.to_thread(self._remove_model_dir, model_id)

    # -- planning -----------------------------------------------------------

    async def _config_for(self, model_id: str, *, model_path: str, model_key: str) -> StorageConfig:
        """The storage config of this pull: the file's, with the model's
        namespace's Secret over it when the pull needs storage at all (a
        local model never reads, or fails on, a Secret)."""
        assert self._config is not None
        name = self._settings.secret_name
        if self._secrets is None or not name:
            return self._config
        if not is_storage_uri(model_path) and not ModelKey.parse(model_key).uses_storage:
            return self._config
        namespace = namespace_of(model_id)
        secret = await self._secrets.read_secret(namespace=namespace, name=name)
        if secret is None:
            # Named all the same, so that "no such key" says where it looked.
            secret = SecretEntries(origin=f"secret '{namespace}/{name}' (absent)", values={})
        return self._config.overlaid(secret)

    # -- shared downloads ---------------------------------------------------

    async def _acquire(self, plan: PullPlan, model_id: str) -> tuple[_Shared, _Artifact]:
        shared = self._inflight.get(plan.fetch_key)
        if shared is None:
            shared = _Shared()
            task = asyncio.create_task(
                self._fetch(plan, model_id, shared), name=f"meshserve-pull-{model_id}"
            )
            shared.task = task
            self._inflight[plan.fetch_key] = shared
            self._tasks.add(task)
            # Added before any waiter's callback, so a finished download takes
            # no new waiters: a later pull starts over (and hits the cache).
            task.add_done_callback(functools.partial(self._forget, plan.fetch_key, shared))
        shared.users += 1
        assert shared.task is not None
        try:
            return shared, await asyncio.shield(shared.task)
        except BaseException:
            await self._leave(shared)
            raise

    def _forget(self, key: str, shared: _Shared, task: asyncio.Task[_Artifact]) -> None:
        self._tasks.discard(task)
        if self._inflight.get(key) is shared:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: waiters (if any) reported it

    async def _leave(self, shared: _Shared) -> None:
        """One waiter is done with the staged artifact; the last removes it."""
        shared.users -= 1
        task = shared.task
        if shared.users or task is None or not task.done() or task.cancelled():
            return
        if task.exception() is None:
            await asyncio.to_thread(remove_tree, task.result().staging)

    async def _fetch(self, plan: PullPlan, model_id: str, shared: _Shared) -> _Artifact:
        staging = self._models_dir / _STAGING / uuid.uuid4().hex
        transfer = Transfer(
            model_id=model_id,
            location=plan.where,
            max_bytes=self._settings.max_model_bytes,
            progress_bytes=self._settings.progress_bytes,
            bytes_total=None,
            loop=asyncio.get_running_loop(),
            callback=self._progress,
        )
        attempts = self._settings.retry_attempts
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    artifact = await asyncio.to_thread(self._fetch_once, plan, staging, transfer)
                except TransientStorageError as exc:
                    reason = _scrub(exc.reason, plan.secrets)
                    if attempt >= attempts:
                        raise StorageUnavailableError(
                            f"{plan.where}: {reason}; gave up after {attempts} attempts"
                        ) from None
                    delay = self._backoff(attempt)
                    log.warning(
                        "pull from %s failed (%s); attempt %d of %d in %.2f s",
                        plan.where,
                        reason,
                        attempt + 1,
                        attempts,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                except StorageError as exc:
                    message = _prefixed(exc.message, plan.where)
                    raise type(exc)(_scrub(message, plan.secrets)) from None
                except (OSError, ValueError, RuntimeError) as exc:
                    # Unexpected (a full disk, a library bug): still a failed
                    # pull, reported without the traceback's locals.
                    message = f"{plan.where}: {type(exc).__name__}: {exc}"
                    raise StorageError(_scrub(message, plan.secrets)) from None
                if shared.users == 0:
                    # Every waiter gave up while it downloaded; the cache kept it.
                    await asyncio.to_thread(remove_tree, staging)
                return artifact
        except BaseException:
            transfer.cancelled.set()
            await asyncio.to_thread(remove_tree, staging)
            raise

    def _backoff(self, attempt: int) -> float:
        base = self._settings.retry_initial_backoff_s * 2.0 ** (attempt - 1)
        delay = min(base, self._settings.retry_max_backoff_s)
        return delay * (1 + random.uniform(0, 0.25))

    def _fetch_once(self, plan: PullPlan, staging: pathlib.Path, transfer: Transfer) -> _Artifact:
        """One attempt: list, then link from the cache or download (thread)."""
        remove_tree(staging)
        staging.mkdir(parents=True)
        transfer.reset()
        limit = self._settings.max_model_bytes
        source = self._source_factory(plan.resolved.config, path=plan.path, settings=self._settings)
        try:
            listing = source.list()
            if listing.known_bytes > limit:
                raise ArtifactRejectedError(
                    f"{listing.known_bytes} bytes, more than the {limit} a model may have; refused"
                )
            key = None
            if listing.cacheable:
                versions = [(str(o.rel_path), o.version, o.size) for o in listing.objects]
                key = cache_key(source.identity, versions)
                hit = self._cache.link_into(key, staging)
                if hit is not None:
                    if hit.bytes > limit:
                        raise ArtifactRejectedError(
                            f"{hit.bytes} bytes, more than the {limit} a model may have; refused"
                        )
                    return _Artifact(
                        staging=staging,
                        name=listing.name,
                        bytes=hit.bytes,
                        digests=hit.digests,
                        is_directory=listing.is_directory,
                        from_cache=True,
                    )
            sizes = [o.size for o in listing.objects]
            transfer.bytes_total = None if None in sizes else listing.known_bytes
            for obj in listing.objects:
                with transfer.open(staging.joinpath(obj.rel_path), rel=str(obj.rel_path)) as sink:
                    source.download(obj, sink)
            transfer.finish()
            digests = dict(transfer.digests)
            if key is not None:
                self._cache.put(
                    key,
                    staging,
                    bytes_=transfer.bytes_done,
                    digests=digests,
                    location=source.location,
                )
            return _Artifact(
                staging=staging,
                name=listing.name,
                bytes=transfer.bytes_done,
                digests=digests,
                is_directory=listing.is_directory,
                from_cache=False,
            )
        finally:
            source.close()

    # -- local side ---------------------------------------------------------

    def _install(self, artifact: _Artifact, model_id: str, plan: PullPlan) -> pathlib.Path:
        """Verify the pin, then place the artifact in the model's directory
        atomically (thread)."""
        check_pin(
            plan, is_directory=artifact.is_directory, digest=artifact.digests.get(artifact.name)
        )
        name = model_dir_name(model_id)
        final = self._models_dir / name
        tmp = self._models_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            link_tree(artifact.staging, tmp)
            check_no_escaping_symlinks(tmp, root=tmp, where=plan.where)
            self._remove_model_dir(model_id)
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
        return final / artifact.name

    def _remove_model_dir(self, model_id: str) -> None:
        final = self._models_dir / model_dir_name(model_id)
        if not final.exists():
            return
        # Renamed first, so the model's path vanishes at once even if a large
        # tree takes a while to delete.
        trash = self._models_dir / f".trash-{uuid.uuid4().hex}"
        os.rename(final, trash)
        remove_tree(trash)

    @contextlib.asynccontextmanager
    async def _model_lock(self, model_id: str) -> AsyncIterator[None]:
        """Pulls and releases of one model id, one at a time."""
        lock, users = self._locks.get(model_id, (asyncio.Lock(), 0))
        self._locks[model_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[model_id]
            if users == 1:
                del self._locks[model_id]
            else:
                self._locks[model_id] = (lock, users - 1)


def _prefixed(message: str, where: str) -> str:
    return message if message.startswith(where) else f"{where}: {message}"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with any secret it echoes masked (library messages may quote
    what they were given)."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _size_if_exists(path: pathlib.Path) -> int:
    try:
        return tree_size(path) if path.exists() else 0
    except OSError:
        return 0
