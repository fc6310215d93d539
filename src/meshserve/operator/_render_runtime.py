"""One ServingRuntime's Deployment (and HPA), as ModelMesh Serving renders it.

The Deployment ``<inferenceServiceName>-<runtime>`` has ModelMesh Serving's
selector labels (``modelmesh-service``, ``name``), so Services and policies
written for it keep matching. Its pods hold:

- ``mm``: ``meshserve instance``, joined to the mesh through etcd (the
  ``etcd_connection`` file of the ``model-serving-etcd`` Secret), offering
  this runtime (``rt:<name>`` and its auto-selected formats), with the
  storage-config and TLS Secrets mounted;
- the runtime's own containers, speaking the runtime SPI to ``mm`` over
  localhost or a Unix socket in a shared ``emptyDir``, and loading models
  from the shared ``/models``;
- for ``builtInAdapter.serverType: mlserver``, meshserve's adapter
  (``meshserve adapter mlserver``) in front of the runtime's MLServer.

Runtimes meshserve cannot run raise :class:`~meshserve.errors.UnsupportedRuntimeError`:
the adapters it does not implement (triton, ovms, torchserve), and a runtime
with neither containers nor an adapter (other than meshserve's own).

The pod template is a pure function of the runtime's spec (less
``replicas``) and the :class:`ClusterConfig`; its ``runtime-hash``
annotation hashes both, so a change to either rolls the pods and nothing
else does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from meshserve.controller import (
    BUILTIN_RUNTIME,
    PICKLE_RUNTIME,
    format_labels,
    pool_variables,
)
from meshserve.errors import InvalidResourceError, UnsupportedRuntimeError
from meshserve.operator._render_autoscaling import render_hpa
from meshserve.operator._render_config import ClusterConfig
from meshserve.operator._render_instance import instance_container, instance_volumes
from meshserve.operator._render_pod import (
    MANAGED_BY,
    MODELS_DIR,
    SOCKET_DIR,
    UID,
    container_security_context,
    parse_quantity,
    pod_security_context,
)
from meshserve.resources import ClusterServingRuntime, Container, ServingRuntime

__all__ = [
    "RUNTIME_HASH_ANNOTATION",
    "UNSUPPORTED_ADAPTERS",
    "deployment_name",
    "render_runtime",
    "runtime_hash",
    "selector_labels",
]

AnyRuntime = ServingRuntime | ClusterServingRuntime

RUNTIME_HASH_ANNOTATION = "serving.meshserve.io/runtime-hash"

UNSUPPORTED_ADAPTERS = ("triton", "ovms", "torchserve")
"""builtInAdapter server types meshserve does not implement (ModelMesh
Serving's other built-in adapters)."""

_SOCKET = f"unix:{SOCKET_DIR}/runtime.sock"
# The runtime's loopback ports inside the pod (ModelMesh Serving's mlserver
# values); only containers of the same pod reach them.
_DATA_PORT = 8001
_HTTP_PORT = 8002
_MLSERVER_MODELS_DIR = f"{MODELS_DIR}/_mlserver_models"
_MEM_BUFFER_BYTES = 128 * 1024**2  # ModelMesh Serving's memBufferBytes default
_DEFAULT_CAPACITY = 1024**3
_ADAPTER_LOAD_TIMEOUT_MS = 90_000
_ADAPTER_RESOURCES = {  # ModelMesh Serving's built-in adapter's
    "requests": {"cpu": "50m", "memory": "96Mi"},
    "limits": {"cpu": "2", "memory": "512Mi"},
}
_MAX_LABEL = 63


def deployment_name(runtime: AnyRuntime, *, config: ClusterConfig) -> str:
    """``modelmesh-serving-<runtime>``: the Deployment's (and HPA's) name."""
    return f"{config.inference_service_name}-{runtime.name}"


def selector_labels(runtime: AnyRuntime, *, config: ClusterConfig) -> dict[str, str]:
    """ModelMesh Serving's selector of one runtime's pods."""
    return {
        "modelmesh-service": config.inference_service_name,
        "name": deployment_name(runtime, config=config),
    }


def runtime_hash(runtime: AnyRuntime, *, config: ClusterConfig) -> str:
    """What the pod template depends on, hashed: the spec without
    ``replicas`` (scaling is not a rollout) and the config's digest."""
    spec = {k: v for k, v in _spec_document(runtime).items() if k != "replicas"}
    text = json.dumps({"spec": spec, "config": config.digest}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def render_runtime(
    runtime: AnyRuntime, *, config: ClusterConfig, replicas: int, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The Deployment of ``runtime``'s pods with ``replicas`` pods, and an
    HPA when its annotations ask for one (``autoscalerClass: hpa``) and it
    is not scaled to zero; the Deployment then leaves ``replicas`` to it.

    ``namespace``: where a ClusterServingRuntime's pods go (default: the
    operator's); a ServingRuntime's go to its own namespace. Raises
    UnsupportedRuntimeError for a runtime meshserve cannot run, and
    InvalidResourceError for malformed autoscaling annotations.
    """
    name = deployment_name(runtime, config=config)
    if len(name) > _MAX_LABEL:
        raise InvalidResourceError(
            f"the Deployment name {name!r} is longer than {_MAX_LABEL} characters "
            "(it is a label value); use a shorter runtime name",
            field="metadata.name",
        )
    where = namespace or config.namespace
    if isinstance(runtime, ServingRuntime):
        where = runtime.namespace
    hpa = render_hpa(runtime, name=name, namespace=where) if replicas > 0 else None
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(runtime, config=config)},
        "strategy": {
            "type": "RollingUpdate",
            # ModelMesh Serving's: new pods join before old ones drain, so
            # loaded models move over.
            "rollingUpdate": {"maxSurge": "75%", "maxUnavailable": "15%"},
        },
        "template": _pod_template(runtime, config=config),
    }
    if hpa is None:
        deployment_spec = {"replicas": replicas, **deployment_spec}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": where,
            "labels": _labels(runtime, config=config),
            "annotations": {RUNTIME_HASH_ANNOTATION: runtime_hash(runtime, config=config)},
        },
        "spec": deployment_spec,
    }
    return [deployment] if hpa is None else [deployment, hpa]


# --- the pod ---------------------------------------------------------------------


def _labels(runtime: AnyRuntime, *, config: ClusterConfig) -> dict[str, str]:
    return {
        **selector_labels(runtime, config=config),
        "app.kubernetes.io/name": "meshserve",
        "app.kubernetes.io/component": "runtime",
        "app.kubernetes.io/instance": runtime.name,
        "app.kubernetes.io/part-of": config.inference_service_name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def _pod_template(runtime: AnyRuntime, *, config: ClusterConfig) -> dict[str, Any]:
    spec = _spec_document(runtime)
    layout = _layout(runtime, config=config)
    annotations = {
        **config.runtime_pod_annotations,
        **spec.get("annotations", {}),
        RUNTIME_HASH_ANNOTATION: runtime_hash(runtime, config=config),
    }
    labels = {
        **config.runtime_pod_labels,
        **spec.get("labels", {}),
        **_labels(runtime, config=config),
    }
    mm = instance_container(
        config=config,
        runtime_name=runtime.name,
        labels=tuple(format_labels(runtime)),
        runtime_env=layout.instance_env,
        in_process=layout.in_process,
    )
    containers = [mm, *layout.containers]
    names = [c["name"] for c in containers]
    if len(set(names)) != len(names):
        raise UnsupportedRuntimeError(
            f"container names repeat in the pod: {names}", field="spec.containers"
        )
    tmp_volumes = [
        {"name": f"tmp-{index}", "emptyDir": {"sizeLimit": "256Mi"}}
        for index in range(len(containers))
    ]
    for index, container in enumerate(containers):
        container.setdefault("volumeMounts", []).append(
            {"name": f"tmp-{index}", "mountPath": "/tmp"}
        )
    pod: dict[str, Any] = {
        "serviceAccountName": config.runtime_service_account,
        # The pods call no Kubernetes API: no token in them.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        # SIGTERM drains: loaded models move to other pods first.
        "terminationGracePeriodSeconds": 90,
        "securityContext": pod_security_context(run_as_user=UID if not layout.containers else None),
        "containers": containers,
        "volumes": [
            *instance_volumes(config=config, external=not layout.in_process),
            *tmp_volumes,
            *spec.get("volumes", []),
        ],
    }
    pull_secrets = [*config.image_pull_secrets, *_names(spec.get("imagePullSecrets", []))]
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": name} for name in dict.fromkeys(pull_secrets)]
    for key in ("nodeSelector", "affinity", "tolerations"):
        if spec.get(key):
            pod[key] = spec[key]
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}


@dataclass(frozen=True, slots=True, kw_only=True)
class _Layout:
    """How the runtime runs in the pod."""

    instance_env: list[tuple[str, str]]
    """``MESHSERVE_RUNTIME__*`` variables telling ``mm`` where the runtime is."""
    containers: list[dict[str, Any]]
    """The pod's containers besides ``mm``."""
    in_process: bool = False
    """The runtime runs inside ``mm`` (meshserve's own runtimes)."""


def _layout(runtime: AnyRuntime, *, config: ClusterConfig) -> _Layout:
    spec = runtime.spec
    adapter = spec.built_in_adapter
    if adapter is not None and adapter.server_type is not None:
        server_type = adapter.server_type
        if server_type == "mlserver":
            return _mlserver(runtime, config=config)
        implemented = "only mlserver is" if server_type in UNSUPPORTED_ADAPTERS else "unknown"
        raise UnsupportedRuntimeError(
            f"builtInAdapter serverType {server_type!r} is not implemented by meshserve "
            f"({implemented}; triton, ovms and torchserve are not): run it as a custom "
            "runtime whose container serves the model-mesh SPI",
            field="spec.builtInAdapter.serverType",
        )
    if not spec.containers:
        if runtime.name == BUILTIN_RUNTIME:
            return _Layout(
                instance_env=[("MESHSERVE_RUNTIME__HOST", "inprocess")],
                containers=[],
                in_process=True,
            )
        if runtime.name == PICKLE_RUNTIME:
            env = [
                ("MESHSERVE_RUNTIME__HOST", "process"),
                ("MESHSERVE_RUNTIME__ALLOW_PICKLE", "true"),
            ]
            return _Layout(instance_env=env, containers=[], in_process=True)
        raise UnsupportedRuntimeError(
            "a runtime needs containers (serving the model-mesh SPI) or a builtInAdapter",
            field="spec.containers",
        )
    return _custom(runtime)


def _custom(runtime: AnyRuntime) -> _Layout:
    """Containers that serve the SPI themselves, at ``grpcEndpoint`` (or at
    ``$(MESHSERVE_RUNTIME_LISTEN)``, as ``meshserve up``'s pools provide)."""
    spec = runtime.spec
    address, socket_dir = _endpoint(spec.grpc_endpoint, field="spec.grpcEndpoint")
    data_port = _port(spec.grpc_data_endpoint)
    variables = _variables(capacity=_capacity(spec.containers[0], buffer=0))
    containers = [
        _runtime_container(c, extra_env=variables, socket_dir=socket_dir) for c in spec.containers
    ]
    env = [
        ("MESHSERVE_RUNTIME__HOST", "external"),
        ("MESHSERVE_RUNTIME__EXTERNAL_ADDRESS", address),
    ]
    if data_port is not None:
        env.append(("MESHSERVE_RUNTIME__EXTERNAL_DATA_ADDRESS", f"127.0.0.1:{data_port}"))
    return _Layout(instance_env=env, containers=containers)


def _mlserver(runtime: AnyRuntime, *, config: ClusterConfig) -> _Layout:
    spec = runtime.spec
    adapter = spec.built_in_adapter
    assert adapter is not None
    if not spec.containers:
        raise UnsupportedRuntimeError(
            "builtInAdapter mlserver needs the runtime's MLServer container",
            field="spec.containers",
        )
    server = spec.containers[0]
    server_env = {e.name: e.value for e in server.env if e.value is not None}
    data_port = _port(spec.grpc_data_endpoint) or int(
        server_env.get("MLSERVER_GRPC_PORT") or _DATA_PORT
    )
    http_port = int(server_env.get("MLSERVER_HTTP_PORT") or _HTTP_PORT)
    models_dir = (server_env.get("MLSERVER_MODELS_DIR") or _MLSERVER_MODELS_DIR).rstrip("/")
    if not models_dir.startswith(f"{MODELS_DIR}/"):
        raise UnsupportedRuntimeError(
            f"MLSERVER_MODELS_DIR {models_dir!r} must lie under {MODELS_DIR} "
            "(shared with the adapter)",
            field="spec.containers[0].env",
        )
    buffer = adapter.mem_buffer_bytes if adapter.mem_buffer_bytes is not None else _MEM_BUFFER_BYTES
    capacity = _capacity(server, buffer=buffer)
    timeout_ms = adapter.model_loading_timeout_millis or _ADAPTER_LOAD_TIMEOUT_MS
    adapter_container: dict[str, Any] = {
        "name": "mlserver-adapter",
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["meshserve"],
        "args": [
            "adapter",
            "mlserver",
            "--listen",
            _SOCKET,
            "--mlserver-grpc",
            f"127.0.0.1:{data_port}",
            "--mlserver-http",
            f"127.0.0.1:{http_port}",
            "--models-dir",
            models_dir,
            "--capacity-bytes",
            str(capacity),
            "--model-loading-timeout-ms",
            str(timeout_ms),
        ],
        "env": [{"name": e.name, "value": e.value or ""} for e in adapter.env],
        "resources": _ADAPTER_RESOURCES,
        "securityContext": container_security_context(run_as_user=UID),
        "volumeMounts": [
            {"name": "models-dir", "mountPath": MODELS_DIR},
            {"name": "runtime-socket", "mountPath": SOCKET_DIR},
        ],
    }
    if not adapter_container["env"]:
        del adapter_container["env"]
    # MLServer listens on loopback only: nothing outside the pod reaches it.
    bind = {"MLSERVER_HOST": "127.0.0.1"}
    containers = [
        _runtime_container(c, extra_env=bind if i == 0 else {}, socket_dir=None)
        for i, c in enumerate(spec.containers)
    ]
    env = [
        ("MESHSERVE_RUNTIME__HOST", "external"),
        ("MESHSERVE_RUNTIME__EXTERNAL_ADDRESS", _SOCKET),
        ("MESHSERVE_RUNTIME__EXTERNAL_DATA_ADDRESS", f"127.0.0.1:{data_port}"),
    ]
    return _Layout(instance_env=env, containers=[adapter_container, *containers])


def _runtime_container(
    container: Container, *, extra_env: dict[str, str], socket_dir: str | None
) -> dict[str, Any]:
    """The runtime's container as written, locked down, with the shared
    volumes; its own securityContext may only choose its (non-root) user."""
    document = container.model_dump(
        mode="json", by_alias=True, exclude_unset=True, exclude_none=True
    )
    own = document.pop("securityContext", None) or {}
    context = container_security_context(run_as_user=None)
    for key in ("runAsUser", "runAsGroup"):
        if isinstance(own.get(key), int) and own[key] != 0:
            context[key] = own[key]
    document["securityContext"] = context
    env = list(document.get("env", []))
    present = {e["name"] for e in env}
    env += [{"name": k, "value": v} for k, v in extra_env.items() if k not in present]
    if env:
        document["env"] = env
    mounts = list(document.get("volumeMounts", []))
    mounts.append({"name": "models-dir", "mountPath": MODELS_DIR})
    if socket_dir is not None:
        mounts.append({"name": "runtime-socket", "mountPath": socket_dir})
    document["volumeMounts"] = mounts
    return document


def _variables(*, capacity: int) -> dict[str, str]:
    """``meshserve up``'s pool variables, so ``$(VAR)`` in a runtime's
    command means the same in a pod (Kubernetes expands it from ``env``)."""
    return pool_variables(
        listen=_SOCKET,
        data_port=_DATA_PORT,
        http_port=_HTTP_PORT,
        runtime_dir=f"{MODELS_DIR}/_runtime",
        capacity_bytes=capacity,
    )


def _endpoint(text: str | None, *, field: str) -> tuple[str, str | None]:
    """(the instance's address for it, the socket's directory in the
    runtime's container, None for a port). Unset: the pools' socket."""
    if not text:
        return _SOCKET, SOCKET_DIR
    if text.startswith("unix:"):
        path = "/" + text.removeprefix("unix:").lstrip("/")
        directory, _, socket = path.rpartition("/")
        return f"unix:{SOCKET_DIR}/{socket}", directory or "/"
    return f"127.0.0.1:{_port(text, field=field)}", None


def _port(text: str | None, *, field: str = "spec.grpcDataEndpoint") -> int | None:
    """``port:N`` (a data endpoint is always a port); None when unset."""
    if not text:
        return None
    number = text.removeprefix("port:")
    if number == text or not number.isdigit() or not 0 < int(number) < 65536:
        raise InvalidResourceError(f"{text!r}: expected port:N", field=field)
    return int(number)


def _capacity(container: Container, *, buffer: int) -> int:
    """ModelMesh's rule: the container's memory request minus the buffer."""
    request = (container.resources.requests if container.resources else {}).get("memory")
    if request is None:
        return _DEFAULT_CAPACITY
    try:
        capacity = parse_quantity(request) - buffer
    except ValueError as exc:
        raise InvalidResourceError(str(exc), field="spec.containers[0].resources") from None
    if capacity <= 0:
        raise UnsupportedRuntimeError(
            f"the memory request {request} leaves no capacity after the {buffer}-byte buffer",
            field="spec.containers[0].resources.requests.memory",
        )
    return capacity


def _spec_document(runtime: AnyRuntime) -> dict[str, Any]:
    spec: dict[str, Any] = runtime.to_document().get("spec", {})
    return spec


def _names(entries: list[Any]) -> list[str]:
    return [str(e["name"]) if isinstance(e, dict) else str(e) for e in entries if e]
