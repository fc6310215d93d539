"""A rendered pod run as local processes, as a kubelet would run it, but
on this machine: each container's own command, args and environment;
each volume a temp directory (a Secret's or ConfigMap's keys written as
files, an emptyDir empty) and every path under a mount point moved there;
the pod IP a loopback address of its own (127.0.0.x, so that its fixed
ports never meet another test's); ``0.0.0.0`` binds that IP only."""

from __future__ import annotations

import base64
import contextlib
import os
import pathlib
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from tests._processes import stop_process

__all__ = ["LocalPod", "pod_ip", "prepare_pod"]

Lookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
"""(kind, name) -> the object in the pod's namespace, or None."""


def pod_ip() -> str:
    return f"127.0.0.{random.randint(2, 250)}"


class LocalPod:
    """The prepared pod: start it with :meth:`running`."""

    def __init__(self, *, name: str, ip: str, work: pathlib.Path) -> None:
        self.name = name
        self.ip = ip
        self.work = work
        self.mounts: dict[str, pathlib.Path] = {}  # mount path -> local dir
        self.containers: list[tuple[str, list[str], dict[str, str]]] = []

    def local_path(self, text: str) -> str:
        """``text`` with a path under a mount point moved to its local dir."""
        for mount, local in sorted(self.mounts.items(), key=lambda item: -len(item[0])):
            if text == mount or text.startswith(mount.rstrip("/") + "/"):
                return str(local) + text[len(mount.rstrip("/")) :]
        return text

    @contextlib.contextmanager
    def running(self) -> Iterator[list[subprocess.Popen[bytes]]]:
        processes = []
        try:
            for name, argv, env in self.containers:
                with (self.work / f"{name}.log").open("wb") as log:
                    processes.append(
                        subprocess.Popen(
                            argv,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            cwd=self.work,
                        )
                    )
            yield processes
        finally:
            for process in processes:
                stop_process(process, grace=20.0)


async def prepare_pod(
    deployment: dict[str, Any],
    *,
    lookup: Lookup,
    work: pathlib.Path,
    host_mounts: dict[str, pathlib.Path] | None = None,
) -> LocalPod:
    """The Deployment's pod template, made ready to run here;
    ``host_mounts``: paths the node provides (a PVC's mount)."""
    template = deployment["spec"]["template"]
    name = f"{deployment['metadata']['name']}-0"
    pod = LocalPod(name=name, ip=pod_ip(), work=work)
    pod.mounts.update(host_mounts or {})
    volumes = {volume["name"]: volume for volume in template["spec"].get("volumes", [])}
    local: dict[str, pathlib.Path] = {}
    for volume_name, volume in volumes.items():
        directory = work / "volumes" / volume_name
        directory.mkdir(parents=True, exist_ok=True)
        local[volume_name] = directory
        if "secret" in volume:
            found = await lookup("Secret", volume["secret"]["secretName"])
            data = {
                key: base64.b64decode(value)
                for key, value in ((found or {}).get("data") or {}).items()
            }
            _write_items(directory, data, volume["secret"].get("items"))
        elif "configMap" in volume:
            found = await lookup("ConfigMap", volume["configMap"]["name"])
            data = {
                key: str(value).encode() for key, value in ((found or {}).get("data") or {}).items()
            }
            _write_items(directory, data, volume["configMap"].get("items"))
    for container in template["spec"]["containers"]:
        for mount in container.get("volumeMounts", []):
            pod.mounts[mount["mountPath"]] = local[mount["name"]]
    for container in template["spec"]["containers"]:
        given = [*container.get("command", []), *container.get("args", [])]
        argv = [pod.local_path(a) for a in given]
        if argv and argv[0] == "meshserve":
            # This machine's meshserve, whose path is never the pod's: it may
            # lie under a mount point (a clone in /tmp, an emptyDir at /tmp).
            argv = [sys.executable, "-m", "meshserve", *argv[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")}
        for variable in container.get("env", []):
            value = await _env_value(variable, pod=pod, lookup=lookup)
            if value is not None:
                env[variable["name"]] = value
        pod.containers.append((container["name"], argv, env))
    return pod


def _write_items(directory: pathlib.Path, data: dict[str, bytes], items: Any) -> None:
    paths = {item["key"]: item["path"] for item in items} if items else {k: k for k in data}
    for key, path in paths.items():
        if key in data:
            (directory / path).write_bytes(data[key])


async def _env_value(variable: dict[str, Any], *, pod: LocalPod, lookup: Lookup) -> str | None:
    if "value" in variable:
        value = str(variable["value"])
        return pod.ip if value == "0.0.0.0" else pod.local_path(value)
    source = variable.get("valueFrom") or {}
    field = (source.get("fieldRef") or {}).get("fieldPath")
    if field == "metadata.name":
        return pod.name
    if field == "status.podIP":
        return pod.ip
    secret_ref = source.get("secretKeyRef")
    if secret_ref is not None:
        found = await lookup("Secret", secret_ref["name"])
        encoded = ((found or {}).get("data") or {}).get(secret_ref["key"])
        if encoded is None:
            assert secret_ref.get("optional"), f"missing Secret {secret_ref}"
            return None
        return base64.b64decode(encoded).decode()
    raise AssertionError(f"environment variable not handled here: {variable}")
