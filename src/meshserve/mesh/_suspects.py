"""Peers that hang: avoided at once, used again when they answer.

A forward whose hop deadline passed marks its peer suspect: routing and
placement skip it from then on (no request pays the hop deadline twice in a
row for the same peer), and a probe asks the peer's internal port whether it
is live every ``suspect_probe_interval_s``. The peer is used again when it
answers, or forgotten when its lease goes (it left the mesh; if it comes
back it rejoins under a new lease and starts clean).
"""

from __future__ import annotations

import asyncio
import logging

from meshserve.errors import MeshServeError
from meshserve.mesh._background import Spawn
from meshserve.mesh._peers import PeerLink, need_peers
from meshserve.registry import Registry
from meshserve.settings import MeshSettings

__all__ = ["Suspects"]

log = logging.getLogger(__name__)


class Suspects:
    """The peers this instance found hanging, each probed until it answers."""

    def __init__(
        self,
        *,
        registry: Registry,
        peers: PeerLink | None,
        settings: MeshSettings,
        spawn: Spawn,
    ) -> None:
        self._registry = registry
        self._peers = peers
        self._settings = settings
        self._spawn = spawn
        self._suspects: set[str] = set()

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._suspects

    def mark(self, instance_id: str) -> None:
        """``instance_id`` did not answer in time: avoid it until it does."""
        if instance_id in self._suspects:
            return
        log.warning("instance %s did not answer in time: avoiding it until it does", instance_id)
        self._suspects.add(instance_id)
        self._spawn(self._probe(instance_id), name=f"probe:{instance_id}")

    async def _probe(self, instance_id: str) -> None:
        settings = self._settings
        try:
            while True:
                await asyncio.sleep(settings.suspect_probe_interval_s)
                record = self._registry.instance(instance_id)
                if record is None:
                    log.info("suspect instance %s left the mesh", instance_id)
                    return
                try:
                    await need_peers(self._peers).live(
                        record.address, timeout_s=settings.suspect_probe_timeout_s
                    )
                except MeshServeError:
                    continue
                log.info("instance %s answers again", instance_id)
                return
        finally:
            self._suspects.discard(instance_id)
