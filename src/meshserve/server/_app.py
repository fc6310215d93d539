"""One instance process: store, registry, runtime, instance and front ends.

``serve_instance`` wires the layers together for ``meshserve up`` (and, with
the mesh, ``meshserve instance``) and runs until asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pathlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import yaml

from meshserve.errors import MeshServeError
from meshserve.mesh import Instance
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from meshserve.protocol.service import v2_handler
from meshserve.registry import Registry
from meshserve.runtime import InProcessRuntime, ProcessRuntime, Runtime
from meshserve.server._grpc_management import AdminService, ModelMeshService
from meshserve.server._rest import RestServer, create_rest_app
from meshserve.settings import Settings
from meshserve.store import PrefixedStore, SqliteStore, Store

__all__ = ["Endpoints", "ModelEntry", "load_register_file", "serve_instance"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model listed in a ``--register`` file."""

    name: str
    type: str
    path: str
    key: str = ""
    load_now: bool = False


def load_register_file(path: pathlib.Path) -> list[ModelEntry]:
    """Read ``models: [{name, type, path[, key, loadNow]}]``; relative paths
    are taken from the file's directory."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ValueError(f"{path}: expected a mapping with a 'models' list")
    entries = []
    for index, item in enumerate(data.get("models", [])):
        if not isinstance(item, dict) or not {"name", "type", "path"} <= item.keys():
            raise ValueError(f"{path}: models[{index}] needs name, type and path")
        model_path = pathlib.Path(str(item["path"]))
        if not model_path.is_absolute():
            model_path = (path.parent / model_path).resolve()
        entries.append(
            ModelEntry(
                name=str(item["name"]),
                type=str(item["type"]),
                path=str(model_path),
                key=str(item.get("key", "")),
                load_now=bool(item.get("loadNow", item.get("load_now", False))),
            )
        )
    return entries


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where an instance answers; written to ``<data-dir>/endpoints.json``."""

    instance_id: str
    grpc: str
    rest: str | None
    pid: int = field(default_factory=os.getpid)

    def to_json(self) -> dict[str, Any]:
        entry = {"id": self.instance_id, "grpc": self.grpc, "rest": self.rest}
        return {"grpc": self.grpc, "rest": self.rest, "pid": self.pid, "instances": [entry]}


def _make_runtime(settings: Settings, on_restart: Callable[[], Any]) -> Runtime:
    if settings.runtime.host == "process":
        return ProcessRuntime(settings=settings.runtime, on_restart=on_restart)
    return InProcessRuntime(settings=settings.runtime)


@contextlib.asynccontextmanager
async def _open_store(settings: Settings) -> AsyncIterator[Store]:
    url = settings.store.url
    if url and not url.startswith("sqlite:///"):
        raise ValueError(f"store url {url!r}: only sqlite:///PATH is supported so far")
    path = pathlib.Path(url.removeprefix("sqlite:///")) if url else settings.data_dir / "store.db"
    async with SqliteStore.open(path) as store:
        root = settings.store.root_prefix.strip("/")
        prefix = f"{root}/" if root else ""
        yield PrefixedStore(store, f"{prefix}mm/{settings.store.service_name}/")


async def _start_grpc(settings: Settings, instance: Instance) -> tuple[grpc.aio.Server, int]:
    limit = settings.server.grpc_max_message_size_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # One process per port until instances share one on purpose:
            # without this a second `up` would silently split the traffic.
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((v2_handler(instance),))
    mm_grpc.add_ModelMeshServicer_to_server(ModelMeshService(instance), server)
    admin_grpc.add_AdminServicer_to_server(AdminService(instance), server)
    host = settings.server.host
    target = (
        f"[{host}]:{settings.server.grpc_port}"
        if ":" in host
        else f"{host}:{settings.server.grpc_port}"
    )
    port = server.add_insecure_port(target)
    if port == 0:
        raise OSError(f"cannot bind gRPC to {target}")
    await server.start()
    return server, port


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_instance(
    settings: Settings,
    *,
    register: list[ModelEntry] | None = None,
    stop: asyncio.Event,
    on_ready: Callable[[Endpoints], None] | None = None,
) -> None:
    """Run one instance until ``stop`` is set."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    instance_id = f"{socket.gethostname()}-{os.getpid()}"
    holder: dict[str, Instance] = {}

    async def on_restart() -> None:
        if "instance" in holder:
            await holder["instance"].on_runtime_restart()

    async with (
        _open_store(settings) as store,
        Registry.open(store) as registry,
        _make_runtime(settings, on_restart) as runtime,
        Instance.open(
            instance_id=instance_id, registry=registry, runtime=runtime, settings=settings.cache
        ) as instance,
    ):
        holder["instance"] = instance
        grpc_server, grpc_port = await _start_grpc(settings, instance)
        rest: RestServer | None = None
        try:
            rest_url = None
            if settings.server.rest_enabled:
                rest = RestServer(
                    app=create_rest_app(
                        backend=instance,
                        max_message_bytes=settings.server.grpc_max_message_size_bytes,
                    ),
                    host=settings.server.host,
                    port=settings.server.rest_port,
                )
                await rest.start()
                rest_url = f"http://{_address(settings.server.host, rest.port)}"
            for entry in register or ():
                try:
                    await instance.register_model(
                        entry.name,
                        type=entry.type,
                        path=entry.path,
                        key=entry.key,
                        load_now=entry.load_now,
                    )
                except MeshServeError as exc:
                    log.error("cannot register %s from the register file: %s", entry.name, exc)
            endpoints = Endpoints(
                instance_id=instance_id,
                grpc=_address(settings.server.host, grpc_port),
                rest=rest_url,
            )
            (settings.data_dir / "endpoints.json").write_text(
                json.dumps(endpoints.to_json(), indent=2) + "\n"
            )
            instance.mark_ready()
            if on_ready is not None:
                on_ready(endpoints)
            await stop.wait()
            log.info("stopping")
        finally:
            await grpc_server.stop(settings.server.grace_period_s)
            if rest is not None:
                await rest.stop()
