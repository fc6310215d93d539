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
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, ModelRecord
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
    copies = [c for c in records.copies if visible(c.model_id)]
    models = _model_rows(
        [m for m in records.models if visible(m.model_id)], copies, rpm_here=records.rpm_here
    )
    documents = await _admin_resources.get_resources(
        resources, kind="InferenceService", namespace="", name=""
    )
    return StatusSnapshot(
        served_by=source.instance_id,
        time_ms=now_ms,
        refresh_s=refresh_s,
        instances=tuple(_instance_row(r, here=source.instance_id) for r in records.instances),
        models=tuple(models[:rows]),
        models_total=len(models),
        loads=tuple(_load_rows(copies)[:rows]),
        failures=tuple(_failure_rows(copies)[:rows]),
        services=tuple(_service_row(document) for document in documents),
    )


def _instance_row(record: InstanceRecord, *, here: str) -> InstanceRow:
    return InstanceRow(
        instance_id=record.instance_id,
        capacity_bytes=record.capacity_bytes,
        used_bytes=record.used_bytes,
        model_count=record.model_count,
        lru_oldest_ms=record.lru_oldest_ms,
        rpm=record.rpm,
        loading_count=record.loading_count,
        loading_slots=record.loading_slots,
        shutting_down=record.shutting_down,
        version=record.version,
        here=record.instance_id == here,
    )


def _model_rows(
    models: Iterable[ModelRecord], copies: Iterable[CopyRecord], *, rpm_here: Mapping[str, int]
) -> list[ModelRow]:
    """The hottest first: busiest here, then most recently used anywhere."""
    by_model: dict[str, list[CopyRecord]] = {}
    for copy in copies:
        by_model.setdefault(copy.model_id, []).append(copy)
    found = []
    for model in models:
        its = by_model.get(model.model_id, [])
        found.append(
            ModelRow(
                model_id=model.model_id,
                type=model.type,
                copies=_where(its, CopyState.LOADED),
                loading_on=_where(its, CopyState.LOADING),
                size_bytes=max(
                    (c.size_bytes for c in its if c.state is CopyState.LOADED), default=0
                ),
                last_used_ms=model.last_requested_ms,
                rpm_here=rpm_here.get(model.model_id, 0),
            )
        )
    found.sort(key=lambda m: (-m.rpm_here, -m.last_used_ms, -len(m.copies), m.model_id))
    return found


def _where(copies: Iterable[CopyRecord], state: CopyState) -> tuple[str, ...]:
    return tuple(sorted(c.instance_id for c in copies if c.state is state))


def _load_rows(copies: Iterable[CopyRecord]) -> list[LoadRow]:
    """Loads in flight, the longest running first."""
    loads = [
        LoadRow(model_id=c.model_id, instance_id=c.instance_id, since_ms=c.time_ms)
        for c in copies
        if c.state is CopyState.LOADING
    ]
    return sorted(loads, key=lambda load: (load.since_ms, load.model_id))


def _failure_rows(copies: Iterable[CopyRecord]) -> list[FailureRow]:
    """Failed loads, the most recent first."""
    failures = [
        FailureRow(
            model_id=c.model_id,
            instance_id=c.instance_id,
            time_ms=c.time_ms,
            reason=c.error,
            error_type=c.error_type,
        )
        for c in copies
        if c.state is CopyState.FAILED
    ]
    return sorted(failures, key=lambda failure: (-failure.time_ms, failure.model_id))


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
