"""One active operator: leader election over a coordination.k8s.io Lease.

client-go's scheme: the holder renews ``spec.renewTime`` every
``control.operatorLeaseRenewS``; another replica takes the Lease only once
``renewTime + leaseDurationSeconds`` has passed. Each write is a merge
patch naming the ``resourceVersion`` it read, which the API server refuses
(409) if someone wrote in between. A holder that has not renewed within the
duration stops acting on its own before anyone else may start.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from meshserve.operator._endpoints import LEASES
from meshserve.operator._kube import ApiError, KubeApi, Ref

__all__ = ["LeaseElection"]

log = logging.getLogger(__name__)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: object) -> datetime.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class LeaseElection:
    """Holds (or waits for) the Lease ``namespace/name`` as ``identity``."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float,
        renew_s: float,
        clock: Callable[[], datetime.datetime] = _now,
    ) -> None:
        self._api = api
        self._ref = Ref(LEASES, namespace, name)
        self._identity = identity
        self._duration_s = duration_s
        self._renew_s = renew_s
        self._clock = clock
        self._renewed_at: float | None = None  # monotonic time of our last renewal
        self._changed = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        """Held, and renewed within the duration (never longer: another
        replica may take it after that)."""
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() - renewed < self._duration_s

    async def wait_until_leader(self) -> None:
        while not self.is_leader:
            self._changed.clear()
            await self._changed.wait()

    async def run(self) -> None:
        """Try to take or renew the Lease every renew interval, forever."""
        while True:
            try:
                await self.try_once()
            except ApiError as exc:
                log.warning("operator lease %s: %s", self._ref.name, exc)
            await asyncio.sleep(self._renew_s)

    async def try_once(self) -> bool:
        """One attempt; whether this replica holds the Lease now."""
        was = self.is_leader
        started = time.monotonic()
        held = await self._attempt()
        if held:
            self._renewed_at = started
        elif was or self._renewed_at is not None:
            self._renewed_at = None
        if held != was:
            log.info(
                "operator %s %s the lease %s",
                self._identity,
                "holds" if held else "lost",
                self._ref.name,
            )
            self._changed.set()
        return held

    async def release(self) -> None:
        """Give the Lease up (on a clean stop), so a standby takes over at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        self._changed.set()
        lease = await self._api.get(self._ref)
        if lease is not None and _holder(lease) == self._identity:
            await self._api.patch(
                self._ref,
                {
                    "metadata": {"resourceVersion": _version(lease)},
                    "spec": {"holderIdentity": "", "renewTime": None},
                },
            )

    async def _attempt(self) -> bool:
        now = self._clock()
        lease = await self._api.get(self._ref)
        spec = {
            "holderIdentity": self._identity,
            "leaseDurationSeconds": max(1, round(self._duration_s)),
            "renewTime": _micro_time(now),
        }
        if lease is None:
            created = await self._api.create(
                self._ref,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self._ref.name, "namespace": self._ref.namespace},
                    "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0},
                },
            )
            return created is not None
        holder = _holder(lease)
        if holder != self._identity:
            if holder and not self._expired(lease, now):
                return False
            transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0) + 1
            spec |= {"acquireTime": _micro_time(now), "leaseTransitions": transitions}
        try:
            await self._api.patch(
                self._ref, {"metadata": {"resourceVersion": _version(lease)}, "spec": spec}
            )
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote first
                return False
            raise
        # Read it back: of two replicas patching at once, the API server
        # keeps one; the other sees the winner's name here.
        check = await self._api.get(self._ref)
        return check is not None and _holder(check) == self._identity

    def _expired(self, lease: dict[str, Any], now: datetime.datetime) -> bool:
        spec = lease.get("spec") or {}
        renewed = _parse_time(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds") or self._duration_s
        return renewed is None or (now - renewed).total_seconds() >= float(duration)


def _holder(lease: dict[str, Any]) -> str:
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _version(lease: dict[str, Any]) -> str | None:
    version = (lease.get("metadata") or {}).get("resourceVersion")
    return str(version) if version else None
