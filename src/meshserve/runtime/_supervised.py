"""A command kept running: started, restarted with backoff whenever it
exits, stopped with SIGTERM then SIGKILL, and killed when we die.

The command runs in a session (so a process group) of its own, so stopping
it also stops whatever it started. It gets SIGTERM when this process dies
(``PR_SET_PDEATHSIG``), set by a tiny Python launcher that then execs the
command: the setting survives exec, and unlike ``preexec_fn`` the launcher
runs no Python code between fork and exec in a process that has threads.
The launcher also becomes the command's user, if one is given: asyncio's
``user``/``group``/``process_group`` arguments are not taken by every
event loop (uvloop refuses them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from meshserve.errors import UnavailableError
from meshserve.security import runtime_environment

__all__ = ["SupervisedCommand", "with_parent"]

log = logging.getLogger(__name__)

# argv: PARENT_PID UID GID COMMAND [ARG...] (UID and GID empty: stay who we
# are). The user changes first: a change of credentials clears the death
# signal. Exits at once if the parent is already gone (it died before prctl
# took effect).
_LAUNCHER = """\
import ctypes, os, signal, sys
import warnings  # os.execvp imports it: after a change of user it may not be readable
if sys.argv[2] and (os.getuid(), os.getgid()) != (int(sys.argv[2]), int(sys.argv[3])):
    os.setgroups([])
    os.setgid(int(sys.argv[3]))
    os.setuid(int(sys.argv[2]))
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
try:
    os.execvp(sys.argv[4], sys.argv[4:])
except OSError as exc:
    sys.exit(f"cannot run {sys.argv[4]}: {exc}")
"""


def with_parent(argv: Sequence[str], *, user: tuple[int, int] | None = None) -> list[str]:
    """``argv`` behind the launcher: the command gets SIGTERM when this
    process dies, and runs as ``user`` (uid, gid; default: ours)."""
    uid, gid = (str(user[0]), str(user[1])) if user is not None else ("", "")
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid()), uid, gid, *argv]


class SupervisedCommand:
    """Runs ``argv`` (``argv[0]`` looked up on PATH) with ``env`` as this
    process's environment, less what a runtime must not see
    (:func:`meshserve.security.runtime_environment`), plus those entries,
    until :meth:`stop`.

    Parameters (keyword-only): ``name`` for logs; ``restart_backoff_initial_s``
    and ``restart_backoff_max_s``, the delay before a restart, doubling per
    exit that came soon after a start; ``stop_grace_s``, SIGTERM to SIGKILL;
    ``log_path``, a file the command's output is appended to (default: ours);
    ``user``, the (uid, gid) it runs as (default: ours).
    """

    def __init__(
        self,
        *,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        restart_backoff_initial_s: float = 0.5,
        restart_backoff_max_s: float = 30.0,
        stop_grace_s: float = 5.0,
        log_path: pathlib.Path | None = None,
        user: tuple[int, int] | None = None,
    ) -> None:
        if not argv:
            raise ValueError(f"{name}: empty command")
        self.name = name
        self._argv = tuple(argv)
        self._env = dict(env or {})
        self._backoff = (restart_backoff_initial_s, restart_backoff_max_s)
        self._stop_grace_s = stop_grace_s
        self._log_path = log_path
        self._user = user
        self._process: asyncio.subprocess.Process | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.starts = 0
        """How many times the command was started (1 + restarts)."""
        self.last_exit: int | None = None
        """The exit code of its last run that ended, if one did."""

    @property
    def pid(self) -> int | None:
        """The command's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Start the command (UnavailableError if it cannot be executed) and
        keep it running."""
        await self._spawn()
        self._keeper = asyncio.create_task(self._keep_running(), name=f"supervise {self.name}")

    async def stop(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._terminate()

    async def _spawn(self) -> None:
        with contextlib.ExitStack() as files:
            output: dict[str, Any] = {}
            if self._log_path is not None:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                log_file = files.enter_context(self._log_path.open("ab"))
                output = {"stdout": log_file, "stderr": log_file}
            try:
                program, *args = with_parent(self._argv, user=self._user)
                self._process = await asyncio.create_subprocess_exec(
                    program,
                    *args,
                    env={**runtime_environment(os.environ), **self._env},
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                    **output,
                )
            except OSError as exc:
                raise UnavailableError(
                    f"cannot start {self.name} ({self._argv[0]}): {exc}"
                ) from None
        self.starts += 1
        log.info("started %s: pid %d, %s", self.name, self._process.pid, " ".join(self._argv))

    async def _keep_running(self) -> None:
        initial, most = self._backoff
        delay = initial
        loop = asyncio.get_running_loop()
        while True:
            process = self._process
            if process is not None:
                started = loop.time()
                code = await process.wait()
                self.last_exit = code
                log.error("%s (pid %d) exited with code %s", self.name, process.pid, code)
                await self._kill_group(process)
                # One that ran a while before dying starts over from the
                # short delay; one that keeps dying backs off.
                if loop.time() - started > most:
                    delay = initial
            log.info("restarting %s in %.1f s", self.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)
            try:
                await self._spawn()
            except UnavailableError as exc:
                log.error("%s", exc)
                self._process = None

    async def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            self._signal_group(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self._stop_grace_s)
            except TimeoutError:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, process.pid)
        await self._kill_group(process)

    async def _kill_group(self, process: asyncio.subprocess.Process) -> None:
        """Whatever the command started dies with it."""
        self._signal_group(process, signal.SIGKILL)
        if process.returncode is None:
            await process.wait()

    @staticmethod
    def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
        # The group's id is the leader's pid; it stays valid while any member
        # lives, even after the leader was reaped.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
