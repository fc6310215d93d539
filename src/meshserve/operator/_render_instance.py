"""The ``mm`` container of every runtime pod: ``meshserve instance``.

Its settings are ``MESHSERVE_*`` variables (no config file: in cluster
scope the ConfigMap lives in the operator's namespace, which pods elsewhere
cannot mount). The Secrets it reads are mounted into it alone: the runtime's
containers see neither storage credentials nor etcd's nor the TLS key.
"""

from __future__ import annotations

import json
from typing import Any

from meshserve.operator._render_config import ClusterConfig
from meshserve.operator._render_pod import (
    DATA_DIR,
    ETCD_CONNECTION_FILE,
    ETCD_DIR,
    MODELS_DIR,
    SOCKET_DIR,
    STORAGE_CONFIG_DIR,
    TLS_DIR,
    UID,
    container_security_context,
)

__all__ = ["INSTANCE_CONTAINER", "instance_container", "instance_volumes"]

INSTANCE_CONTAINER = "mm"
"""ModelMesh's container name (reserved: no runtime container may take it)."""

# An instance that runs the runtime itself holds the models in its memory.
_IN_PROCESS_CAPACITY = 1024**3
_IN_PROCESS_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "2Gi"},
    "limits": {"memory": "2Gi"},
}
_MODELS_SIZE = "4Gi"
_MAX_MODEL_BYTES = 2 * 1024**3  # within the models volume, beside another model
_SECRET_MODE = 0o440  # group-readable: fsGroup is meshserve's group


def instance_container(
    *,
    config: ClusterConfig,
    runtime_name: str,
    labels: tuple[str, ...],
    runtime_env: list[tuple[str, str]],
    in_process: bool,
) -> dict[str, Any]:
    """``meshserve instance`` for one runtime's pods."""
    env: list[dict[str, Any]] = [
        _field("MESHSERVE_MESH__INSTANCE_ID", "metadata.name"),
        # Published in the store: where other instances forward requests.
        _field("MESHSERVE_MESH__INTERNAL_HOST", "status.podIP"),
        _value("MESHSERVE_MESH__INTERNAL_PORT", config.internal_port),
        _value("MESHSERVE_MESH__DATA_PORT", config.data_port),
        _value("MESHSERVE_MESH__RUNTIME_NAME", runtime_name),
        _value("MESHSERVE_MESH__LABELS", json.dumps(list(labels))),
        # The NetworkPolicy decides who reaches these ports.
        _value("MESHSERVE_SERVER__HOST", "0.0.0.0"),
        _value("MESHSERVE_METRICS__HOST", "0.0.0.0"),
        _value("MESHSERVE_DATA_DIR", DATA_DIR),
        _value("MESHSERVE_STORAGE__MODELS_DIR", f"{MODELS_DIR}/meshserve"),
        # Pods come and go: a cache kept across restarts of one pod is not worth its disk.
        _value("MESHSERVE_STORAGE__CACHE_MAX_BYTES", 0),
        _value("MESHSERVE_STORAGE__MAX_MODEL_BYTES", _MAX_MODEL_BYTES),
        _value("MESHSERVE_STORAGE__CONFIG_PATH", STORAGE_CONFIG_DIR),
        _value("MESHSERVE_STORAGE__SECRET_NAME", config.storage_secret_name),
        _value("MESHSERVE_STORAGE__PVC_ROOT", "/pvc_mounts"),
        _value("MESHSERVE_STORE__ETCD_CONNECTION_FILE", ETCD_CONNECTION_FILE),
        # The operator reconciles; the instances only serve.
        _value("MESHSERVE_CONTROL__CONTROLLER_ENABLED", "false"),
        # The key sealing Secret values in the store (docs/security.md).
        {
            "name": "MESHSERVE_SECURITY__SEALING_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": "meshserve-sealing-key", "key": "key", "optional": True}
            },
        },
        *(_value(name, value) for name, value in config.instance_env),
        *(_value(name, value) for name, value in runtime_env),
    ]
    if in_process:
        env.append(_value("MESHSERVE_RUNTIME__CAPACITY_BYTES", _IN_PROCESS_CAPACITY))
    if config.tls_secret_name:
        env += [
            _value("MESHSERVE_TLS__CERT_FILE", f"{TLS_DIR}/tls.crt"),
            _value("MESHSERVE_TLS__KEY_FILE", f"{TLS_DIR}/tls.key"),
            # Mesh links are mutual TLS: the CA is needed whatever clientAuth says.
            _value("MESHSERVE_TLS__CA_FILE", f"{TLS_DIR}/ca.crt"),
            _value("MESHSERVE_TLS__CLIENT_AUTH", config.tls_client_auth),
        ]
    ports = [
        _port("grpc", config.grpc_port),
        _port("internal", config.internal_port),
        _port("data", config.data_port),
    ]
    if config.rest_enabled:
        ports.append(_port("http", config.rest_port))
    if config.metrics_enabled:
        ports.append(_port("metrics", config.metrics_port))
    mounts = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "models-dir", "mountPath": MODELS_DIR},
        {"name": "storage-config", "mountPath": STORAGE_CONFIG_DIR, "readOnly": True},
        {"name": "etcd-config", "mountPath": ETCD_DIR, "readOnly": True},
    ]
    if not in_process:
        mounts.append({"name": "runtime-socket", "mountPath": SOCKET_DIR})
    if config.tls_secret_name:
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    resources = _IN_PROCESS_RESOURCES if in_process else config.model_mesh_resources
    return {
        "name": INSTANCE_CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["meshserve", "instance"],
        "ports": ports,
        "env": env,
        "resources": {kind: dict(values) for kind, values in resources.items()},
        **_probes(config),
        "securityContext": container_security_context(run_as_user=UID),
        "volumeMounts": mounts,
    }


def instance_volumes(*, config: ClusterConfig, external: bool) -> list[dict[str, Any]]:
    """The volumes :func:`instance_container` mounts (tmp volumes aside)."""
    volumes: list[dict[str, Any]] = [
        # Caches, rebuilt from the object stores after a restart.
        {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "models-dir", "emptyDir": {"sizeLimit": _MODELS_SIZE}},
        _secret("storage-config", config.storage_secret_name, optional=True),
        _secret("etcd-config", config.etcd_secret_name, optional=False, key="etcd_connection"),
    ]
    if external:
        volumes.append(
            {"name": "runtime-socket", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
        )
    if config.tls_secret_name:
        volumes.append(_secret("tls", config.tls_secret_name, optional=False))
    return volumes


def _probes(config: ClusterConfig) -> dict[str, Any]:
    """Health over REST when it is on, else a TCP connect to gRPC. Under TLS
    the kubelet speaks HTTPS without checking the certificate; when clients
    must present one it has none, so a TCP connect it is."""
    if config.rest_enabled and config.tls_client_auth != "require":
        scheme = "HTTPS" if config.tls_secret_name else "HTTP"

        def check(path: str) -> dict[str, Any]:
            return {"httpGet": {"path": path, "port": "http", "scheme": scheme}}

        live, ready = check("/v2/health/live"), check("/v2/health/ready")
    else:
        live = ready = {"tcpSocket": {"port": "grpc"}}
    return {
        "startupProbe": {**live, "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {**live, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "readinessProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2},
    }


def _secret(name: str, secret: str, *, optional: bool, key: str | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {
        "secretName": secret,
        "defaultMode": _SECRET_MODE,
        "optional": optional,
    }
    if key is not None:
        source["items"] = [{"key": key, "path": key}]
    return {"name": name, "secret": source}


def _value(name: str, value: object) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}
