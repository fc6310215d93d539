"""How the serving commands read their stop signals: SIGTERM stops with a
lame duck, SIGINT without, a second signal ends the lame duck."""

from __future__ import annotations

import asyncio
import os
import signal

from meshserve.cli._options import Shutdown, shutdown_on_signals


async def _signal(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    # The loop runs the handler on its next turn.
    for _ in range(10):
        await asyncio.sleep(0.01)


async def _after(sig: signal.Signals, shutdown: Shutdown) -> tuple[bool, bool]:
    await _signal(sig)
    return shutdown.stop.is_set(), shutdown.hurry.is_set()


async def test_sigterm_stops_with_a_lame_duck_and_a_second_one_ends_it() -> None:
    shutdown = shutdown_on_signals()
    assert (shutdown.stop.is_set(), shutdown.hurry.is_set()) == (False, False)
    assert await _after(signal.SIGTERM, shutdown) == (True, False)
    assert await _after(signal.SIGTERM, shutdown) == (True, True)


async def test_sigint_stops_without_a_lame_duck() -> None:
    shutdown = shutdown_on_signals()
    assert await _after(signal.SIGINT, shutdown) == (True, True)


async def test_sigint_during_the_lame_duck_ends_it() -> None:
    shutdown = shutdown_on_signals()
    assert await _after(signal.SIGTERM, shutdown) == (True, False)
    assert await _after(signal.SIGINT, shutdown) == (True, True)


async def test_sigusr1_stops_with_a_lame_duck_handing_the_shared_ports_over() -> None:
    shutdown = shutdown_on_signals()
    assert await _after(signal.SIGUSR1, shutdown) == (True, False)
    assert shutdown.hand_over.is_set()


async def test_sigterm_keeps_the_shared_ports() -> None:
    shutdown = shutdown_on_signals()
    assert await _after(signal.SIGTERM, shutdown) == (True, False)
    assert not shutdown.hand_over.is_set()
