"""Builds the status snapshot (``meshserve.protocol.status_snapshot``) the
status page and ``meshserve status`` show.

One instance builds it from what every instance knows (the registry's
watched mirror and the InferenceServices' statuses in the store), so any
instance gives the same picture, except the per-model request rates, which
are the building instance's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from meshserve.controller import READY, ResourceStore, find_condition
from meshserve.mesh import MeshRecords
from meshserve.protocol.status_snapshot import (
    FailureRow,
    InstanceRow,
    LoadRow,
    ModelRow,
    ServiceRow,
    StatusSnapshot,
)
from meshserve.registry import CopyRecord, CopyState
from meshserve.security import may_see_model
from meshserve.server import _admin_resources

__all__ = ["StatusSource", "build_snapshot"]


class StatusSource(Protocol):
    """What a snapshot reads of the serving instance (``mesh.Instance``)."""

    @property
    def instance_id(self) -> str: ...

    def mesh_records(self) -> MeshRecords: ...


async def build_snapshot(
    source: StatusSource,
    resources: ResourceStore,
    *,
    rows: int,
    refresh_s: float,
    now_ms: int,
    visible: Callable[[str], bool] = may_see_model,
) -> StatusSnapshot:
    """The mesh as ``source`` sees it now, limited to what the current
    caller may see (``visible``: model ids; InferenceServices by namespace,
    as ``meshserve get`` filters them). At most ``rows`` models, loads and
    failures."""
    records = source.mesh_records()
    models = [m for m in records.models if visible(m.model_id)]
    copies = [c for c in records.copies if visible(c.model_id)]
    by_model: dict[str, list[CopyRecord]] = {}
    for copy in copies:
        by_model.setdefault(copy.model_id, []).append(copy)
    rows_of_models = [
        ModelRow(
            model_id=m.model_id,
            type=m.type,
            copies=_where(by_model.get(m.model_id, ()), CopyState.LOADED),
            loading_on=_where(by_model.get(m.model_id, ()), CopyState.LOADING),
            size_bytes=max(
                (c.size_bytes for c in by_model.get(m.model_id, ()) if c.state is CopyState.LOADED),
                default=0,
            ),
            last_used_ms=m.last_requested_ms,
            rpm_here=records.rpm_here.get(m.model_id, 0),
        )
        for m in models
    ]
    rows_of_models.sort(key=lambda m: (-m.rpm_here, -m.last_used_ms, -len(m.copies), m.model_id))
    loads = sorted(
        (
            LoadRow(model_id=c.model_id, instance_id=c.instance_id, since_ms=c.time_ms)
            for c in copies
            if c.state is CopyState.LOADING
        ),
        key=lambda load: (load.since_ms, load.model_id),
    )
    failures = sorted(
        (
            FailureRow(
                model_id=c.model_id,
                instance_id=c.instance_id,
                time_ms=c.time_ms,
                reason=c.error,
                error_type=c.error_type,
            )
            for c in copies
            if c.state is CopyState.FAILED
        ),
        key=lambda failure: (-failure.time_ms, failure.model_id),
    )
    return StatusSnapshot(
        served_by=source.instance_id,
        time_ms=now_ms,
        refresh_s=refresh_s,
        instances=tuple(
            InstanceRow(
                instance_id=r.instance_id,
                capacity_bytes=r.capacity_bytes,
                used_bytes=r.used_bytes,
                model_count=r.model_count,
                lru_oldest_ms=r.lru_oldest_ms,
                rpm=r.rpm,
                loading_count=r.loading_count,
                loading_slots=r.loading_slots,
                shutting_down=r.shutting_down,
                version=r.version,
                here=r.instance_id == source.instance_id,
            )
            for r in records.instances
        ),
        models=tuple(rows_of_models[:rows]),
        models_total=len(rows_of_models),
        loads=tuple(loads[:rows]),
        failures=tuple(failures[:rows]),
        services=tuple(
            _service_row(document)
            for document in await _admin_resources.get_resources(
                resources, kind="InferenceService", namespace="", name=""
            )
        ),
    )


def _where(copies: Iterable[CopyRecord], state: CopyState) -> tuple[str, ...]:
    return tuple(sorted(c.instance_id for c in copies if c.state is state))


def _service_row(document: Mapping[str, Any]) -> ServiceRow:
    """An InferenceService document with its status (KServe's shape, with
    ModelMesh's ``modelStatus``) as one row."""
    metadata = document.get("metadata") or {}
    status = document.get("status") or {}
    model_status = status.get("modelStatus") or {}
    states = model_status.get("states") or {}
    copies = model_status.get("copies") or {}
    failure = model_status.get("lastFailureInfo") or {}
    ready = find_condition(status, READY) or {}
    return ServiceRow(
        namespace=str(metadata.get("namespace") or "default"),
        name=str(metadata.get("name") or ""),
        ready=str(ready.get("status") or "Unknown"),
        active_model_state=str(states.get("activeModelState") or ""),
        target_model_state=str(states.get("targetModelState") or ""),
        transition_status=str(model_status.get("transitionStatus") or ""),
        total_copies=int(copies.get("totalCopies") or 0),
        failed_copies=int(copies.get("failedCopies") or 0),
        failure_reason=str(failure.get("reason") or ""),
        failure_message=str(failure.get("message") or ""),
    )
