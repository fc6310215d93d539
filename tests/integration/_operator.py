"""The operator's integration harness: kmock's Kubernetes API emulator, a
real etcd, and ``run_operator`` replicas in this process (each its own
kopf, Lease candidate and mesh member), always stopped."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import pathlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kmock
import yaml

from meshserve.operator import KubeApi, KubeConnection, OperatorOptions, run_operator
from meshserve.operator._endpoints import endpoint_of_kind, ref_of
from meshserve.operator._kube import Ref
from meshserve.operator._render import OPERATOR_API_USE
from meshserve.registry import Registry
from meshserve.settings import Settings
from meshserve.store import open_store
from tests._kube_emulator import running_emulator
from tests._processes import stop_process
from tests.integration._etcd import EtcdServer

__all__ = ["NAMESPACE", "Cluster", "assert_api_use", "running_cluster", "wait_for"]

NAMESPACE = "modelmesh-serving"
IMAGE = "meshserve:test"
T = TypeVar("T")


async def wait_for(
    check: Callable[[], Awaitable[T | None]], *, what: str, timeout_s: float = 30.0
) -> T:
    """``check``'s first truthy result, polled (generous timeout: CPU is shared)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@dataclass
class Cluster:
    """One emulated cluster with its etcd, and the operators running on it."""

    emulator: kmock.KubernetesEmulator
    api: KubeApi
    etcd: EtcdServer
    root_prefix: str
    data_dir: pathlib.Path
    replicas: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def settings(self, data_dir: pathlib.Path | None = None) -> Settings:
        return Settings.model_validate(self._settings_values(data_dir or self.data_dir))

    def _settings_values(self, data_dir: pathlib.Path) -> dict[str, Any]:
        return {
            "data_dir": str(data_dir),
            # Models made by the test, referred to by local path.
            "storage": {"local_roots": [str(self.data_dir / "models")]},
            "control": {
                "operator_interval_s": 0.2,
                "operator_lease_duration_s": 3.0,
                "operator_lease_renew_s": 0.5,
                "operator_api_timeout_s": 20.0,
                "allowed_runtime_images": ("*",),
                "reconcile_backoff_initial_s": 0.2,
                "reconcile_backoff_max_s": 1.0,
            },
        }

    def start_operator_process(self, identity: str) -> subprocess.Popen[bytes]:
        """A replica as its own ``meshserve operator`` process (kopf in one
        process per replica, as on a cluster); stopped on exit."""
        work = self.data_dir / identity
        work.mkdir(parents=True, exist_ok=True)
        config = work / "settings.yaml"
        config.write_text(yaml.safe_dump(self._settings_values(work)))
        command = [
            sys.executable, "-m", "meshserve", "operator",
            "--kube-url", str(self.emulator.url),
            "--namespace", NAMESPACE,
            "--image", IMAGE,
            "--identity", identity,
            "--config", str(config),
        ]  # fmt: skip
        with (work / "operator.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def start_operator(self, identity: str, *, clusterwide: bool = False) -> None:
        settings = self.settings()
        options = OperatorOptions(
            clusterwide=clusterwide,
            connection=KubeConnection(server=str(self.emulator.url)),
            namespace=NAMESPACE,
            identity=identity,
            image=IMAGE,
            allowed_runtime_images=settings.control.allowed_runtime_images,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(run_operator(settings, options, stop=stop), name=identity)
        self.replicas[identity] = (task, stop)

    async def stop_operator(self, identity: str) -> None:
        task, stop = self.replicas.pop(identity)
        stop.set()
        try:
            await asyncio.wait_for(task, 30.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def apply(self, document: dict[str, Any]) -> None:
        """``kubectl apply``: create, or merge-patch the spec and metadata."""
        ref = ref_of(document, namespace=NAMESPACE)
        if await self.api.create(ref, document) is None:
            await self.api.patch(ref, {k: v for k, v in document.items() if k != "status"})

    async def delete(self, kind: str, name: str, *, namespace: str = NAMESPACE) -> None:
        endpoint = endpoint_of_kind(kind)
        await self.api.delete(Ref(endpoint, namespace if endpoint.namespaced else None, name))

    async def get(
        self, kind: str, name: str, *, namespace: str = NAMESPACE
    ) -> dict[str, Any] | None:
        endpoint = endpoint_of_kind(kind)
        return await self.api.get(Ref(endpoint, namespace if endpoint.namespaced else None, name))

    @contextlib.asynccontextmanager
    async def registry(self) -> AsyncIterator[Registry]:
        """The mesh's records, read from the real etcd."""
        settings = Settings.model_validate(
            {
                "data_dir": self.data_dir / "reader",
                "store": {"url": f"etcd://{self.etcd.endpoint}", "root_prefix": self.root_prefix},
            }
        )
        async with open_store(settings) as store, Registry.open(store) as registry:
            yield registry

    def writes(self, *, agent: str | None = None) -> list[Any]:
        """The object-changing requests served (of one replica, if given)."""
        return [
            request
            for request in self.emulator
            if request.resource is not None
            and request.action in (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
            and (agent is None or request.headers.get("User-Agent", "") == agent)
        ]


def _secret(name: str, values: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


@contextlib.asynccontextmanager
async def running_cluster(
    etcd: EtcdServer, tmp_path: pathlib.Path, *, config: dict[str, Any] | None = None
) -> AsyncIterator[Cluster]:
    """The emulator with the etcd Secret and model-serving-config applied
    (a root prefix of its own in the shared etcd); operators started on it
    are stopped on exit."""
    root_prefix = f"test-{uuid.uuid4().hex[:8]}"
    connection = json.dumps({"endpoints": f"http://{etcd.endpoint}", "root_prefix": root_prefix})
    config_yaml = yaml.safe_dump(
        {"podsPerRuntime": 1, "scaleToZero": {"enabled": True, "gracePeriodSeconds": 2}}
        | (config or {})
    )
    async with (
        running_emulator() as emulator,
        KubeApi(
            KubeConnection(server=str(emulator.url)), timeout_s=20, user_agent="kubectl"
        ) as api,
    ):
        cluster = Cluster(
            emulator=emulator, api=api, etcd=etcd, root_prefix=root_prefix, data_dir=tmp_path
        )
        await cluster.apply(_secret("model-serving-etcd", {"etcd_connection": connection}))
        await cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "model-serving-config", "namespace": NAMESPACE},
                "data": {"config.yaml": config_yaml},
            }
        )
        try:
            yield cluster
        finally:
            for identity in list(cluster.replicas):
                await cluster.stop_operator(identity)
            for process in cluster.processes:
                await asyncio.to_thread(stop_process, process, grace=20.0)


_VERBS = {
    kmock.action.FETCH: "get",
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.CREATE: "create",
    kmock.action.DELETE: "delete",
}


def assert_api_use(
    emulator: kmock.KubernetesEmulator, *, agent: str, clusterwide: bool = False
) -> None:
    """Every call the operator made is granted by a row of OPERATOR_API_USE
    for its scope; namespace-scoped, every such row's verbs were used;
    cluster-scoped, every cluster-only row's (the rest is the former's)."""
    used: set[tuple[str, str, str]] = set()
    for request in emulator:
        if request.resource is None or request.resource.plural is None:
            continue  # discovery: /api, /apis/... (granted to every account)
        user_agent = request.headers.get("User-Agent", "")
        if not (user_agent == agent or user_agent.startswith("kopf/")):
            continue
        verb = _VERBS.get(request.action)
        if verb is None:
            verb = "patch" if str(request.method).upper().endswith("PATCH") else "update"
        resource = request.resource.plural
        if request.subresource:
            resource = f"{resource}/{request.subresource}"
        used.add((request.resource.group or "", resource, verb))
    rows = [use for use in OPERATOR_API_USE if clusterwide or use.where != "cluster"]
    granted = {(use.api_group, use.resource, verb) for use in rows for verb in use.verbs}
    assert used <= granted, (
        f"calls not granted by OPERATOR_API_USE: {sorted(map(str, used - granted))}"
    )
    checked = [use for use in rows if use.where == "cluster" or not clusterwide]
    unused = [
        use
        for use in checked
        if not any((use.api_group, use.resource, v) in used for v in use.verbs)
    ]
    assert not unused, (
        f"rows of OPERATOR_API_USE never used: {unused}; used: {sorted(map(str, used))}"
    )
