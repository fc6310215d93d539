"""The controller: applied resources become vmodels, and status goes back.

An InferenceService (or Predictor) becomes a vmodel named after it whose
target is ``<name>__isvc-<hash of the predictor spec>``: a changed spec is a
new target, which the vmodel moves to once it is loaded (the old model keeps
serving meanwhile, then goes, being auto-delete). Deleting the resource
deletes the vmodel. One instance of the mesh runs the controller at a time
(leader election through the store); every instance could.

Given :class:`RuntimePools` (``meshserve up`` gives them), the controller
also sizes each ServingRuntime's pool of instances: ``podsPerRuntime`` while
a resource uses it, none once nothing has for the scale-to-zero grace period.

Each resource is reconciled on its own: what one raises (its vmodel name
owned by a resource of the other kind, a mesh call that failed) becomes its
failure status, it is tried again after a backoff that doubles per failure
(``control.reconcileBackoff*``), and the others go on in the same pass. A
model whose runtime (named or auto-selected) cannot run here is refused
with the reason, never served by another runtime (:mod:`._runtime_catalog`).
Refusals are logged when what is wrong changes, not every pass.

Resources outside the ``default`` namespace map to ids ``<namespace>/<name>``
(ModelMesh Serving gives each namespace a mesh of its own; here they share
one, so the namespace becomes part of the id, as authorisation expects).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from meshserve import _tasks
from meshserve._clock import Clock, SystemClock
from meshserve.controller._backoff import Backoff
from meshserve.controller._builtin_runtimes import BUILTIN_RUNTIME, PICKLE_RUNTIMES
from meshserve.controller._change_log import ChangeLog
from meshserve.controller._failures import failure_of, owned_elsewhere
from meshserve.controller._pools import AnyRuntime, PoolPlanner, PoolSpecMaker, RuntimePools
from meshserve.controller._port import MeshPort
from meshserve.controller._resource_ids import (
    model_key_of,
    revision_of,
    scoped_names,
    unservable_model_id,
)
from meshserve.controller._resource_store import ResourceKey, ResourceSource, ResourceStore
from meshserve.controller._runtime_catalog import RuntimeCatalog, RuntimeRefusal, runtime_catalog
from meshserve.controller._status import (
    PredictorStatus,
    RuntimeVerdict,
    SkippedStatus,
    predictor_status,
    status_document,
)
from meshserve.errors import (
    AlreadyExistsError,
    ForeignResourceError,
    InvalidResourceError,
    MeshServeError,
    PreconditionFailedError,
)
from meshserve.mesh import ModelState, VModelStatus
from meshserve.resources import (
    FailureReason,
    InferenceService,
    ModelNames,
    ModelTarget,
    Predictor,
    batch_overrides,
    model_names,
    model_target,
    parse_resource,
)
from meshserve.settings import ControlSettings
from meshserve.storage import LocalRoots
from meshserve.store import Election, Store, StoreError

__all__ = ["Controller"]

log = logging.getLogger(__name__)

_SERVED = ("InferenceService", "Predictor")

ServedStatus = PredictorStatus | SkippedStatus


class Controller:
    """Reconciles applied resources into the mesh and reports their status."""

    def __init__(
        self,
        *,
        store: Store,
        mesh: MeshPort,
        candidate_id: str,
        lease_ttl_s: float,
        grpc_url: str,
        rest_url: str | None,
        namespace_grpc_urls: Mapping[str, str] | None = None,
        interval_s: float = 1.0,
        control: ControlSettings | None = None,
        pools: RuntimePools | None = None,
        clock: Clock | None = None,
        local_roots: LocalRoots | None = None,
        resources: ResourceSource | None = None,
        pool_spec: PoolSpecMaker | None = None,
        skip_pools: tuple[str, ...] = (BUILTIN_RUNTIME,),
    ) -> None:
        """``candidate_id`` and ``lease_ttl_s``: this instance's id and
        lease in the election of the mesh's one controller. ``local_roots``:
        where a resource's local model path may lie (a resource that got in
        without the admin API's check, ``apply --store``, is refused here).
        ``namespace_grpc_urls``: the gRPC URL of a namespace's own port.

        ``resources``: where resources come from and status goes (None: the
        store; the operator gives the cluster's). ``pool_spec``: how a pool
        runs (None: local processes); ``skip_pools``: runtimes with none."""
        self._store = store
        self._resources: ResourceSource = resources or ResourceStore(store, local_roots=local_roots)
        self._mesh = mesh
        self._grpc_urls = namespace_grpc_urls or {}
        self._grpc_url = grpc_url
        self._rest_url = rest_url
        self._interval_s = interval_s
        control = control or ControlSettings()
        clock = clock or SystemClock()
        self._allowed = control.allowed_runtime_images
        self._pools = pools
        self._pickle_namespaces = control.pickle_namespaces
        self._clock = clock
        self._planner = PoolPlanner(
            pods_per_runtime=control.pods_per_runtime,
            scale_to_zero=control.scale_to_zero_enabled,
            grace_period_s=control.scale_to_zero_grace_period_s,
            mlserver_executable=control.mlserver_executable,
            skip=skip_pools,
            clock=clock.monotonic,
            spec=pool_spec,
        )
        self._election = Election(
            store,
            name="controller",
            candidate_id=candidate_id,
            ttl=lease_ttl_s,
        )
        # What this controller made of each resource, to clean up after it.
        self._applied: dict[ResourceKey, ModelNames] = {}
        # Resources whose reconcile failed wait before the next try; the
        # others go on meanwhile.
        self._backoff: Backoff[ResourceKey, ServedStatus] = Backoff(
            initial_s=control.reconcile_backoff_initial_s,
            max_s=control.reconcile_backoff_max_s,
            clock=clock.monotonic,
        )
        # Refused resources and runtimes are logged when what is wrong changes.
        self._refusals: ChangeLog[ResourceKey] = ChangeLog(log)
        self._wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Controller]:
        async with self._election:
            task = _tasks.start_supervised(self._run(), name="controller")
            watcher = _tasks.start_supervised(self._watch(), name="controller-watch")
            try:
                yield self
            finally:
                await _tasks.cancel_and_wait(watcher)
                await _tasks.cancel_and_wait(task)

    async def _watch(self) -> None:
        """Wake the loop as soon as a resource changes."""
        while True:
            try:
                async with self._store.watch("resources/") as events:
                    async for _ in events:
                        self._wake.set()
            except StoreError as exc:
                log.info("controller watch ended (%s); watching again", exc)
                await asyncio.sleep(self._interval_s)

    async def _run(self) -> None:
        while True:
            if self._pools is not None and not self._election.is_leader:
                # Only the leader runs pools: a supervisor that lost the
                # lead (its lease expired, the store partitioned) stops its
                # own, or two supervisors would each run a set.
                await self._pools.sync({})
            await self._election.wait_until_leader()
            try:
                await self.reconcile()
            except MeshServeError as exc:
                # The store itself failed (a resource's own failure is its
                # status, see _reconcile_guarded): the whole pass again.
                log.warning("reconcile failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()

    async def reconcile(self) -> None:
        """One pass: every removed resource gone, every served one
        registered (each on its own: one that fails gets a failure status
        and is tried again after a backoff, and the others go on), every
        status current."""
        documents = await self._resources.list()
        statuses = await self._resources.statuses()
        catalog = runtime_catalog(
            documents,
            allowed=self._allowed,
            cannot_run=self._planner.cannot_run if self._pools is not None else None,
        )
        self._log_runtimes(catalog)
        served_keys = {key for key in documents if key.kind in _SERVED}
        gone = [key for key in self._applied if key not in served_keys]
        for key in gone:
            await self._remove(key)
        self._backoff.retain(served_keys)
        self._refusals.retain([*served_keys, *catalog.cannot_run])
        if gone:
            # A deleted resource may have freed what a failing one waited
            # for (its vmodel name): try those at once.
            self._backoff.clear()
        used: set[str] = set()
        served: dict[ResourceKey, ServedStatus] = {}
        for key, document in _first_come(documents):
            served[key] = await self._reconcile_guarded(key, document, catalog, used)
        verdicts = catalog.verdicts
        if self._pools is not None:
            verdicts = await self._size_pools(catalog.usable, used, verdicts)
        now_s = self._clock.time()
        for key, status in [*verdicts.items(), *served.items()]:
            previous = statuses.get(key)
            document = status_document(status, kind=key.kind, now_s=now_s, previous=previous)
            if previous != document:
                await self._resources.put_status(key, document)
        for key in statuses:
            if key not in documents:
                await self._resources.delete_status(key)

    def _log_runtimes(self, catalog: RuntimeCatalog) -> None:
        for key, why in catalog.cannot_run.items():
            self._refusals.log(
                logging.WARNING, key, "runtime %s cannot run here: %s", key.path(), why
            )
        for key in catalog.verdicts:
            if key not in catalog.cannot_run:
                self._refusals.forget(key)

    async def _reconcile_guarded(
        self,
        key: ResourceKey,
        document: dict[str, Any],
        catalog: RuntimeCatalog,
        used: set[str],
    ) -> ServedStatus:
        """:meth:`_reconcile_one`, with what it raised made this resource's
        failure status (and a backoff before its next try), so that one bad
        resource never stops the others."""
        fingerprint = _fingerprint(document)
        waiting = self._backoff.waiting(key, fingerprint)
        if waiting is not None:
            return waiting
        try:
            status, runtime = await self._reconcile_one(key, document, catalog)
        except Exception as exc:  # any failure is this resource's alone
            status = self._failure(key, document, exc)
            delay = self._backoff.failed(key, fingerprint, status)
            log.debug("resource %s: trying again in %.1f s", key.path(), delay)
            return status
        self._backoff.succeeded(key)
        if runtime is not None:
            used.add(runtime)
        refused = isinstance(status, PredictorStatus) and not status.reached_mesh
        failure = status.last_failure_info if isinstance(status, PredictorStatus) else None
        if refused and failure is not None:
            self._log_refused(key, failure.reason, failure.message)
        else:
            self._refusals.forget(key)
        return status

    def _failure(self, key: ResourceKey, document: dict[str, Any], exc: Exception) -> ServedStatus:
        """The status of a resource whose reconcile raised ``exc`` (logged
        once per change; a bug with its traceback)."""
        reason, message = failure_of(exc)
        self._log_refused(
            key, reason, message, bug=None if isinstance(exc, MeshServeError) else exc
        )
        return PredictorStatus.refused(
            reason, message, generation=_generation(document), model_id=revision_of(key, document)
        )

    def _log_refused(
        self, key: ResourceKey, reason: str, message: str, *, bug: Exception | None = None
    ) -> None:
        self._refusals.log(
            logging.WARNING if bug is None else logging.ERROR,
            key,
            "resource %s refused (%s): %s",
            key.path(),
            reason,
            message,
            exc_info=bug,
        )

    async def _reconcile_one(
        self, key: ResourceKey, document: dict[str, Any], catalog: RuntimeCatalog
    ) -> tuple[ServedStatus, str | None]:
        """The resource's status, and the runtime it uses (None: none)."""
        generation = _generation(document)
        try:
            resource = parse_resource(document)
            assert isinstance(resource, InferenceService | Predictor)
            names = scoped_names(model_names(resource))
            target = model_target(resource)
            self._resources.admit(resource)
        except ForeignResourceError as exc:
            return SkippedStatus(observed_generation=generation, message=str(exc)), None
        except InvalidResourceError as exc:
            return PredictorStatus.refused(
                FailureReason.INVALID_PREDICTOR_SPEC,
                str(exc),
                generation=generation,
                model_id=unservable_model_id(key, document),
            ), None
        choice = catalog.choose(target, namespace=key.namespace)
        if isinstance(choice, RuntimeRefusal):
            return PredictorStatus.refused(
                choice.reason, choice.message, generation=generation, model_id=names.model_id
            ), None
        runtime = choice.name
        # The resource's batching annotations win over its (validated) runtime's.
        batching = {**batch_overrides(choice.metadata.annotations), **target.batching}
        target = dataclasses.replace(target, batching=batching)
        refusal = self._pickle_refusal(runtime, key.namespace)
        if refusal is not None:
            return PredictorStatus.refused(
                FailureReason.RUNTIME_NOT_RECOGNIZED,
                refusal,
                generation=generation,
                model_id=names.model_id,
            ), None
        previous = self._applied.get(key)
        vmodel = self._mesh.vmodel_status(names.vmodel_id)
        if previous is None or vmodel.target_model_id != names.model_id:
            await self._apply(key, names, target=target, vmodel=vmodel)
            self._applied[key] = names
        else:
            await self._load_if_waiting(names.model_id)
        status = predictor_status(
            self._mesh.vmodel_status(names.vmodel_id),
            names,
            generation=generation,
            grpc_url=self._grpc_urls.get(key.namespace, self._grpc_url),
            rest_url=self._rest_url,
        )
        problem = self._pools.problem(runtime) if self._pools is not None else None
        if problem is not None and not status.available:
            return PredictorStatus.refused(
                FailureReason.RUNTIME_UNHEALTHY,
                f"runtime {runtime}: {problem}",
                generation=generation,
                model_id=names.model_id,
            ), runtime
        return status, runtime

    def _pickle_refusal(self, runtime: str, namespace: str) -> str | None:
        if runtime not in PICKLE_RUNTIMES or any(
            fnmatch.fnmatchcase(namespace, pattern) for pattern in self._pickle_namespaces
        ):
            return None
        return (
            f"runtime {runtime} loads pickle artifacts (which run code), and "
            f"control.pickleNamespaces ({', '.join(self._pickle_namespaces) or 'none'}) does "
            f"not allow them in namespace {namespace!r}"
        )

    async def _size_pools(
        self,
        runtimes: list[AnyRuntime],
        used: set[str],
        verdicts: dict[ResourceKey, RuntimeVerdict],
    ) -> dict[ResourceKey, RuntimeVerdict]:
        """Run the pools the runtimes that can run here need; the verdicts
        with each pool's size."""
        assert self._pools is not None
        plan = self._planner.plan(runtimes, used)
        await self._pools.sync(plan.pools)
        sized = dict(verdicts)
        for key, verdict in verdicts.items():
            if verdict.accepted and key.name in plan.pools:
                sized[key] = dataclasses.replace(verdict, replicas=plan.pools[key.name].replicas)
        return sized

    async def _load_if_waiting(self, model_id: str) -> None:
        """Load a model that has no copy anywhere once an instance can take
        it: its runtime's pool was scaled to zero, or still starting, when
        the model was registered."""
        if self._mesh.model_status(model_id).state is not ModelState.NOT_LOADED:
            return
        if not self._mesh.can_place(model_id):
            return
        log.info("model %s: an instance can take it now; loading", model_id)
        with contextlib.suppress(MeshServeError):
            await self._mesh.ensure_available(model_id, sync=False)

    async def _apply(
        self, key: ResourceKey, names: ModelNames, *, target: ModelTarget, vmodel: VModelStatus
    ) -> None:
        """Point the resource's vmodel at its model; AlreadyExistsError
        naming the holder when another owns the vmodel (the first to come
        keeps it: this resource fails, and is tried again after a backoff)."""
        conflict = owned_elsewhere(key, names, vmodel)
        if conflict is None:
            log.info(
                "resource %s -> model %s (%s)", names.vmodel_id, names.model_id, names.type_label
            )
            try:
                await self._mesh.set_vmodel(
                    names.vmodel_id,
                    target_model_id=names.model_id,
                    owner=names.owner,
                    model_type=names.type_label,
                    model_path=target.path,
                    model_key=model_key_of(target),
                    auto_delete_target=True,
                    load_now=True,
                )
                return
            except AlreadyExistsError:
                # Taken meanwhile (a management client): say by whom.
                conflict = owned_elsewhere(key, names, self._mesh.vmodel_status(names.vmodel_id))
                if conflict is None:
                    raise
        raise AlreadyExistsError(conflict)

    async def _remove(self, key: ResourceKey) -> None:
        names = self._applied.pop(key)
        log.info("resource %s deleted; removing vmodel %s", key.path(), names.vmodel_id)
        with contextlib.suppress(MeshServeError):
            await self._mesh.delete_vmodel(names.vmodel_id, owner=names.owner)

    async def release(self, key: ResourceKey, document: dict[str, Any]) -> None:
        """Remove the vmodel of a resource being deleted, whether this
        controller applied it or one before it did (the operator, restarted,
        holding the resource by its finalizer); raises what the mesh raised,
        so that the caller keeps the resource and tries again."""
        names = self._applied.pop(key, None)
        if names is None:
            try:
                resource = parse_resource(document)
                assert isinstance(resource, InferenceService | Predictor)
                names = scoped_names(model_names(resource))
            except MeshServeError:
                return  # a spec that could not be read made nothing
        log.info("resource %s deleted; removing vmodel %s", key.path(), names.vmodel_id)
        with contextlib.suppress(PreconditionFailedError):  # another's: not ours to remove
            await self._mesh.delete_vmodel(names.vmodel_id, owner=names.owner)


def _first_come(
    documents: dict[ResourceKey, dict[str, Any]],
) -> list[tuple[ResourceKey, dict[str, Any]]]:
    """The served resources in the order they were first applied (the
    order :meth:`ResourceStore.list` gives): of two resources that want one
    vmodel name, the first applied keeps it."""
    return [(key, document) for key, document in documents.items() if key.kind in _SERVED]


def _generation(document: dict[str, Any]) -> int:
    generation = (document.get("metadata") or {}).get("generation", 1)
    return generation if isinstance(generation, int) else 1


def _fingerprint(document: dict[str, Any]) -> str:
    """What tells a changed resource from the one that failed (any change:
    the spec, or an annotation that names its runtime)."""
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
