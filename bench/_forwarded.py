"""The ``forwarded`` target of bench/overhead.py: what one hop costs.

``meshserve up --instances 2`` serves the model from one instance (the
holder); the client of the ``forwarded`` point calls the other instance's own
gRPC address, so every request is forwarded once, over the internal port, to
the holder. The same run also measures the holder called directly
(``forwarded-local``): the ratio of the two is the hop's cost, on the same
processes, the same machine load and the same mesh (etcd, leases, two
instances) minus the hop.

Copies are pinned: scale-up and load spreading are set far out of reach, so
the instance called never gets a copy of its own during the run (every
request really hops).
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
import urllib.request
from collections.abc import Iterator

import _mesh_api
import _mesh_cluster
import _targets
import grpc

__all__ = ["LOCAL_VIEW", "start_forwarded"]

LOCAL_VIEW = "forwarded-local"
"""The name the holder's own point is reported under."""

_NO_NEW_COPIES = {
    # Far beyond any rate a bench reaches: no second copy on the instance
    # the client calls, so every request is forwarded.
    "MESHSERVE_MESH__SCALEUP_RPM_THRESHOLD": str(10**9),
    "MESHSERVE_MESH__REBALANCE_MIN_RPM": str(10**9),
}
_INPUT_NAME = "input-0"


@contextlib.contextmanager
def start_forwarded(ctx: _targets.StartContext) -> Iterator[_targets.Running]:
    """Yields the non-holder's address, with the holder's under LOCAL_VIEW."""
    reason = _targets.up_available()
    if reason is not None:
        raise _targets.Unavailable(reason)
    data_dir = ctx.work_dir / "data"
    data_dir.mkdir()
    register = ctx.work_dir / "register.yaml"
    register.write_text(
        json.dumps(
            {"models": [{"name": ctx.model.name, "type": "sklearn", "path": str(ctx.model.skops)}]}
        )
    )
    argv, _, rest_port = _targets.up_command(data_dir)
    argv += ["--instances", "2", "--register", str(register)]
    env = {**ctx.batching_env(), **_NO_NEW_COPIES}
    with _targets._process(argv, name="up-2", ctx=ctx, env=env) as proc:
        rest = f"http://{_targets.HOST}:{rest_port}"
        _targets._wait_http_ok(f"{rest}/v2/health/ready", proc=proc, timeout_s=ctx.start_timeout_s)
        endpoints = _wait_instances(data_dir, proc=proc, timeout_s=ctx.start_timeout_s)
        by_id = {i.id: i.grpc for i in endpoints.instances}
        # The first request loads the model where placement says.
        _first_request(next(iter(by_id.values())), ctx=ctx)
        holders = _holders(rest, ctx.model.name, timeout_s=ctx.start_timeout_s, proc=proc)
        if len(holders) != 1:
            raise _targets.StartFailed(f"expected one copy of the model, found {holders}")
        holder = holders[0]
        others = [grpc_address for id_, grpc_address in by_id.items() if id_ != holder]
        if holder not in by_id or len(others) != 1:
            raise _targets.StartFailed(f"holder {holder} is not one of two instances {by_id}")
        yield _targets.Running(
            url=others[0],
            pid=proc.popen.pid,
            notes=(f"model on {holder}; the client calls the other instance",),
            views=((LOCAL_VIEW, by_id[holder]),),
        )


def _wait_instances(
    data_dir: pathlib.Path, *, proc: _targets._Process, timeout_s: float
) -> _mesh_cluster.MeshEndpoints:
    path = data_dir / "endpoints.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        proc.check_alive()
        with contextlib.suppress(OSError, ValueError):
            endpoints = _mesh_cluster.parse_endpoints(json.loads(path.read_text()))
            if len(endpoints.instances) == 2:
                return endpoints
        time.sleep(0.1)
    raise _targets.StartFailed("endpoints.json did not list two instances in time")


def _first_request(address: str, *, ctx: _targets.StartContext) -> None:
    body = _mesh_api.infer_body(model_id=ctx.model.name, input_name=_INPUT_NAME, row=ctx.row)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(_mesh_api.MODEL_INFER)
        reply = call(body, timeout=ctx.start_timeout_s)
    label = _mesh_api.decode_label(reply)
    if label != ctx.label:
        raise _targets.StartFailed(f"predicted {label}, expected {ctx.label}")


def _holders(rest: str, model: str, *, timeout_s: float, proc: _targets._Process) -> list[str]:
    """The instances with a loaded copy of ``model`` (the status page's view)."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc.check_alive()
        with urllib.request.urlopen(f"{rest}/status.json", timeout=5.0) as reply:
            snapshot = json.loads(reply.read())
        for row in snapshot.get("models", ()):
            if row.get("model_id") == model and row.get("copies"):
                return list(row["copies"])
        if time.monotonic() > deadline:
            raise _targets.StartFailed(f"no loaded copy of {model} in /status.json")
        time.sleep(0.1)
