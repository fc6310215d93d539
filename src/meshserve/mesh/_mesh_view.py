"""The mesh as one instance sees it: the other instances and their copies.

The registry's mirror says who is alive and what each holds; this instance
adds what it learned itself: peers that did not answer (skipped for
``peer_retry_s``), peers that hang (suspects, skipped until they answer),
placements it has just made (counted against their target until its record
catches up, so a burst of new models does not all land on one instance)
and the requests it has in flight to each peer (to pick the least busy
copy).

While absences are no evidence (``StoreContact``: the store is out of
reach, or was until moments ago), peers and copies the mirror lost since
contact went are still listed as they were last known: a peer that is
really gone shows itself by not answering (``mark_unreachable``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass

from meshserve._clock import Clock
from meshserve.errors import MeshServeError
from meshserve.mesh._placement import HOLDS_NO_MODELS, choose_instance, required_label
from meshserve.mesh._store_contact import StoreContact
from meshserve.protocol.status import error_from_name
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, ModelRecord, Registry
from meshserve.settings import MeshSettings

__all__ = ["FAILED", "LOADED", "SERVING", "MeshView"]

LOADED = frozenset({CopyState.LOADED})
FAILED = frozenset({CopyState.FAILED})
SERVING = frozenset({CopyState.LOADED, CopyState.LOADING})


@dataclass(frozen=True, slots=True)
class _Remembered:
    """The mesh as the mirror had it when contact with the store was lost."""

    instances: dict[str, InstanceRecord]
    copies: dict[str, dict[str, CopyRecord]]
    """Model id -> instance id -> its copy."""


class MeshView:
    """Other instances, their copies and failures, as routing needs them."""

    def __init__(
        self,
        *,
        registry: Registry,
        instance_id: str,
        settings: MeshSettings,
        clock: Clock,
        describe: Callable[[], InstanceRecord],
        default_model_size: int,
        contact: StoreContact,
        suspects: Container[str] = frozenset(),
    ) -> None:
        """``suspects``: peers that hang (``Suspects``), skipped like the
        unreachable ones."""
        self._registry = registry
        self.contact = contact
        self._remembered: _Remembered | None = None
        contact.lost_event.subscribe(lambda _: self._remember())
        self.instance_id = instance_id
        self._settings = settings
        self._clock = clock
        self._describe = describe
        self._default_size = default_model_size
        self._suspects = suspects
        self._unreachable_until: dict[str, float] = {}
        self._pending: dict[str, tuple[int, float]] = {}
        self._forwarding: dict[str, int] = {}

    # -- the mirror, or what was last known of the mesh -----------------------

    def _remember(self) -> None:
        registry = self._registry
        self._remembered = _Remembered(
            instances={i: v.record for i, v in registry.instances.items()},
            copies={m: dict(registry.copies(m)) for m in registry.models},
        )

    def _memory(self) -> _Remembered | None:
        """What was known before the store went away, while the mirror's
        absences are no evidence (None: the mirror is to be trusted)."""
        if self.contact.absences_are_evidence():
            self._remembered = None
        return self._remembered

    def trusts_absences(self) -> bool:
        """A peer missing from the view may be taken as gone (see StoreContact)."""
        return self.contact.absences_are_evidence()

    def _instances(self) -> dict[str, InstanceRecord]:
        """Live instances by id: the mirror's, plus remembered ones it lost."""
        records = {i: v.record for i, v in self._registry.instances.items()}
        memory = self._memory()
        if memory is not None:
            for instance_id, record in memory.instances.items():
                records.setdefault(instance_id, record)
        return records

    def instance(self, instance_id: str) -> InstanceRecord | None:
        """A live instance's record (remembered while the store was away)."""
        record = self._registry.instance(instance_id)
        if record is None and (memory := self._memory()) is not None:
            record = memory.instances.get(instance_id)
        return record

    def _live_copies(self, model_id: str) -> list[CopyRecord]:
        """Copies on live instances; a remembered instance the mirror lost
        keeps the copies it had."""
        live = self._registry.instances
        copies = [c for i, c in self._registry.copies(model_id).items() if i in live]
        memory = self._memory()
        if memory is not None:
            copies.extend(
                c
                for i, c in memory.copies.get(model_id, {}).items()
                if i not in live and i in memory.instances
            )
        return copies

    def live_instances(self) -> list[InstanceRecord]:
        """Instances that may take work: this one (as it is now) and the
        others the store lists, minus those that did not answer lately."""
        now = self._clock.monotonic()
        records = [self._describe()]
        for instance_id, record in self._instances().items():
            if instance_id != self.instance_id and self._reachable(instance_id, now):
                records.append(self._with_pending(record, now))
        return records

    def _reachable(self, instance_id: str, now: float) -> bool:
        return (
            self._unreachable_until.get(instance_id, 0.0) <= now
            and instance_id not in self._suspects
        )

    def _with_pending(self, record: InstanceRecord, now: float) -> InstanceRecord:
        pending = self._pending.get(record.instance_id)
        if pending is None or pending[1] < now:
            return record
        return dataclasses.replace(
            record, used_bytes=record.used_bytes + pending[0], model_count=record.model_count + 1
        )

    def note_placement(self, instance_id: str, size_bytes: int) -> None:
        """A copy was just placed on ``instance_id``: count it until its
        record shows it."""
        now = self._clock.monotonic()
        before, expires = self._pending.get(instance_id, (0, 0.0))
        base = before if expires >= now else 0
        self._pending[instance_id] = (
            base + size_bytes,
            now + 2 * self._settings.publish_interval_s,
        )

    def mark_unreachable(self, instance_id: str) -> None:
        self._unreachable_until[instance_id] = self._clock.monotonic() + self._settings.peer_retry_s

    def is_draining(self, instance_id: str) -> bool:
        """Gone, or shutting down."""
        record = self.instance(instance_id)
        return record is None or record.shutting_down

    @contextlib.contextmanager
    def forwarding(self, instance_id: str) -> Iterator[None]:
        """Count a request in flight to ``instance_id``."""
        self._forwarding[instance_id] = self._forwarding.get(instance_id, 0) + 1
        try:
            yield
        finally:
            self._forwarding[instance_id] -= 1

    def copies(self, model_id: str, *, states: frozenset[CopyState]) -> list[CopyRecord]:
        """Every live instance's copies of a model in one of ``states``, this
        one's included, as the registry has them: the same from every
        instance (unlike :meth:`remote_copies`, which skips peers this one
        found unreachable)."""
        return [copy for copy in self._live_copies(model_id) if copy.state in states]

    def remote_copies(self, model_id: str, *, states: frozenset[CopyState]) -> list[CopyRecord]:
        """Other live instances' copies of a model in one of ``states``."""
        now = self._clock.monotonic()
        return [
            copy
            for copy in self._live_copies(model_id)
            if copy.instance_id != self.instance_id
            and copy.state in states
            and self._reachable(copy.instance_id, now)
        ]

    def remote_failure(self, model_id: str, *, expiry_s: float) -> MeshServeError | None:
        """An unexpired load failure of the model on another live instance."""
        now_ms = int(self._clock.time() * 1000)
        for copy in self.remote_copies(model_id, states=FAILED):
            if now_ms - copy.time_ms < expiry_s * 1000:
                return error_from_name(copy.error_type, copy.error)
        return None

    def pick_copy(self, model_id: str, exclude: set[str]) -> InstanceRecord | None:
        """The copy elsewhere to send a request to: loaded before loading,
        not draining before draining, fewest requests in flight from here."""
        copies = [
            c for c in self.remote_copies(model_id, states=SERVING) if c.instance_id not in exclude
        ]
        if not copies:
            return None

        def busy(copy: CopyRecord) -> tuple[bool, bool, int, float]:
            return (
                copy.state is not CopyState.LOADED,
                self.is_draining(copy.instance_id),
                self._forwarding.get(copy.instance_id, 0),
                random.random(),
            )

        return self.instance(min(copies, key=busy).instance_id)

    def place(self, record: ModelRecord, exclude: set[str]) -> InstanceRecord | None:
        """Where a new copy of ``record`` goes (None: nowhere may take it)."""
        label = required_label(record.type.lower())
        instances = self.live_instances()
        if not any(label in r.labels for r in instances):
            if label.startswith("rt:") or self.instance_id in exclude:
                # A named runtime whose instances are not up (yet): wait for them.
                return None
            # No instance advertises the format: let a runtime try, so the
            # error is the runtime's own precise one; never a member that
            # holds no models (the operator's).
            return next((r for r in instances if HOLDS_NO_MODELS not in r.labels), None)
        return choose_instance(
            instances,
            label=label,
            exclude=exclude,
            default_model_size=self._default_size,
            prefer=self.instance_id,
        )
