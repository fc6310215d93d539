"""The container image, checked offline: the Dockerfile runs as a numeric
non-root user, starts an instance without a shell and exposes the ports
the rendered pods use. The Kubernetes install is checked in
test_kubernetes_install.py."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from meshserve.operator._render import ClusterConfig
from meshserve.settings import Settings
from tests._examples import ROOT

UID = 10001

# --- Dockerfile ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    argument: str


def _instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            found.append(Instruction(keyword.upper(), argument.strip()))
    return found


def _final_stage() -> list[Instruction]:
    instructions = _instructions((ROOT / "Dockerfile").read_text())
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def _is_root(user: str) -> bool:
    name, _, group = user.partition(":")
    return name in ("root", "0") or group in ("root", "0")


def test_the_image_runs_as_a_numeric_non_root_user_to_the_end() -> None:
    users = [ins.argument for ins in _final_stage() if ins.keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    # Kubernetes' runAsNonRoot can only check a numeric USER.
    assert re.fullmatch(r"\d+:\d+", users[-1]), users[-1]
    assert users[-1] == f"{UID}:{UID}"
    first_non_root = next(i for i, user in enumerate(users) if not _is_root(user))
    assert not any(_is_root(user) for user in users[first_non_root:]), users


def test_the_image_is_multi_stage_on_python_3_11_slim() -> None:
    instructions = _instructions((ROOT / "Dockerfile").read_text())
    (arg,) = [ins.argument for ins in instructions if ins.keyword == "ARG"]
    assert arg == "PYTHON_IMAGE=python:3.11-slim"
    bases = [ins.argument.split()[0] for ins in instructions if ins.keyword == "FROM"]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    # operator: the same image runs `meshserve operator` (kopf).
    assert any("[formats,storage,etcd,operator]" in ins.argument for ins in instructions)
    # lightgbm links to the system's libgomp.so.1, which python:3.11-slim lacks.
    assert any("libgomp1" in ins.argument for ins in _final_stage() if ins.keyword == "RUN")


def test_the_image_starts_an_instance_without_a_shell_on_the_default_ports() -> None:
    stage = _final_stage()
    (entrypoint,) = [ins.argument for ins in stage if ins.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["meshserve", "instance"]  # exec form: no /bin/sh
    assert not [ins for ins in stage if ins.keyword in ("CMD", "HEALTHCHECK")]
    (expose,) = [ins.argument for ins in stage if ins.keyword == "EXPOSE"]
    defaults = Settings()
    assert {int(port) for port in expose.split()} == {
        defaults.server.grpc_port,
        defaults.server.rest_port,
        defaults.metrics.port,
        ClusterConfig(namespace="ns", image="m:1").internal_port,
    }


def test_the_build_context_leaves_everything_but_the_sources_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/"}
