"""The controller's runtime pools as Deployments (``modelmesh-serving-<runtime>``).

:class:`DeploymentPools` is the :class:`meshserve.controller.RuntimePools`
of the operator: the controller's :class:`PoolPlanner` decides each
runtime's replicas as for ``meshserve up`` (``podsPerRuntime`` or the
runtime's ``replicas``; zero after the scale-to-zero grace period), and
here each pool becomes the objects ``_render`` renders for it (its
Deployment; its HPA when annotated), applied with :class:`ObjectWriter`,
with the mesh's Services. A runtime ``_render`` refuses (an adapter not
implemented) gets no objects: the refusal is the runtime's status
(through the controller's catalog) and that of the models asking for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from meshserve.controller import AnyRuntime, PoolSpec, builtin_runtimes
from meshserve.errors import MeshServeError, UnsupportedRuntimeError
from meshserve.operator._cluster import ClusterResources
from meshserve.operator._endpoints import DEPLOYMENTS, HPAS, SERVICES
from meshserve.operator._objects import ObjectWriter
from meshserve.operator._render import (
    ClusterConfig,
    render_runtime,
    render_services,
)
from meshserve.resources import ClusterServingRuntime, ServingRuntime, parse_resource

__all__ = ["DeploymentPools"]

log = logging.getLogger(__name__)


class DeploymentPools:
    """Runs the controller's pool plan as Deployments; see the module docstring."""

    def __init__(
        self,
        *,
        resources: ClusterResources,
        writer: ObjectWriter,
        config: Callable[[], ClusterConfig],
        namespaces: Callable[[], Iterable[str]],
    ) -> None:
        """``namespaces``: those served now (where runtime pods may be)."""
        self._namespaces = namespaces
        self._resources = resources
        self._writer = writer
        self._config = config
        self._problems: dict[str, str] = {}

    def pool_spec(self, runtime: AnyRuntime, replicas: int) -> PoolSpec | str:
        """The controller's :data:`PoolSpecMaker`: a pool of ``replicas``
        pods, or why ``runtime`` cannot run (what ``_render`` refuses)."""
        try:
            render_runtime(runtime, config=self._config(), replicas=replicas)
        except UnsupportedRuntimeError as exc:
            return str(exc)
        return PoolSpec(name=runtime.name, replicas=replicas, host="external")

    async def sync(self, pools: Mapping[str, PoolSpec]) -> None:
        config = self._config()
        deployments: list[tuple[str, str]] = []
        hpas: list[tuple[str, str]] = []
        for name, spec in sorted(pools.items()):
            runtime = self._runtime(name)
            if runtime is None:
                continue
            try:
                rendered = render_runtime(runtime, config=config, replicas=spec.replicas)
            except (ValueError, MeshServeError) as exc:
                self._note_problem(name, str(exc))
                continue
            self._problems.pop(name, None)
            for document in rendered:
                kind = document.get("kind")
                metadata = document.get("metadata") or {}
                where = (str(metadata.get("namespace") or config.namespace), str(metadata["name"]))
                (deployments if kind == "Deployment" else hpas).append(where)
                if await self._writer.apply(document):
                    log.info("%s %s/%s applied (%d replicas planned)", kind, *where, spec.replicas)
        # The Services every runtime pod is behind, in each namespace that
        # has runtime pods (a Service selects pods of its own namespace
        # only), as upstream renders them per namespace (the pods' account
        # is installed with the operator: it grants the operator nothing).
        services: list[tuple[str, str]] = []
        for namespace in sorted({config.namespace, *(where for where, _ in deployments)}):
            for document in render_services(config, namespace=namespace):
                services.append((namespace, str(document["metadata"]["name"])))
                await self._writer.apply(document)
        # Also where a runtime's namespace is no longer served: its
        # Deployments and Services go, as upstream's do when a namespace
        # is unlabelled.
        namespaces = {config.namespace, *self._namespaces(), *self._resources.runtime_namespaces()}
        for endpoint, keep in ((HPAS, hpas), (DEPLOYMENTS, deployments), (SERVICES, services)):
            for gone in await self._writer.prune(endpoint, keep=keep, namespaces=namespaces):
                log.info("%s %s deleted: no runtime renders it now", endpoint.plural, gone)

    def problem(self, name: str) -> str | None:
        return self._problems.get(name)

    async def close(self) -> None:
        """Nothing: the Deployments outlive the operator (another replica
        takes them over)."""

    def _runtime(self, name: str) -> AnyRuntime | None:
        """The runtime a pool is named after: an applied one, else a shipped one."""
        document = self._resources.runtime_document(name, namespace=None)
        if document is None:
            return next((rt for rt in builtin_runtimes() if rt.name == name), None)
        try:
            runtime = parse_resource(document)
        except MeshServeError as exc:
            self._note_problem(name, str(exc))
            return None
        assert isinstance(runtime, ServingRuntime | ClusterServingRuntime)
        return runtime

    def _note_problem(self, name: str, problem: str) -> None:
        if self._problems.get(name) != problem:
            log.warning("runtime %s: no Deployment: %s", name, problem)
        self._problems[name] = problem
