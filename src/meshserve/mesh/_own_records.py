"""What the mesh sees of this instance: its record and its copies' records,
built from the cache (``Membership`` publishes them under the lease)."""

from __future__ import annotations

from meshserve import __version__
from meshserve._clock import Clock
from meshserve._ids import InstanceId, ModelId
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._instance_state import Lifecycle
from meshserve.mesh._rates import RateTracker
from meshserve.mesh._status import ModelState
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, Registry
from meshserve.resources import redact_uris

__all__ = ["COPY_STATES", "MODEL_STATES", "OwnRecords", "copy_state"]

COPY_STATES = {
    ModelState.LOADING: CopyState.LOADING,
    ModelState.LOADED: CopyState.LOADED,
    ModelState.LOADING_FAILED: CopyState.FAILED,
}
MODEL_STATES = {v: k for k, v in COPY_STATES.items()}


def copy_state(state: ModelState) -> CopyState | None:
    """How a copy in ``state`` is published (None: it is not)."""
    return COPY_STATES.get(state)


class OwnRecords:
    """This instance's records, as it publishes them."""

    def __init__(
        self,
        *,
        instance_id: InstanceId,
        address: str,
        data_address: str = "",
        labels: tuple[str, ...],
        registry: Registry,
        cache: ModelCache,
        rates: RateTracker,
        lifecycle: Lifecycle,
        clock: Clock,
    ) -> None:
        self.instance_id = instance_id
        self._address = address
        self._data_address = data_address
        self._labels = labels
        self._registry = registry
        self._cache = cache
        self._rates = rates
        self._lifecycle = lifecycle
        self._clock = clock

    def describe(self) -> InstanceRecord:
        """This instance's record, as published in the store."""
        lru = self._cache.lru
        oldest = lru.oldest_last_used_ms()
        return InstanceRecord(
            instance_id=self.instance_id,
            address=self._address,
            capacity_bytes=lru.capacity_bytes,
            used_bytes=lru.used_bytes,
            model_count=self._cache.loaded_count(),
            lru_oldest_ms=oldest,
            # Two significant digits: it drifts as uses decay, and each
            # change republishes the record.
            victim_value=float(f"{lru.victim_value(int(self._clock.time() * 1000)):.2g}"),
            loading_slots=self._cache.loading_slots,
            loading_count=self._cache.loading_count,
            # Whole minutes' worth, so that small jitter does not republish.
            rpm=self._rates.total_rpm() // 10 * 10,
            labels=self._labels,
            shutting_down=self._lifecycle.leaving,
            started_ms=self._lifecycle.started_ms,
            version=__version__,
            data_address=self._data_address,
        )

    def copy_record(self, model_id: str, state: ModelState) -> CopyRecord | None:
        """The record of this instance's copy of ``model_id`` in ``state``
        (None: a copy in that state is not published)."""
        published = copy_state(state)
        if published is None:
            return None
        error = ""
        error_type = ""
        size_bytes = 0
        time_ms = int(self._clock.time() * 1000)
        if published is CopyState.FAILED:
            failure = self._cache.failure(model_id)
            if failure is None:
                return None
            # Published to every instance and shown in statuses.
            error, error_type = redact_uris(str(failure.error)), type(failure.error).__name__
            time_ms = int(failure.time_s * 1000)
        elif published is CopyState.LOADED:
            entry = self._cache.lru.get(model_id)
            if entry is not None and entry.loaded_at_ms:
                time_ms = entry.loaded_at_ms
            size_bytes = entry.size_bytes if entry is not None else 0
        return CopyRecord(
            model_id=ModelId(model_id),
            instance_id=self.instance_id,
            state=published,
            time_ms=time_ms,
            error=error,
            error_type=error_type,
            size_bytes=size_bytes,
        )

    def local_copies(self) -> list[CopyRecord]:
        """Every copy this instance publishes now (written again on rejoining)."""
        copies = []
        for model_id in self._registry.models:
            copy = self.copy_record(model_id, self._cache.state(model_id))
            if copy is not None:
                copies.append(copy)
        return copies
