"""A clean stop of `meshserve up` leaves clean logs: no warning that reads
like a failure, no claim of work that was not done."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
from dataclasses import dataclass

import pytest

from tests._processes import meshserve, read_until
from tests.integration._mesh import make_model
from tests.integration._resources import infer
from tests.integration._up import Registration, run_up

pytestmark = pytest.mark.timeout(240)

_PROBLEM = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ", re.MULTILINE)


def _problems(log: str) -> list[str]:
    """The log's records at WARNING or above."""
    return [line for line in log.splitlines() if _PROBLEM.match(line)]


@dataclass(frozen=True)
class _Mesh:
    """What ``infer`` needs of a running ``up --instances``."""

    data_dir: pathlib.Path
    grpc: str


def test_a_single_instance_stops_without_claiming_moves(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    models = [Registration(name=f"m{i}", type="sklearn", path=model) for i in range(2)]
    with run_up(tmp_path / "data", register=models) as up:
        for registration in models:
            infer(up, registration.name)
        log = up.log
    text = log.read_text()
    assert "Finished server process" in text, text[-3000:]
    # Recently used models, and nowhere to move them.
    assert "drained: 2 model(s) not moved: no other instance to take them" in text, text[-3000:]
    assert "moved," not in text, text[-3000:]
    assert "expired while kept alive" not in text
    assert not _problems(text), _problems(text)


def test_ctrl_c_stops_the_instances_before_their_etcd(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    register = tmp_path / "models.yaml"
    register.write_text(f"models:\n  - {{name: m, type: sklearn, path: {model}}}\n")
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0", "--register", str(register)]
    with (
        (tmp_path / "up.log").open("wb") as up_log,
        meshserve(args, stderr=up_log, new_session=True) as proc,
    ):
        read_until(proc, r"meshserve up: ready", 120)
        endpoints = json.loads((data / "endpoints.json").read_text())
        infer(_Mesh(data_dir=data, grpc=endpoints["grpc"]), "m")
        # A terminal's Ctrl-C: SIGINT to the whole foreground group, etcd
        # included unless it keeps to a group of its own.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(90) in (0, 130)
    logs = sorted(data.glob("instances/*/instance.log"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert "Finished server process" in text, (log, text[-3000:])
        assert not _problems(text), (log, _problems(text))
    assert not _problems((tmp_path / "up.log").read_text())
