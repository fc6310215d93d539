"""The runtimes a resource may name or auto-select, and which cannot run here.

Every applied ServingRuntime and ClusterServingRuntime takes part in
selection, the refused ones included, so that a model choosing one of those
is refused with the reason (``runtime X cannot run here: ...``) rather than
served by another runtime or told the runtime it can see in ``meshserve get``
is "not recognized". A runtime cannot run here when its document is invalid,
when its images or commands match no pattern of
``control.allowedRuntimeImages``, or when whoever runs pools cannot run it
(an image-only container, a ``builtInAdapter`` other than mlserver: see
:meth:`PoolPlanner.cannot_run`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshserve.controller._builtin_runtimes import builtin_runtimes
from meshserve.controller._pools import AnyRuntime
from meshserve.controller._resource_store import ResourceKey
from meshserve.controller._status import RuntimeVerdict
from meshserve.errors import ForeignResourceError, InvalidResourceError
from meshserve.resources import (
    ClusterServingRuntime,
    FailureReason,
    ModelTarget,
    ServingRuntime,
    parse_resource,
    select_runtime,
    validate_serving_runtime,
)

__all__ = ["RuntimeCatalog", "RuntimeRefusal", "runtime_catalog"]

RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")


@dataclass(frozen=True, slots=True)
class RuntimeRefusal:
    """Why a resource gets no runtime."""

    reason: FailureReason
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeCatalog:
    """The runtimes of one reconcile pass."""

    runtimes: tuple[ServingRuntime, ...] = ()
    """The applied namespace runtimes that could be read."""
    cluster_runtimes: tuple[ClusterServingRuntime, ...] = ()
    """The shipped cluster runtimes and the applied ones (which replace a
    shipped one of the same name)."""
    verdicts: dict[ResourceKey, RuntimeVerdict] = field(default_factory=dict)
    """Each applied runtime's status."""
    cannot_run: dict[ResourceKey, str] = field(default_factory=dict)
    """The applied runtimes that cannot run here, and why (those that could
    not be read included)."""

    @property
    def every(self) -> list[AnyRuntime]:
        """Every runtime that could be read, whether it can run here or not."""
        return [*self.runtimes, *self.cluster_runtimes]

    @property
    def usable(self) -> list[AnyRuntime]:
        """The runtimes that may run here (what the pools are planned from)."""
        return [rt for rt in self.every if _key(rt) not in self.cannot_run]

    def choose(self, target: ModelTarget, *, namespace: str) -> AnyRuntime | RuntimeRefusal:
        """The runtime ``target`` names or auto-selects, or why it gets none."""
        selection = select_runtime(
            model_format=target.model_format,
            runtime_name=target.runtime,
            protocol_version=target.protocol_version,
            namespace=namespace,
            runtimes=self.runtimes,
            cluster_runtimes=self.cluster_runtimes,
        )
        runtime = selection.runtime
        if runtime is None:
            unreadable = self._unreadable(target.runtime, namespace) if target.runtime else None
            if unreadable is not None:
                return RuntimeRefusal(
                    FailureReason.RUNTIME_UNHEALTHY,
                    f"runtime {target.runtime} cannot run here: {unreadable}",
                )
            reason = selection.reason or FailureReason.NO_SUPPORTING_RUNTIME
            return RuntimeRefusal(reason, selection.message)
        why = self.cannot_run.get(_key(runtime))
        if why is None:
            return runtime
        message = f"runtime {runtime.name} cannot run here: {why}"
        if not target.runtime:
            # Auto-selected: the model is not sent to a lesser runtime
            # behind the user's back; say which could take it instead.
            others = [c.name for c in selection.candidates if _key(c) not in self.cannot_run]
            wanted = f"model format {target.model_format.name!r}"
            message += (
                f" (auto-selected for {wanted}; name one that can run here as the resource's "
                f"runtime ({', '.join(others)}), or delete or disable {runtime.name})"
                if others
                else f" (auto-selected for {wanted}; no runtime that can run here supports it)"
            )
        return RuntimeRefusal(FailureReason.RUNTIME_UNHEALTHY, message)

    def _unreadable(self, name: str, namespace: str) -> str | None:
        """Why the applied runtime ``name`` that could not be read cannot run
        (None: there is none such)."""
        read = {_key(rt) for rt in self.every}
        for key in (
            ResourceKey.named("ServingRuntime", namespace, name),
            ResourceKey.named("ClusterServingRuntime", namespace, name),
        ):
            if key in self.cannot_run and key not in read:
                return self.cannot_run[key]
        return None


def runtime_catalog(
    documents: dict[ResourceKey, dict[str, Any]],
    *,
    allowed: tuple[str, ...],
    cannot_run: Callable[[AnyRuntime], str | None] | None = None,
) -> RuntimeCatalog:
    """The catalogue of the applied ``documents`` (other kinds are ignored)
    and the shipped runtimes. ``allowed``: ``control.allowedRuntimeImages``;
    ``cannot_run``: why a runtime's pool cannot run here (None: no pools
    are run here, so none is refused for that)."""
    runtimes: list[ServingRuntime] = []
    cluster: list[ClusterServingRuntime] = list(builtin_runtimes())
    verdicts: dict[ResourceKey, RuntimeVerdict] = {}
    refused: dict[ResourceKey, str] = {}
    for key, document in sorted(documents.items()):
        if key.kind not in RUNTIME_KINDS:
            continue
        try:
            resource = parse_resource(document)
            assert isinstance(resource, ServingRuntime | ClusterServingRuntime)
        except InvalidResourceError as exc:
            verdicts[key] = RuntimeVerdict(accepted=False, message=str(exc))
            refused[key] = str(exc)
            continue
        if isinstance(resource, ServingRuntime):
            runtimes.append(resource)
        else:
            cluster = [r for r in cluster if r.name != resource.name] + [resource]
        try:
            validate_serving_runtime(resource)
        except ForeignResourceError as exc:
            # Not multiModel: selection says so itself (RuntimeNotRecognized,
            # as ModelMesh Serving does) and never auto-selects it.
            verdicts[key] = RuntimeVerdict(accepted=False, message=str(exc))
            continue
        except InvalidResourceError as exc:
            verdicts[key] = RuntimeVerdict(accepted=False, message=str(exc))
            refused[key] = str(exc)
            continue
        refusal = _not_allowed(resource, allowed)
        if refusal is not None:
            verdicts[key] = RuntimeVerdict(accepted=False, message=refusal)
            refused[key] = refusal
            continue
        unrunnable = cannot_run(resource) if cannot_run is not None else None
        if unrunnable is not None:
            verdicts[key] = RuntimeVerdict(accepted=True, message=f"cannot run here: {unrunnable}")
            refused[key] = unrunnable
            continue
        verdicts[key] = RuntimeVerdict(accepted=True)
    return RuntimeCatalog(
        runtimes=tuple(runtimes),
        cluster_runtimes=tuple(cluster),
        verdicts=verdicts,
        cannot_run=refused,
    )


def _not_allowed(runtime: AnyRuntime, allowed: tuple[str, ...]) -> str | None:
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


def _key(runtime: AnyRuntime) -> ResourceKey:
    return ResourceKey.named(runtime.kind, runtime.namespace, runtime.name)
