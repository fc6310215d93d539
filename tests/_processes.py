"""Start real processes for tests and always clean them up."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO

GRACE_S = 5.0

NO_LAME_DUCK = {"MESHSERVE_SERVER__LAME_DUCK_S": "0"}
"""The environment a test's servers get unless the test says otherwise:
tests stop them with SIGTERM and ``GRACE_S``, shorter than the default lame
duck (``server.lameDuckS``); the lame duck has tests of its own
(tests/integration/test_faults_sigterm.py)."""


def stop_process(proc: subprocess.Popen[bytes], grace: float = GRACE_S) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(grace)


class LineTimeout(AssertionError):
    """No stdout line matched in time; ``lines`` holds what was read."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lines = lines


def read_until(
    proc: subprocess.Popen[bytes], pattern: str | re.Pattern[str], timeout: float = 60.0
) -> list[str]:
    """Every stdout line up to and including the first that matches
    ``pattern``; raises LineTimeout (holding the lines read) otherwise."""
    assert proc.stdout is not None
    regex = re.compile(pattern)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    buffer = b""
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.2):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                lines.append(raw.decode(errors="replace"))
                if regex.search(lines[-1]):
                    return lines
    finally:
        selector.close()
    raise LineTimeout(
        f"no line matching {regex.pattern!r} within {timeout} s (exit code {proc.poll()}); "
        "output so far:\n" + "\n".join(lines[-40:]),
        lines,
    )


def wait_for_line(
    proc: subprocess.Popen[bytes], pattern: str, timeout: float = 60.0
) -> re.Match[str]:
    """Read the process's stdout until a line matches ``pattern``."""
    match = re.search(pattern, read_until(proc, pattern, timeout)[-1])
    assert match is not None
    return match


@contextlib.contextmanager
def meshserve(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stderr: IO[bytes] | None = None,
    new_session: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m meshserve ARGS``; stdout is piped, stderr passes
    through (or goes to ``stderr``). ``new_session``: in a process group of
    its own, so that a test can press Ctrl-C on it (``os.killpg``) alone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshserve", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **NO_LAME_DUCK, **(env or {})},
        start_new_session=new_session,
    )
    try:
        yield proc
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
