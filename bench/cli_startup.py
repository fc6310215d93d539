"""How long the `meshserve` command takes to start: the median wall time of
each client command, run ``--repeat`` times in turn, next to a bare
``python -c pass`` (the interpreter's own floor on this machine).

    python bench/cli_startup.py [--repeat N] [--json]

Each command is run the way a shell would (``python -m meshserve ...``, a
fresh process), twice: its ``--help`` (importing and parsing only), and the
whole command against 127.0.0.1:1, where nothing listens (the call fails at
once with exit 3: start-up, the channel, the request built, no server
time). On a loaded machine the figures swing: compare medians of one run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = ["COMMANDS", "measure"]

_NOBODY = "127.0.0.1:1"
_REQUEST = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
# {input} is the path of a request file written for the run.
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "meshserve --help": ["--help"],
    "meshserve get --help": ["get", "--help"],
    "meshserve models list --help": ["models", "list", "--help"],
    "meshserve vmodels list --help": ["vmodels", "list", "--help"],
    "meshserve infer --help": ["infer", "--help"],
    "meshserve get isvc (no server)": ["get", "isvc", "--grpc", _NOBODY],
    "meshserve models list (no server)": ["models", "list", "--endpoint", _NOBODY],
    "meshserve infer (no server)": ["infer", "m", "--input", "{input}", "--endpoint", _NOBODY],
}


def _argv(args: list[str], *, request: pathlib.Path) -> list[str]:
    args = [str(request) if arg == "{input}" else arg for arg in args]
    return args if args[0] == sys.executable else [sys.executable, "-m", "meshserve", *args]


def measure(repeat: int) -> dict[str, float]:
    """Median seconds per command; the commands take turns, so that a burst
    of load on the machine spreads over all of them."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as work:
        request = pathlib.Path(work) / "request.json"
        request.write_text(json.dumps(_REQUEST))
        for _ in range(repeat):
            for name, args in COMMANDS.items():
                start = time.perf_counter()
                done = subprocess.run(
                    _argv(args, request=request), capture_output=True, timeout=60, cwd=work
                )
                times[name].append(time.perf_counter() - start)
                if done.returncode not in (0, 3):  # 3: cannot connect, as meant
                    raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr!r}")
    return {name: round(statistics.median(runs), 3) for name, runs in times.items()}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    medians = measure(args.repeat)
    for name, seconds in medians.items():
        print(f"{seconds * 1000:7.0f} ms  {name}")
    if args.json:
        print(json.dumps({"median_s": medians, "repeat": args.repeat}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
