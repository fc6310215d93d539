"""The command host: a runtime the instance starts from a command line.

A ServingRuntime's container, run as a local process: the instance starts
the command, keeps it running (:class:`SupervisedCommand`: restarted with
backoff, dies with the instance) and drives it over ModelMesh's SPI at the
address the command was told to listen on, exactly as
:class:`ExternalRuntime` drives a runtime someone else runs (a restarted
runtime is empty: the loss and the reconnect are what the external host
already handles). When the instance is root the command runs as
``run_as_user``; its output goes to a log file of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from meshserve.errors import UnavailableError
from meshserve.runtime._external import ExternalRuntime
from meshserve.runtime._supervised import SupervisedCommand
from meshserve.security import resolve_user

__all__ = ["CommandRuntime"]

log = logging.getLogger(__name__)

_EXIT_POLL_S = 0.1


class CommandRuntime(ExternalRuntime):
    """Starts ``command`` and drives the runtime it serves at ``address``.

    Parameters (keyword-only), on top of :class:`ExternalRuntime`'s:

    ``command``, ``env``
        The argv (``command[0]`` looked up on PATH) and the variables added
        to this process's environment.
    ``log_path``
        Where the process's stdout and stderr go (appended).
    ``run_as_user``
        User name or uid the process becomes when this one is root ("" keeps root).
    ``restart_backoff_initial_s``, ``restart_backoff_max_s``, ``stop_grace_s``
        As :class:`SupervisedCommand`'s.
    """

    def __init__(
        self,
        *,
        command: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: pathlib.Path,
        run_as_user: str = "",
        restart_backoff_initial_s: float = 0.5,
        restart_backoff_max_s: float = 30.0,
        stop_grace_s: float = 5.0,
        **external: Any,
    ) -> None:
        if not command:
            raise ValueError("runtime.command is empty")
        super().__init__(**external)
        self._run_as_user = run_as_user
        self._command_name = command[0]
        self._supervised = functools.partial(
            SupervisedCommand,
            name="runtime command",
            argv=tuple(command),
            env=dict(env or {}),
            restart_backoff_initial_s=restart_backoff_initial_s,
            restart_backoff_max_s=restart_backoff_max_s,
            stop_grace_s=stop_grace_s,
            log_path=log_path,
        )
        self._process: SupervisedCommand | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def starts(self) -> int:
        """How many times the command was started (1 + restarts)."""
        return self._process.starts if self._process is not None else 0

    async def start(self) -> None:
        if self.address.unix_path is not None:
            pathlib.Path(self.address.unix_path).unlink(missing_ok=True)
        user = None
        if os.geteuid() == 0 and self._run_as_user:
            try:
                user = resolve_user(self._run_as_user)
            except (ValueError, OSError) as exc:
                raise UnavailableError(
                    f"cannot run the runtime as {self._run_as_user}: {exc}"
                ) from None
        self._process = self._supervised(user=user)
        await self._process.start()
        try:
            await self._ready_unless_it_exits(self._process)
        except BaseException:
            await self.stop()
            raise

    async def _ready_unless_it_exits(self, process: SupervisedCommand) -> None:
        """Wait for READY, but fail at once when the command exits first (a
        command that cannot run should not cost the whole start timeout)."""
        ready = asyncio.ensure_future(super().start())
        try:
            while not ready.done():
                if process.last_exit is not None:
                    raise UnavailableError(
                        f"runtime command {self._command_name} exited with code "
                        f"{process.last_exit} before it served the SPI; see its log"
                    )
                await asyncio.wait({ready}, timeout=_EXIT_POLL_S)
            ready.result()
        finally:
            if not ready.done():
                ready.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ready

    async def stop(self) -> None:
        await super().stop()
        process, self._process = self._process, None
        if process is not None:
            await process.stop()
