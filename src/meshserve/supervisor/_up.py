"""``meshserve up`` with one instance: it serves in this process, and runs
the runtime pools its controller sizes as supervised children."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshserve.server import Endpoints, ModelEntry, serve_instance
from meshserve.settings import Settings
from meshserve.supervisor._pools import LocalPools

__all__ = ["run_with_pools"]


async def run_with_pools(
    settings: Settings,
    *,
    register: list[ModelEntry],
    stop: asyncio.Event,
    hurry: asyncio.Event | None = None,
    on_ready: Callable[[Endpoints], None] | None = None,
) -> None:
    """Serve until ``stop`` is set (``hurry``: see ``serve_instance``); no
    pool instance outlives the call."""
    pools = LocalPools(settings)
    try:
        await serve_instance(
            settings, register=register, stop=stop, hurry=hurry, on_ready=on_ready, pools=pools
        )
    finally:
        await pools.close()
