"""Which runtime serves a model.

ModelMesh Serving never picks one runtime itself: it labels a model
``rt:<runtime>`` or ``mt:<format>[:<version>]`` and lets any runtime
advertising that label load it. A runtime advertises ``mt:`` labels only for
formats with ``autoSelect: true`` (both ``mt:<name>`` and, when it gives a
version, ``mt:<name>:<version>``), so a model without a version matches any
version and one with a version only that exact version string.

meshserve starts runtimes on demand, so it needs an order among the
runtimes that match; it uses KServe's: namespace ServingRuntimes before
ClusterServingRuntimes; within each, formats with a ``priority`` before those
without, higher first; ties by lowest protocol version, then newest, then
name. :attr:`RuntimeSelection.candidates` keeps every match in that order.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Iterable, Sequence
from typing import TypeVar

from meshserve.resources._serving_runtime import (
    ClusterServingRuntime,
    ServingRuntime,
    ServingRuntimeSpec,
)
from meshserve.resources._target import FormatRef

__all__ = ["FailureReason", "RuntimeSelection", "select_runtime"]

AnyRuntime = ServingRuntime | ClusterServingRuntime
_R = TypeVar("_R", ServingRuntime, ClusterServingRuntime)


class FailureReason(enum.StrEnum):
    """ModelMesh Serving's ``lastFailureInfo.reason`` values."""

    MODEL_LOAD_FAILED = "ModelLoadFailed"
    """The model failed to load within a runtime."""
    RUNTIME_UNHEALTHY = "RuntimeUnhealthy"
    """The runtime's instances failed to start or are unhealthy."""
    NO_SUPPORTING_RUNTIME = "NoSupportingRuntime"
    """No runtime supports the model's format (and version)."""
    RUNTIME_NOT_RECOGNIZED = "RuntimeNotRecognized"
    """No usable runtime has the name the resource gives."""
    INVALID_PREDICTOR_SPEC = "InvalidPredictorSpec"
    """The resource's spec is invalid or unsupported."""


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeSelection:
    """The outcome: a runtime, or the reason there is none."""

    runtime: AnyRuntime | None
    candidates: tuple[AnyRuntime, ...] = ()
    """Every runtime that could serve the model, best first."""
    reason: FailureReason | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.runtime is not None


# KServe's ordering of protocol versions (lower sorts first); unknown last.
_PROTOCOL_RANK = {"v1": 1, "v2": 2, "grpc-v1": 3, "grpc-v2": 4}
_UNKNOWN_PROTOCOL = 5
_OLDEST = datetime.datetime.min.replace(tzinfo=datetime.UTC)


def select_runtime(
    *,
    model_format: FormatRef,
    runtime_name: str | None = None,
    protocol_version: str | None = None,
    namespace: str,
    runtimes: Iterable[ServingRuntime],
    cluster_runtimes: Iterable[ClusterServingRuntime],
) -> RuntimeSelection:
    """Choose the runtime for a model of ``model_format``.

    With ``runtime_name``, the namespace's ServingRuntime of that name (else
    the ClusterServingRuntime) must exist, be enabled and multiModel
    (RuntimeNotRecognized) and list the format, autoSelect or not
    (NoSupportingRuntime). Without it, the best enabled multiModel runtime
    whose autoSelect formats match and that speaks ``protocol_version`` (if
    given) wins, else NoSupportingRuntime.
    """
    local = [rt for rt in runtimes if rt.namespace == namespace]
    cluster = list(cluster_runtimes)
    if runtime_name:
        return _named(runtime_name, model_format, namespace=namespace, local=local, cluster=cluster)
    ordered: list[AnyRuntime] = [
        *_rank(_matching(local, model_format, protocol_version), model_format),
        *_rank(_matching(cluster, model_format, protocol_version), model_format),
    ]
    if not ordered:
        wanted = _describe(model_format)
        if protocol_version:
            wanted += f" over protocol {protocol_version}"
        return RuntimeSelection(
            None,
            reason=FailureReason.NO_SUPPORTING_RUNTIME,
            message=f"No ServingRuntime supports specified model type: no enabled multiModel "
            f"runtime in namespace {namespace!r} or the cluster auto-selects {wanted}",
        )
    return RuntimeSelection(ordered[0], candidates=tuple(ordered))


def _named(
    name: str,
    model_format: FormatRef,
    *,
    namespace: str,
    local: Sequence[ServingRuntime],
    cluster: Sequence[ClusterServingRuntime],
) -> RuntimeSelection:
    # A namespace runtime shadows a cluster one of the same name, even when
    # it is disabled (as in KServe).
    found: AnyRuntime | None = next((rt for rt in local if rt.name == name), None)
    if found is None:
        found = next((rt for rt in cluster if rt.name == name), None)
    problem = ""
    if found is None:
        problem = f"no ServingRuntime {name!r} in namespace {namespace!r} nor ClusterServingRuntime"
    elif found.spec.is_disabled:
        problem = f"{found.kind} {name!r} is disabled"
    elif not found.spec.is_multi_model:
        problem = f"{found.kind} {name!r} is not multiModel"
    if problem:
        return RuntimeSelection(
            None,
            reason=FailureReason.RUNTIME_NOT_RECOGNIZED,
            message=f"Specified runtime name not recognized: {problem}",
        )
    assert found is not None
    if not _supports(found.spec, model_format, auto_only=False):
        return RuntimeSelection(
            None,
            reason=FailureReason.NO_SUPPORTING_RUNTIME,
            message=f"{found.kind} {name!r} does not support {_describe(model_format)}",
        )
    return RuntimeSelection(found, candidates=(found,))


def _matching(
    runtimes: Iterable[_R], model_format: FormatRef, protocol_version: str | None
) -> list[_R]:
    return [
        rt
        for rt in runtimes
        if not rt.spec.is_disabled
        and rt.spec.is_multi_model
        and _supports(rt.spec, model_format, auto_only=True)
        and _speaks(rt.spec, protocol_version)
    ]


def _supports(spec: ServingRuntimeSpec, model_format: FormatRef, *, auto_only: bool) -> bool:
    for supported in spec.supported_model_formats:
        if auto_only and supported.auto_select is not True:
            continue
        if supported.name != model_format.name:
            continue
        if model_format.version is None or supported.version == model_format.version:
            return True
    return False


def _speaks(spec: ServingRuntimeSpec, protocol_version: str | None) -> bool:
    if not protocol_version or not spec.protocol_versions:
        return True
    offered = set(spec.protocol_versions)
    # meshserve answers REST v2 for every grpc-v2 runtime (ModelMesh Serving
    # does the same when its REST proxy is enabled, the default).
    if "grpc-v2" in offered:
        offered.add("v2")
    return protocol_version in offered


def _rank(runtimes: list[_R], model_format: FormatRef) -> list[_R]:
    def base_order(rt: _R) -> tuple[int, float, str]:
        ranks = [_PROTOCOL_RANK.get(p, _UNKNOWN_PROTOCOL) for p in rt.spec.protocol_versions]
        created = rt.metadata.creation_timestamp or _OLDEST
        if created.tzinfo is None:
            created = created.replace(tzinfo=datetime.UTC)
        return (min(ranks, default=_UNKNOWN_PROTOCOL), -created.timestamp(), rt.name)

    def priority_order(rt: _R) -> tuple[int, int]:
        priority = _priority(rt.spec, model_format.name)
        return (0, -priority) if priority is not None else (1, 0)

    # Two stable sorts: the priority sort keeps the base order among equals.
    return sorted(sorted(runtimes, key=base_order), key=priority_order)


def _priority(spec: ServingRuntimeSpec, format_name: str) -> int | None:
    # KServe reads the priority of the first entry with the format's name.
    for supported in spec.supported_model_formats:
        if supported.name == format_name:
            return supported.priority
    return None


def _describe(model_format: FormatRef) -> str:
    if model_format.version is None:
        return f"model format {model_format.name!r}"
    return f"model format {model_format.name!r} version {model_format.version!r}"
