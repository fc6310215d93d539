"""bench/_targets.py: a target is measured once its start-up work is done."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench"

# Busy for about a second (like a library preload after "ready"), then idle.
_BUSY_THEN_IDLE = """
import time
end = time.process_time() + 1.0
while time.process_time() < end:
    pass
time.sleep(30)
"""


def test_wait_quiet_waits_for_start_up_work_to_end() -> None:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import _targets

    proc = subprocess.Popen([sys.executable, "-c", _BUSY_THEN_IDLE])
    try:
        running = _targets.Running(url="127.0.0.1:1", pid=proc.pid)
        started = time.monotonic()
        assert _targets.wait_quiet(running, timeout_s=20.0, window_s=0.2)
        # It took the busy second (CPU time: longer on a shared machine).
        assert running.cpu_seconds() >= 0.9
        assert time.monotonic() - started >= 0.5
        # And a process that never settles is reported, not waited on forever.
        assert not _targets.wait_quiet(
            _targets.Running(url="x", pid=proc.pid), timeout_s=0.5, window_s=0.2, max_cores=-1.0
        )
    finally:
        proc.kill()
        proc.wait()
