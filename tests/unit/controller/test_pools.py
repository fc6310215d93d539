"""Runtime pools: the planner's replica decisions and how each runtime runs."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

import pytest

from meshserve.controller import (
    MLSERVER_RUNTIME,
    PICKLE_RUNTIME,
    PoolPlanner,
    PoolSpec,
    builtin_runtimes,
    expand_vars,
    pool_spec,
)
from meshserve.resources import ClusterServingRuntime, ServingRuntime, parse_resource
from meshserve.supervisor import start_failure


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runtime(name: str, **spec: Any) -> ServingRuntime:
    document = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name},
        "spec": {
            "multiModel": True,
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True}],
            "containers": [
                {"name": "rt", "command": ["serve", "--listen", "$(MESHSERVE_RUNTIME_LISTEN)"]}
            ],
            **spec,
        },
    }
    runtime = parse_resource(document)
    assert isinstance(runtime, ServingRuntime)
    return runtime


def _shipped(name: str) -> ClusterServingRuntime:
    return next(r for r in builtin_runtimes() if r.name == name)


def _planner(clock: _Clock, **overrides: Any) -> PoolPlanner:
    options: dict[str, Any] = {
        "pods_per_runtime": 2,
        "scale_to_zero": True,
        "grace_period_s": 60.0,
        "clock": clock,
        **overrides,
    }
    return PoolPlanner(**options)


def test_a_runtime_nothing_uses_has_no_instances_and_one_in_use_has_pods_per_runtime() -> None:
    clock = _Clock()
    planner = _planner(clock)
    runtimes = [_runtime("a"), _runtime("b")]
    plan = planner.plan(runtimes, used={"a"})
    assert plan.pools["a"].replicas == 2
    assert plan.pools["b"].replicas == 0


def test_replicas_in_the_runtime_win_over_pods_per_runtime() -> None:
    plan = _planner(_Clock()).plan([_runtime("a", replicas=3)], used={"a"})
    assert plan.pools["a"].replicas == 3


def test_an_unused_runtime_keeps_its_instances_for_the_grace_period() -> None:
    clock = _Clock()
    planner = _planner(clock)
    runtimes = [_runtime("a")]
    planner.plan(runtimes, used={"a"})
    clock.now += 59.0
    assert planner.plan(runtimes, used=set()).pools["a"].replicas == 2
    clock.now += 1.0
    assert planner.plan(runtimes, used=set()).pools["a"].replicas == 0
    # Used again: back up at once.
    assert planner.plan(runtimes, used={"a"}).pools["a"].replicas == 2


def test_without_scale_to_zero_every_runtime_keeps_its_instances() -> None:
    plan = _planner(_Clock(), scale_to_zero=False).plan([_runtime("a")], used=set())
    assert plan.pools["a"].replicas == 2


def test_disabled_skipped_and_single_model_runtimes_get_no_pool() -> None:
    planner = _planner(_Clock(), skip=("skipped",))
    runtimes = [
        _runtime("off", disabled=True),
        _runtime("skipped"),
        _runtime("single", multiModel=False),
    ]
    plan = planner.plan(runtimes, used={"off", "skipped", "single"})
    assert plan.pools == {}
    assert plan.refused == {}


def test_a_command_runtime_runs_its_container_command_with_its_env_and_format_labels() -> None:
    runtime = _runtime(
        "cmd",
        containers=[
            {
                "name": "rt",
                "command": ["serve"],
                "args": ["--listen", "$(MESHSERVE_RUNTIME_LISTEN)"],
                "env": [{"name": "MODE", "value": "fast"}, {"name": "FROM_SECRET"}],
            }
        ],
    )
    spec = pool_spec(runtime, replicas=1)
    assert spec == PoolSpec(
        name="cmd",
        replicas=1,
        host="external",
        command=("serve", "--listen", "$(MESHSERVE_RUNTIME_LISTEN)"),
        env=(("MODE", "fast"),),
        labels=("mt:sklearn", "mt:sklearn:1"),
    )


@pytest.mark.parametrize(
    ("containers", "wanted"),
    [
        ([{"name": "rt", "image": "example.test/runtime:1"}], "0 with a command"),
        (
            [{"name": "a", "command": ["a"]}, {"name": "b", "command": ["b"]}],
            "2 container(s)",
        ),
    ],
)
def test_a_runtime_that_cannot_run_here_is_refused_with_the_reason(
    containers: list[dict[str, Any]], wanted: str
) -> None:
    plan = _planner(_Clock()).plan([_runtime("img", containers=containers)], used={"img"})
    assert plan.pools == {}
    assert wanted in plan.refused["img"]
    assert "MESHSERVE_RUNTIME_LISTEN" in plan.refused["img"]


def test_an_adapter_other_than_mlserver_is_refused() -> None:
    runtime = _runtime("triton", builtInAdapter={"serverType": "triton"})
    refusal = pool_spec(runtime, replicas=1)
    assert isinstance(refusal, str)
    assert "'triton'" in refusal


def test_the_pickle_runtime_runs_the_builtin_runtime_out_of_process_with_pickle() -> None:
    spec = pool_spec(_shipped(PICKLE_RUNTIME), replicas=2)
    assert isinstance(spec, PoolSpec)
    assert (spec.host, spec.allow_pickle, spec.command) == ("process", True, ())
    # Never auto-selected: no format label, only rt:meshserve-pickle.
    assert spec.labels == ()


def test_the_mlserver_runtime_runs_mlserver_behind_the_adapter() -> None:
    spec = pool_spec(_shipped(MLSERVER_RUNTIME), replicas=1, mlserver_executable="/opt/ml/mlserver")
    assert isinstance(spec, PoolSpec)
    assert spec.host == "external"
    assert spec.command[:5] == (sys.executable, "-m", "meshserve", "adapter", "mlserver")
    separator = spec.command.index("--")
    assert spec.command[separator + 1 :][:2] == ("/opt/ml/mlserver", "start")
    assert "$(MESHSERVE_RUNTIME_LISTEN)" in spec.command
    assert spec.data_address == "127.0.0.1:$(MESHSERVE_DATA_PORT)"


def test_a_user_mlserver_runtime_keeps_its_own_mlserver_command() -> None:
    runtime = _runtime(
        "my-mlserver",
        builtInAdapter={"serverType": "mlserver"},
        containers=[{"name": "mlserver", "command": ["/venv/bin/mlserver", "start", "/models"]}],
    )
    spec = pool_spec(runtime, replicas=1)
    assert isinstance(spec, PoolSpec)
    assert spec.command[-3:] == ("/venv/bin/mlserver", "start", "/models")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x-$(A)-$(B)", "x-1-two"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$$(A)", "$(A)"),
        ("cost: $5", "cost: $5"),
        ("$(A", "$(A"),
    ],
)
def test_var_expansion_follows_kubernetes(text: str, expected: str) -> None:
    assert expand_vars(text, {"A": "1", "B": "two"}) == expected


def test_a_child_that_failed_to_start_is_reported_with_its_last_error(
    tmp_path: pathlib.Path,
) -> None:
    log = tmp_path / "instance.log"
    assert start_failure(log) is None  # no log at all
    log.write_text("2026-01-01 INFO starting\nError: UnavailableError: first\n" + "x" * 20_000)
    assert start_failure(log) is None  # only the end of a long log is read
    log.write_text("INFO starting\nError: UnavailableError: first\nError: Precondition: why\n")
    assert start_failure(log) == "Precondition: why"
