"""What the cluster's ``model-serving-config`` and the operator's own
settings say about the Kubernetes objects the operator renders.

ModelMesh Serving keeps its user config in the ``config.yaml`` key of the
``model-serving-config`` ConfigMap (keys case-insensitive). The instance
settings it carries (ports, message size, metrics, scale to zero ...) are
read by the one mapping in ``_serving_config.py``; this module adds what is
about objects: images, Secret names, the service account, resources.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshserve._serving_config import read_serving_config
from meshserve.settings import ControlSettings

__all__ = [
    "DEFAULT_RUNTIME_SERVICE_ACCOUNT",
    "ClusterConfig",
    "InstanceEnv",
]

DEFAULT_RUNTIME_SERVICE_ACCOUNT = "meshserve-runtime"
"""The runtime pods' account when ``serviceAccountName`` is empty: it has no
roles, and its token is never mounted."""

InstanceEnv = tuple[tuple[str, str], ...]
"""``MESHSERVE_*`` variables (name, value) every instance container gets."""

# The setting groups of model-serving-config that an instance acts on; the
# others (control: pool sizing, scale to zero) are the operator's business.
_INSTANCE_GROUPS = ("server", "metrics", "store")
# Keys handled here (they name Secrets, not files next to a config file).
_OBJECT_KEYS = {"tls", "storagesecretname"}

_DEFAULT_MM_RESOURCES: dict[str, dict[str, str]] = {
    # ModelMesh Serving's modelMeshResources default, for an instance whose
    # runtime runs in other containers of the pod.
    "requests": {"cpu": "300m", "memory": "448Mi"},
    "limits": {"cpu": "3", "memory": "448Mi"},
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Everything the rendered objects depend on besides the runtime itself.

    Build it with :meth:`from_config_yaml`; tests build it directly. Equal
    configs render equal objects (no clock, no randomness), so the operator
    can compare what it rendered with what is there.
    """

    namespace: str
    """Where the operator runs (and, namespace-scoped, everything else)."""

    image: str
    """The meshserve image: instance and built-in adapter containers."""

    pods_per_runtime: int = 2
    service_account_name: str = ""
    """Runtime pods' account; empty: :data:`DEFAULT_RUNTIME_SERVICE_ACCOUNT`."""

    tls_secret_name: str = ""
    """``tls.secretName``: ``tls.crt``, ``tls.key`` and ``ca.crt`` (mesh links are
    mutual TLS, so the CA is required). Empty: no TLS."""

    tls_client_auth: str = "none"
    storage_secret_name: str = "storage-config"
    etcd_secret_name: str = "model-serving-etcd"
    """The Secret whose ``etcd_connection`` key is ModelMesh Serving's JSON."""

    inference_service_name: str = "modelmesh-serving"
    grpc_port: int = 8033
    rest_port: int = 8008
    rest_enabled: bool = True
    metrics_port: int = 2112
    metrics_enabled: bool = True
    internal_port: int = 8080
    data_port: int = 11881
    """The instances' data port (forwarded inference in frames, guarded like
    the internal port): the first of ModelMesh's ports held back for
    internal use (11881-11899), so no runtime container can take it."""
    scale_to_zero_enabled: bool = True
    scale_to_zero_grace_period_s: float = 60.0
    allowed_runtime_images: tuple[str, ...] = ()
    """``control.allowedRuntimeImages``: the controller's runtime catalog
    refuses runtimes whose images match none (see :meth:`control_settings`)."""

    instance_env: InstanceEnv = ()
    """Instance settings from model-serving-config, as ``MESHSERVE_*`` variables."""

    model_mesh_resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in _DEFAULT_MM_RESOURCES.items()}
    )
    runtime_pod_labels: Mapping[str, str] = field(default_factory=dict)
    runtime_pod_annotations: Mapping[str, str] = field(default_factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """model-serving-config keys not acted on (for the operator's log);
    they change nothing rendered, so they are not compared or hashed."""

    def __hash__(self) -> int:
        # The mappings make the generated hash fail; the digest covers them.
        return hash(self.digest)

    @property
    def runtime_service_account(self) -> str:
        return self.service_account_name or DEFAULT_RUNTIME_SERVICE_ACCOUNT

    @property
    def digest(self) -> str:
        """Short hash of everything here: part of each pod template's hash,
        so a config change rolls the runtime pods (settings are read once
        at start) and nothing else does."""
        text = json.dumps(_jsonable(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def control_settings(self, base: ControlSettings | None = None) -> ControlSettings:
        """The controller's pool and catalog settings this config implies
        (the same PoolPlanner decisions as ``meshserve up``)."""
        return (base or ControlSettings()).model_copy(
            update={
                "pods_per_runtime": self.pods_per_runtime,
                "scale_to_zero_enabled": self.scale_to_zero_enabled,
                "scale_to_zero_grace_period_s": self.scale_to_zero_grace_period_s,
                "allowed_runtime_images": self.allowed_runtime_images,
            }
        )

    @classmethod
    def from_config_yaml(
        cls,
        document: Mapping[str, Any] | None,
        *,
        namespace: str,
        image: str,
        allowed_runtime_images: tuple[str, ...] = (),
    ) -> ClusterConfig:
        """The config a ``model-serving-config`` ``config.yaml`` document
        describes (None or empty: every default). ``namespace``, ``image``
        and ``allowed_runtime_images`` are the operator's own settings.
        Raises ValueError for a value that cannot be used."""
        doc = {str(k).lower(): v for k, v in (document or {}).items()}
        group = _Group(doc)
        tls = group.sub("tls")
        mapped = read_serving_config(
            {k: v for k, v in (document or {}).items() if str(k).lower() not in _OBJECT_KEYS},
            # Unused: the keys naming Secrets are handled here, not there.
            base_dir=pathlib.Path("/"),
        )
        values = mapped.values
        server = values.get("server", {})
        metrics = values.get("metrics", {})
        control = values.get("control", {})
        defaults = cls(namespace=namespace, image=image)
        return cls(
            namespace=namespace,
            # modelMeshImage names ModelMesh's image, not meshserve's: ignored.
            image=image,
            pods_per_runtime=int(control.get("pods_per_runtime", defaults.pods_per_runtime)),
            service_account_name=str(group.get("serviceaccountname") or ""),
            tls_secret_name=str(tls.get("secretname") or ""),
            tls_client_auth=str(tls.get("clientauth") or "none").lower(),
            storage_secret_name=str(group.get("storagesecretname") or "storage-config"),
            etcd_secret_name=str(group.get("etcdsecretname") or "model-serving-etcd"),
            inference_service_name=str(
                values.get("store", {}).get("service_name", defaults.inference_service_name)
            ),
            grpc_port=int(server.get("grpc_port", defaults.grpc_port)),
            rest_port=int(server.get("rest_port", defaults.rest_port)),
            rest_enabled=bool(server.get("rest_enabled", True)),
            metrics_port=int(metrics.get("port", defaults.metrics_port)),
            metrics_enabled=bool(metrics.get("enabled", True)),
            scale_to_zero_enabled=bool(control.get("scale_to_zero_enabled", True)),
            scale_to_zero_grace_period_s=float(
                control.get("scale_to_zero_grace_period_s", defaults.scale_to_zero_grace_period_s)
            ),
            allowed_runtime_images=tuple(allowed_runtime_images),
            instance_env=_env(values),
            warnings=tuple(mapped.warnings()),
            model_mesh_resources=_resources(group.get("modelmeshresources"))
            or defaults.model_mesh_resources,
            runtime_pod_labels=_strings(group.get("runtimepodlabels"), "runtimePodLabels"),
            runtime_pod_annotations=_strings(
                group.get("runtimepodannotations"), "runtimePodAnnotations"
            ),
            image_pull_secrets=_pull_secrets(group.get("imagepullsecrets")),
        )


class _Group:
    """Case-insensitive access to one level of the document."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = doc

    def get(self, key: str, default: Any = None) -> Any:
        return self._doc.get(key, default)

    def sub(self, key: str) -> _Group:
        value = self._doc.get(key)
        if value is None:
            return _Group({})
        if not isinstance(value, Mapping):
            raise ValueError(f"model-serving-config {key}: expected a mapping")
        return _Group({str(k).lower(): v for k, v in value.items()})


def _env(values: Mapping[str, Any]) -> InstanceEnv:
    """The instance groups' values as MESHSERVE_<GROUP>__<FIELD> variables."""
    out: list[tuple[str, str]] = []
    for group in _INSTANCE_GROUPS:
        for key, value in sorted(values.get(group, {}).items()):
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value).lower()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                text = str(value)
            out.append((f"MESHSERVE_{group.upper()}__{key.upper()}", text))
    return tuple(out)


def _resources(value: Any) -> dict[str, dict[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("model-serving-config modelMeshResources: expected requests/limits")
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        entries = value.get(kind) or {}
        if not isinstance(entries, Mapping):
            raise ValueError(f"model-serving-config modelMeshResources.{kind}: expected a mapping")
        out[kind] = {str(k): str(v) for k, v in entries.items()}
    return out


def _strings(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"model-serving-config {key}: expected a mapping of strings")
    return {str(k): str(v) for k, v in value.items()}


def _pull_secrets(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("model-serving-config imagePullSecrets: expected a list")
    names = [entry.get("name") if isinstance(entry, Mapping) else entry for entry in value]
    return tuple(str(name) for name in names if name)


def _jsonable(config: ClusterConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in config.__dataclass_fields__.items():
        if not spec.compare:
            continue
        value = getattr(config, name)
        out[name] = dict(value) if isinstance(value, Mapping) else value
    return out
