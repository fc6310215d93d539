"""Supervised ``meshserve instance`` children of one ``meshserve up``.

Each child gets its settings as a config file in its own data dir, logs to
``instance.log`` there, and reports where it listens in ``endpoints.json``.
A child that exits on its own is started again after a delay that doubles
per failure (``control.restartBackoff*``); on stop it gets SIGTERM (its
lame duck, then its drain; SIGINT as well when the stop is hurried, which
skips the lame duck), then SIGKILL after :func:`stop_deadline_s`; a
rolling restart (:meth:`InstanceChild.restart`) stops it the same way and
starts it again. Children
die with their parent (``PR_SET_PDEATHSIG``): a killed ``up`` leaves no
instance behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import signal
import sys
from collections.abc import Callable
from typing import Any

import yaml

from meshserve.errors import UnavailableError
from meshserve.runtime import with_parent
from meshserve.settings import Settings

__all__ = ["InstanceChild", "start_failure", "stop_deadline_s"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 120.0


# How much of the end of a child's log is searched for why it failed to start.
_LOG_TAIL_BYTES = 16_384
# How a command that fails to start says why (click's ClickException).
_ERROR_PREFIX = "Error: "


def stop_deadline_s(settings: Settings) -> float:
    """How long a child with ``settings`` may take to stop after SIGTERM
    before it is killed: its lame duck, its drain, the grace of its public
    and then its internal port, and 5 s for the rest (leaving the mesh,
    closing the runtime)."""
    server = settings.server
    return server.lame_duck_s + settings.mesh.drain_deadline_s + 2 * server.grace_period_s + 5


def start_failure(log_path: pathlib.Path) -> str | None:
    """Why a ``meshserve`` child that exited at start gave up: the message of
    its last ``Error: ...`` line (what it printed before exiting), if any."""
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(max(0, log_path.stat().st_size - _LOG_TAIL_BYTES))
            tail = log_file.read().decode(errors="replace")
    except OSError:
        return None
    errors = [line for line in tail.splitlines() if line.startswith(_ERROR_PREFIX)]
    if not errors:
        return None
    return errors[-1].removeprefix(_ERROR_PREFIX).strip() or None


class InstanceChild:
    """One supervised instance process."""

    def __init__(
        self,
        *,
        name: str,
        settings: Settings,
        register: pathlib.Path | None = None,
    ) -> None:
        self.name = name
        self.data_dir = settings.data_dir
        self.settings = settings
        self._register = register
        self.process: asyncio.subprocess.Process | None = None
        self.endpoints: dict[str, Any] | None = None
        self._stopping = False
        self._rolling: asyncio.Event | None = None
        """Set while :meth:`restart` replaces the process (not a crash)."""
        self.restarts = 0
        self.last_error: str | None = None
        """Why the last start failed (None once one succeeds)."""

    def _write_config(self) -> pathlib.Path:
        values = self.settings.model_dump(mode="json")
        # Secrets go in the environment, never in a file.
        values["store"].pop("etcd_password", None)
        values["security"].pop("sealing_key", None)
        path = self.data_dir / "instance.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        endpoints = self.data_dir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        command = with_parent(
            [
                sys.executable,
                "-m",
                "meshserve",
                "instance",
                "--config",
                str(self._write_config()),
            ]
        )
        if self._register is not None:
            command += ["--register", str(self._register)]
        env = dict(os.environ)
        password = self.settings.store.etcd_password.get_secret_value()
        if password:
            env["MESHSERVE_STORE__ETCD_PASSWORD"] = password
        sealing_key = self.settings.security.sealing_key.get_secret_value()
        if sealing_key:
            env["MESHSERVE_SECURITY__SEALING_KEY"] = sealing_key
        with (self.data_dir / "instance.log").open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
        while not endpoints.exists():
            if self.process.returncode is not None:
                log_path = self.data_dir / "instance.log"
                reason = start_failure(log_path)
                self.last_error = (
                    f"exited with code {self.process.returncode} at start"
                    + (f": {reason}" if reason else "")
                    + f"; see {log_path}"
                )
                raise UnavailableError(f"instance {self.name} {self.last_error}")
            if asyncio.get_running_loop().time() > deadline:
                self.last_error = "did not start in time"
                raise UnavailableError(f"instance {self.name} {self.last_error}")
            await asyncio.sleep(0.1)
        self.endpoints = json.loads(endpoints.read_text())["instances"][0]
        self.last_error = None

    async def supervise(self, on_change: Callable[[], object]) -> None:
        """Restart the child whenever it exits on its own."""
        initial = self.settings.control.restart_backoff_initial_s
        most = self.settings.control.restart_backoff_max_s
        delay = initial
        while not self._stopping:
            assert self.process is not None
            started = asyncio.get_running_loop().time()
            code = await self.process.wait()
            rolling = self._rolling
            if rolling is not None:
                # Stopped by a rolling restart, which starts the next one.
                await rolling.wait()
                if self._stopping:
                    return
                if self.process.returncode is None:
                    delay = initial
                    continue
                code = self.process.returncode  # it did not come back: as a crash
            if asyncio.get_running_loop().time() - started > most:
                delay = initial  # it ran a while: not a crash loop
            if self._stopping:
                return
            log.warning(
                "instance %s exited with code %s; restarting in %.1f s", self.name, code, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)
            try:
                await self.start()
            except UnavailableError as exc:
                log.error("instance %s did not restart: %s", self.name, exc)
                continue
            self.restarts += 1
            on_change()

    async def restart(self, deadline_s: float) -> None:
        """Stop the child as :meth:`stop` does (lame duck, drain) and start it
        again; returns once the new one listens (UnavailableError if it does
        not start). The supervisor does not count it as a crash."""
        rolling = self._rolling = asyncio.Event()
        try:
            # Its ports stay with the others while it goes (SIGUSR1).
            await self._end(deadline_s, hurry=None, sig=signal.SIGUSR1)
            if not self._stopping:
                await self.start()
        finally:
            self._rolling = None
            rolling.set()

    async def stop(self, deadline_s: float, *, hurry: asyncio.Event | None = None) -> None:
        """SIGTERM; once ``hurry`` is set (now or later), SIGINT too, which
        ends the child's lame duck; SIGKILL after ``deadline_s``."""
        self._stopping = True
        await self._end(deadline_s, hurry=hurry)

    async def _end(
        self,
        deadline_s: float,
        *,
        hurry: asyncio.Event | None,
        sig: signal.Signals = signal.SIGTERM,
    ) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(sig)
        try:
            await asyncio.wait_for(_exit_hurried(process, hurry), deadline_s)
        except TimeoutError:
            log.warning("instance %s did not stop in %.0f s; killing it", self.name, deadline_s)
            process.kill()
            await process.wait()


async def _exit_hurried(process: asyncio.subprocess.Process, hurry: asyncio.Event | None) -> None:
    """Wait for ``process`` to exit, passing ``hurry`` on as SIGINT."""
    if hurry is None:
        await process.wait()
        return
    exited = asyncio.ensure_future(process.wait())
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait((exited, hurried), return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            await exited
    finally:
        exited.cancel()
        hurried.cancel()
