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
from collections.abc import AsyncIterator
from typing import Any

import orjson

from meshserve import _tasks
from meshserve._clock import Clock, SystemClock
from meshserve.controller._builtin_runtimes import (
    BUILTIN_RUNTIME,
    PICKLE_RUNTIMES,
    builtin_runtimes,
)
from meshserve.controller._pools import PoolPlanner, RuntimePools
from meshserve.controller._port import MeshPort
from meshserve.controller._resource_store import ResourceKey, ResourceStore
from meshserve.controller._status import (
    PredictorStatus,
    RuntimeVerdict,
    SkippedStatus,
    predictor_status,
    status_document,
)
from meshserve.errors import ForeignResourceError, InvalidResourceError, MeshServeError
from meshserve.mesh import ModelState
from meshserve.resources import (
    INFERENCE_SERVICE_SOURCE,
    PREDICTOR_SOURCE,
    ClusterServingRuntime,
    FailureReason,
    InferenceService,
    ModelNames,
    ModelTarget,
    Predictor,
    ServingRuntime,
    model_names,
    model_target,
    parse_resource,
    select_runtime,
    validate_serving_runtime,
)
from meshserve.settings import ControlSettings
from meshserve.storage import build_model_key
from meshserve.store import Election, Store, StoreError

__all__ = ["Controller"]

log = logging.getLogger(__name__)

_SERVED = ("InferenceService", "Predictor")


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
        interval_s: float = 1.0,
        control: ControlSettings | None = None,
        pools: RuntimePools | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``candidate_id`` and ``lease_ttl_s``: this instance's id and
        lease in the election of the mesh's one controller."""
        self._store = store
        self._resources = ResourceStore(store)
        self._mesh = mesh
        self._grpc_url = grpc_url
        self._rest_url = rest_url
        self._interval_s = interval_s
        control = control or ControlSettings()
        self._allowed = control.allowed_runtime_images
        self._pools = pools
        self._pickle_namespaces = control.pickle_namespaces
        self._clock = clock or SystemClock()
        self._planner = PoolPlanner(
            pods_per_runtime=control.pods_per_runtime,
            scale_to_zero=control.scale_to_zero_enabled,
            grace_period_s=control.scale_to_zero_grace_period_s,
            mlserver_executable=control.mlserver_executable,
            # The instances of the mesh itself offer the built-in runtime.
            skip=(BUILTIN_RUNTIME,),
            clock=self._clock.monotonic,
        )
        self._election = Election(
            store,
            name="controller",
            candidate_id=candidate_id,
            ttl=lease_ttl_s,
        )
        # What this controller made of each resource, to clean up after it.
        self._applied: dict[ResourceKey, ModelNames] = {}
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
                log.warning("reconcile failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()

    async def reconcile(self) -> None:
        """One pass: every served resource registered, every removed one
        gone, every status current."""
        documents = await self._resources.list()
        statuses = await self._resources.statuses()
        runtimes, cluster_runtimes, verdicts = _runtimes(documents, self._allowed)
        seen: set[ResourceKey] = set()
        used: set[str] = set()
        served: dict[ResourceKey, PredictorStatus | SkippedStatus] = {}
        for key, document in sorted(documents.items()):
            if key.kind not in _SERVED:
                continue
            seen.add(key)
            served[key] = await self._reconcile_one(key, document, runtimes, cluster_runtimes, used)
        if self._pools is not None:
            verdicts = await self._size_pools([*runtimes, *cluster_runtimes], used, verdicts)
        now_s = self._clock.time()
        for key, status in [*verdicts.items(), *served.items()]:
            previous = statuses.get(key)
            document = status_document(status, kind=key.kind, now_s=now_s, previous=previous)
            if previous != document:
                await self._resources.put_status(key, document)
        for key in [k for k in self._applied if k not in seen]:
            await self._remove(key)
        for key in statuses:
            if key not in documents:
                await self._resources.delete_status(key)

    async def _reconcile_one(
        self,
        key: ResourceKey,
        document: dict[str, Any],
        runtimes: list[ServingRuntime],
        cluster_runtimes: list[ClusterServingRuntime],
        used: set[str],
    ) -> PredictorStatus | SkippedStatus:
        generation = (document.get("metadata") or {}).get("generation", 1)
        try:
            resource = parse_resource(document)
            assert isinstance(resource, InferenceService | Predictor)
            names = _scoped(model_names(resource))
            target = model_target(resource)
        except ForeignResourceError as exc:
            return SkippedStatus(observed_generation=generation, message=str(exc))
        except InvalidResourceError as exc:
            return PredictorStatus.refused(
                FailureReason.INVALID_PREDICTOR_SPEC,
                str(exc),
                generation=generation,
                model_id=_unservable_model_id(key, document),
            )
        selection = select_runtime(
            model_format=target.model_format,
            runtime_name=target.runtime,
            protocol_version=target.protocol_version,
            namespace=key.namespace,
            runtimes=runtimes,
            cluster_runtimes=cluster_runtimes,
        )
        if selection.runtime is None:
            reason = selection.reason or FailureReason.NO_SUPPORTING_RUNTIME
            return PredictorStatus.refused(
                reason, selection.message, generation=generation, model_id=names.model_id
            )
        runtime = selection.runtime.name
        refusal = self._pickle_refusal(runtime, key.namespace)
        if refusal is not None:
            return PredictorStatus.refused(
                FailureReason.RUNTIME_NOT_RECOGNIZED,
                refusal,
                generation=generation,
                model_id=names.model_id,
            )
        used.add(runtime)
        previous = self._applied.get(key)
        vmodel = self._mesh.vmodel_status(names.vmodel_id)
        if previous is None or vmodel.target_model_id != names.model_id:
            await self._apply(names, target_key=_model_key(target), path=target.path)
            self._applied[key] = names
        else:
            await self._load_if_waiting(names.model_id)
        status = predictor_status(
            self._mesh.vmodel_status(names.vmodel_id),
            names,
            generation=generation,
            grpc_url=self._grpc_url,
            rest_url=self._rest_url,
        )
        problem = self._pools.problem(runtime) if self._pools is not None else None
        if problem is not None and not status.available:
            return PredictorStatus.refused(
                FailureReason.RUNTIME_UNHEALTHY,
                f"runtime {runtime}: {problem}",
                generation=generation,
                model_id=names.model_id,
            )
        return status

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
        runtimes: list[ServingRuntime | ClusterServingRuntime],
        used: set[str],
        verdicts: dict[ResourceKey, RuntimeVerdict],
    ) -> dict[ResourceKey, RuntimeVerdict]:
        """Run the pools the accepted runtimes need; the verdicts with each
        pool's size, or why it cannot run here."""
        assert self._pools is not None
        plan = self._planner.plan(runtimes, used)
        await self._pools.sync(plan.pools)
        sized = dict(verdicts)
        for key, verdict in verdicts.items():
            if not verdict.accepted:
                continue
            if key.name in plan.refused:
                message = f"cannot run here: {plan.refused[key.name]}"
                sized[key] = dataclasses.replace(verdict, message=message)
            elif key.name in plan.pools:
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

    async def _apply(self, names: ModelNames, *, target_key: str, path: str) -> None:
        log.info("resource %s -> model %s (%s)", names.vmodel_id, names.model_id, names.type_label)
        await self._mesh.set_vmodel(
            names.vmodel_id,
            target_model_id=names.model_id,
            owner=names.owner,
            model_type=names.type_label,
            model_path=path,
            model_key=target_key,
            auto_delete_target=True,
            load_now=True,
        )

    async def _remove(self, key: ResourceKey) -> None:
        names = self._applied.pop(key)
        log.info("resource %s deleted; removing vmodel %s", key.path(), names.vmodel_id)
        with contextlib.suppress(MeshServeError):
            await self._mesh.delete_vmodel(names.vmodel_id, owner=names.owner)


def _runtimes(
    documents: dict[ResourceKey, dict[str, Any]], allowed: tuple[str, ...]
) -> tuple[list[ServingRuntime], list[ClusterServingRuntime], dict[ResourceKey, RuntimeVerdict]]:
    """The usable runtimes (the built-in one included), and each applied
    runtime's status: accepted, or why not."""
    runtimes: list[ServingRuntime] = []
    cluster: list[ClusterServingRuntime] = list(builtin_runtimes())
    verdicts: dict[ResourceKey, RuntimeVerdict] = {}
    for key, document in sorted(documents.items()):
        if key.kind not in ("ServingRuntime", "ClusterServingRuntime"):
            continue
        try:
            resource = parse_resource(document)
            assert isinstance(resource, ServingRuntime | ClusterServingRuntime)
            validate_serving_runtime(resource)
        except InvalidResourceError as exc:
            verdicts[key] = RuntimeVerdict(accepted=False, message=str(exc))
            continue
        refusal = _not_allowed(resource, allowed)
        if refusal is not None:
            log.warning("runtime %s refused: %s", key.path(), refusal)
            verdicts[key] = RuntimeVerdict(accepted=False, message=refusal)
            continue
        verdicts[key] = RuntimeVerdict(accepted=True)
        if isinstance(resource, ServingRuntime):
            runtimes.append(resource)
        else:
            cluster = [r for r in cluster if r.name != resource.name] + [resource]
    return runtimes, cluster, verdicts


def _not_allowed(
    runtime: ServingRuntime | ClusterServingRuntime, allowed: tuple[str, ...]
) -> str | None:
    """Why a runtime's containers are not allowed (None: they are)."""
    for container in runtime.spec.containers:
        wanted = [("image", container.image)] if container.image else []
        if container.command:
            wanted.append(("command", container.command[0]))
        for what, value in wanted:
            if not any(fnmatch.fnmatchcase(value, pattern) for pattern in allowed):
                patterns = ", ".join(allowed) if allowed else "none configured"
                return (
                    f"container '{container.name}' {what} '{value}' matches no pattern of "
                    f"control.allowedRuntimeImages ({patterns})"
                )
    return None


def _scoped(names: ModelNames) -> ModelNames:
    """Ids outside the default namespace carry it: ``<namespace>/<name>``."""
    return dataclasses.replace(
        names,
        vmodel_id=_in_namespace(names.namespace, names.vmodel_id),
        model_id=_in_namespace(names.namespace, names.model_id),
    )


def _in_namespace(namespace: str, mesh_id: str) -> str:
    return mesh_id if namespace in ("", "default") else f"{namespace}/{mesh_id}"


def _unservable_model_id(key: ResourceKey, document: dict[str, Any]) -> str:
    """The revision a spec that cannot be served names in its failure:
    ``<name>__<source>-<hash>`` as a servable one's, the hash over the spec
    as applied (there is no Predictor spec to hash), so that it changes
    with the spec as upstream's modelRevisionName does."""
    source = PREDICTOR_SOURCE if key.kind == "Predictor" else INFERENCE_SERVICE_SOURCE
    spec = orjson.dumps(document.get("spec"), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha1(spec).hexdigest()[:10]
    return _in_namespace(key.namespace, f"{key.name}__{source}-{digest}")


def _model_key(target: ModelTarget) -> str:
    return build_model_key(
        model_type=target.model_format.name,
        model_type_version=target.model_format.version or "",
        storage_key=target.storage_key,
        storage_params=target.storage_params,
        schema_path=target.schema_path,
    )
