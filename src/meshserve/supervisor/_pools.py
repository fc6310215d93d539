"""Runtime pools on one machine: the instance processes ``meshserve up`` runs
for each ServingRuntime in use.

The controller decides how many instances each runtime needs
(:class:`~meshserve.controller.PoolPlanner`) and calls :meth:`LocalPools.sync`
on every pass; this module starts and stops ``meshserve instance`` children
to match, each joined to the same store, offering only its runtime
(``rt:<name>`` and the runtime's auto-selected formats), with no public
port of its own: clients keep using ``up``'s address, and the mesh forwards.
Children are supervised (restarted with backoff), log to
``<data-dir>/pools/<runtime>/<n>/instance.log``, and die with ``up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import replace

from meshserve.controller import PoolSpec, expand_vars, pool_variables
from meshserve.server import own_instance_id
from meshserve.settings import Settings
from meshserve.store import store_url
from meshserve.supervisor._children import InstanceChild, stop_deadline_s
from meshserve.supervisor._ports import free_port

__all__ = ["LocalPools"]

log = logging.getLogger(__name__)


class _Member:
    """One instance of a pool, with the private directory its runtime's
    socket lives in (short: socket paths are limited to ~107 bytes)."""

    def __init__(self, child: InstanceChild, socket_dir: pathlib.Path) -> None:
        self.child = child
        self.socket_dir = socket_dir
        self.task: asyncio.Task[None] | None = None


class LocalPools:
    """The pools of one ``meshserve up``; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store_url = store_url(settings)
        self._owner = own_instance_id(settings)
        self._specs: dict[str, PoolSpec] = {}
        self._members: dict[str, list[_Member]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    async def sync(self, pools: Mapping[str, PoolSpec]) -> None:
        for name in [n for n in self._members if n not in pools]:
            self._resize(name, 0)
            del self._members[name]
            self._specs.pop(name, None)
        for name, spec in pools.items():
            old = self._specs.get(name)
            if old is not None and replace(old, replicas=spec.replicas) != spec:
                log.info("runtime %s changed: restarting its pool", name)
                self._resize(name, 0)
            self._specs[name] = spec
            self._resize(name, spec.replicas)

    def problem(self, name: str) -> str | None:
        for member in self._members.get(name, []):
            if member.child.last_error is not None:
                return f"instance {member.child.name} {member.child.last_error}"
        return None

    async def close(self) -> None:
        for name in list(self._members):
            self._resize(name, 0)
        self._members.clear()
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    def _resize(self, name: str, replicas: int) -> None:
        members = self._members.setdefault(name, [])
        while len(members) > replicas:
            member = members.pop()
            log.info("pool %s: stopping instance %s", name, member.child.name)
            task = asyncio.create_task(self._stop(member), name=f"pool-stop:{name}")
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        while len(members) < replicas:
            index = len(members)
            member = self._member(self._specs[name], index)
            log.info("pool %s: starting instance %s", name, member.child.name)
            member.task = asyncio.create_task(self._run(member), name=f"pool:{name}:{index}")
            members.append(member)

    def _member(self, spec: PoolSpec, index: int) -> _Member:
        settings = self._settings
        safe_name = spec.name.replace("/", "_")
        data_dir = (settings.data_dir / "pools" / safe_name / str(index)).resolve()
        socket_dir = pathlib.Path(tempfile.mkdtemp(prefix="meshserve-pool-"))
        runtime_dir = data_dir / "runtime"
        runtime_dir.mkdir(parents=True, exist_ok=True)
        listen = f"unix:{socket_dir / 'runtime.sock'}"
        values = pool_variables(
            listen=listen,
            data_port=free_port("127.0.0.1"),
            http_port=free_port("127.0.0.1"),
            runtime_dir=str(runtime_dir),
            capacity_bytes=settings.runtime.capacity_bytes,
        )
        runtime_updates: dict[str, object] = {"host": spec.host, "allow_pickle": spec.allow_pickle}
        if spec.host == "external":
            runtime_updates |= {
                "external_address": listen,
                "external_data_address": expand_vars(spec.data_address, values),
                "command": tuple(expand_vars(arg, values) for arg in spec.command),
                "command_env": {k: expand_vars(v, values) for k, v in spec.env},
            }
        child_settings = settings.model_copy(
            update={
                "data_dir": data_dir,
                # No client knows its public port, and its record tells the
                # other instances it is leaving at once: no lame duck to wait.
                "server": settings.server.model_copy(
                    update={
                        "grpc_port": 0,
                        "rest_enabled": False,
                        "share_ports": False,
                        "lame_duck_s": 0.0,
                    }
                ),
                "store": settings.store.model_copy(update={"url": self._store_url}),
                "runtime": settings.runtime.model_copy(update=runtime_updates),
                "mesh": settings.mesh.model_copy(
                    update={
                        "instance_id": f"{self._owner}-{safe_name}-{index}",
                        "runtime_name": spec.name,
                        "labels": spec.labels,
                    }
                ),
                "metrics": settings.metrics.model_copy(update={"port": 0}),
                "control": settings.control.model_copy(update={"controller_enabled": False}),
            }
        )
        child = InstanceChild(name=f"{spec.name}-{index}", settings=child_settings)
        return _Member(child, socket_dir)

    async def _run(self, member: _Member) -> None:
        try:
            await member.child.start()
        except Exception as exc:  # the supervisor below keeps trying, with backoff
            log.error("pool instance %s did not start: %s", member.child.name, exc)
        if member.child.process is None:
            return
        await member.child.supervise(lambda: None)

    async def _stop(self, member: _Member) -> None:
        # The task first (it may be starting the process), then the process.
        if member.task is not None:
            member.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await member.task
        try:
            await member.child.stop(stop_deadline_s(member.child.settings))
        finally:
            shutil.rmtree(member.socket_dir, ignore_errors=True)
