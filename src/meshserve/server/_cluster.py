"""``meshserve up --instances N``: N instance processes on one machine.

Each instance is a ``meshserve instance`` child with its own data dir,
runtime, internal port and metrics port; all of them share the public gRPC
and REST ports (SO_REUSEPORT), so clients see one address. They coordinate
through etcd: a private one started here unless ``store.url`` names one. A
child that exits on its own is restarted (with backoff); on stop every child
gets SIGTERM (it drains), then SIGKILL after its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import yaml

from meshserve.errors import UnavailableError
from meshserve.server._local_etcd import local_etcd
from meshserve.server._ports import address, free_port
from meshserve.settings import Settings

__all__ = ["ClusterEndpoints", "run_cluster"]

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 120.0
_RESTART_BACKOFF_S = (0.5, 30.0)


@dataclass(frozen=True, slots=True)
class ClusterEndpoints:
    grpc: str
    rest: str | None
    store: str
    instances: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "grpc": self.grpc,
            "rest": self.rest,
            "pid": os.getpid(),
            "store": self.store,
            "instances": self.instances,
        }


class _Child:
    """One supervised instance process."""

    def __init__(self, *, index: int, settings: Settings, register: pathlib.Path | None) -> None:
        self.index = index
        self.data_dir = settings.data_dir
        self._settings = settings
        self._register = register
        self.process: asyncio.subprocess.Process | None = None
        self.endpoints: dict[str, Any] | None = None
        self._stopping = False

    def _write_config(self) -> pathlib.Path:
        values = self._settings.model_dump(mode="json")
        values["store"].pop("etcd_password", None)  # passed in the environment
        path = self.data_dir / "instance.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        endpoints = self.data_dir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        command = [
            sys.executable,
            "-m",
            "meshserve",
            "instance",
            "--config",
            str(self._write_config()),
        ]
        if self._register is not None:
            command += ["--register", str(self._register)]
        env = dict(os.environ)
        password = self._settings.store.etcd_password.get_secret_value()
        if password:
            env["MESHSERVE_STORE__ETCD_PASSWORD"] = password
        with (self.data_dir / "instance.log").open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *command, stdout=out, stderr=out, env=env, start_new_session=True
            )
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT_S
        while not endpoints.exists():
            if self.process.returncode is not None:
                raise UnavailableError(
                    f"instance {self.index} exited with code {self.process.returncode} at "
                    f"start; see {self.data_dir / 'instance.log'}"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise UnavailableError(f"instance {self.index} did not start in time")
            await asyncio.sleep(0.1)
        self.endpoints = json.loads(endpoints.read_text())["instances"][0]

    async def supervise(self, on_change: Callable[[], object]) -> None:
        """Restart the child whenever it exits on its own."""
        delay = _RESTART_BACKOFF_S[0]
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            log.warning(
                "instance %d exited with code %s; restarting in %.1f s", self.index, code, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RESTART_BACKOFF_S[1])
            try:
                await self.start()
            except UnavailableError as exc:
                log.error("instance %d did not restart: %s", self.index, exc)
                continue
            on_change()

    async def stop(self, deadline_s: float) -> None:
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), deadline_s)
        except TimeoutError:
            log.warning("instance %d did not stop in %.0f s; killing it", self.index, deadline_s)
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def _store_url(settings: Settings) -> AsyncIterator[str]:
    if settings.store.url.startswith("etcd://"):
        yield settings.store.url
        return
    async with local_etcd(settings.data_dir) as url:
        yield url


def _child_settings(
    settings: Settings, *, index: int, store: str, grpc: int, rest: int
) -> Settings:
    metrics_port = settings.metrics.port + index if settings.metrics.port else 0
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir / "instances" / str(index),
            "server": settings.server.model_copy(
                update={"grpc_port": grpc, "rest_port": rest, "share_ports": True}
            ),
            "store": settings.store.model_copy(update={"url": store}),
            "mesh": settings.mesh.model_copy(
                update={
                    "instance_id": settings.mesh.instance_id
                    and f"{settings.mesh.instance_id}-{index}"
                }
            ),
            "metrics": settings.metrics.model_copy(update={"port": metrics_port}),
        }
    )


async def run_cluster(
    settings: Settings,
    *,
    instances: int,
    register: pathlib.Path | None,
    stop: asyncio.Event,
    on_ready: Callable[[ClusterEndpoints], None] | None = None,
) -> None:
    """Run ``instances`` instance processes until ``stop`` is set."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    host = settings.server.host
    grpc = settings.server.grpc_port or free_port(host)
    rest = settings.server.rest_port or free_port(host)
    async with _store_url(settings) as store:
        children = [
            _Child(
                index=i,
                settings=_child_settings(settings, index=i, store=store, grpc=grpc, rest=rest),
                register=register if i == 0 else None,
            )
            for i in range(instances)
        ]
        supervisors: list[asyncio.Task[None]] = []

        def write_endpoints() -> ClusterEndpoints:
            endpoints = ClusterEndpoints(
                grpc=address(host, grpc),
                rest=f"http://{address(host, rest)}" if settings.server.rest_enabled else None,
                store=store,
                instances=[c.endpoints for c in children if c.endpoints is not None],
            )
            (settings.data_dir / "endpoints.json").write_text(
                json.dumps(endpoints.to_json(), indent=2) + "\n"
            )
            return endpoints

        deadline = settings.mesh.drain_deadline_s + settings.server.grace_period_s + 5
        try:
            for child in children:
                await child.start()
            endpoints = write_endpoints()
            supervisors = [
                asyncio.create_task(c.supervise(write_endpoints), name=f"supervise-{c.index}")
                for c in children
            ]
            if on_ready is not None:
                on_ready(endpoints)
            await stop.wait()
        finally:
            await asyncio.gather(*(c.stop(deadline) for c in children))
            for task in supervisors:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
