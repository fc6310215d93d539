"""The pieces every rendered pod shares: where things are mounted, the
locked-down security contexts, labels, and Kubernetes quantities."""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "DATA_DIR",
    "ETCD_CONNECTION_FILE",
    "ETCD_DIR",
    "MANAGED_BY",
    "MODELS_DIR",
    "SOCKET_DIR",
    "STORAGE_CONFIG_DIR",
    "TLS_DIR",
    "UID",
    "container_security_context",
    "parse_quantity",
    "pod_security_context",
]

UID = 10001
"""The meshserve image's user (Dockerfile: USER 10001:10001)."""

MANAGED_BY = "meshserve-operator"

DATA_DIR = "/var/lib/meshserve"
MODELS_DIR = "/models"
"""Shared by every container of a runtime pod, as ModelMesh Serving's
``models-dir``: the instance pulls here, the runtime loads from here."""
SOCKET_DIR = "/var/run/meshserve"
"""Shared by the instance and the runtime: the SPI's Unix socket."""
STORAGE_CONFIG_DIR = "/etc/meshserve/storage-config"
TLS_DIR = "/etc/meshserve/tls"
ETCD_DIR = "/etc/meshserve/etcd"
ETCD_CONNECTION_FILE = f"{ETCD_DIR}/etcd_connection"


def pod_security_context(*, run_as_user: int | None) -> dict[str, Any]:
    """Non-root, seccomp RuntimeDefault, mounted Secrets group-readable by
    meshserve's group (fsGroup; their files are mode 0440). ``run_as_user``
    only when every container is meshserve's: a runtime image runs as its
    own numeric user (runAsNonRoot refuses one that would be root)."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context |= {"runAsUser": run_as_user, "runAsGroup": run_as_user}
    return context


def container_security_context(*, run_as_user: int | None) -> dict[str, Any]:
    """Every container's: nothing a runtime's own securityContext may loosen."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_as_user is not None:
        context |= {"runAsUser": run_as_user, "runAsGroup": run_as_user}
    return context


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$")
_FACTORS = {
    None: 1,
    "m": 0.001,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}


def parse_quantity(value: str | int | float) -> int:
    """A Kubernetes quantity (``1Gi``, ``512M``, ``1e9`` is not supported)
    in whole units. Raises ValueError for anything else."""
    if isinstance(value, (int, float)):
        return int(value)
    match = _QUANTITY.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return int(float(match.group(1)) * _FACTORS[match.group(2)])
