"""How long the `meshserve` command takes to start: the median wall time of
each client command, run ``--repeat`` times in turn, next to a bare
``python -c pass`` (the interpreter's own floor on this machine).

    python bench/cli_startup.py [--repeat N] [--json]

Each command is run the way a shell would (``python -m meshserve ...``, a
fresh process) and does no work past start-up: ``--help`` of the command,
and `models list` against an address where nothing listens with a short
--timeout is not used, so that only importing and parsing are measured. On
a loaded machine the figures swing: compare medians of one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["COMMANDS", "measure"]

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "meshserve --help": ["--help"],
    "meshserve get --help": ["get", "--help"],
    "meshserve models list --help": ["models", "list", "--help"],
    "meshserve vmodels list --help": ["vmodels", "list", "--help"],
    "meshserve infer --help": ["infer", "--help"],
}


def _argv(args: list[str]) -> list[str]:
    return args if args[0] == sys.executable else [sys.executable, "-m", "meshserve", *args]


def measure(repeat: int) -> dict[str, float]:
    """Median seconds per command; the commands take turns, so that a burst
    of load on the machine spreads over all of them."""
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeat):
        for name, args in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(_argv(args), check=True, stdout=subprocess.DEVNULL, timeout=60)
            times[name].append(time.perf_counter() - start)
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
