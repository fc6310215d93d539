"""ServingRuntime and ClusterServingRuntime (``serving.kserve.io/v1alpha1``),
with the subset of ``corev1.Container`` a runtime needs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from meshserve.resources._schema import FieldWarning, ResourceBase, Schema, WarningKind

__all__ = [
    "BuiltInAdapter",
    "ClusterServingRuntime",
    "Container",
    "ContainerPort",
    "EnvVar",
    "ServingRuntime",
    "ServingRuntimeSpec",
    "StorageHelper",
    "SupportedModelFormat",
]

# --- containers (the subset of corev1.Container runtimes need) ----------------


class EnvVar(Schema):
    """An environment variable of a runtime container or adapter."""

    # A Kubernetes Secret or ConfigMap reference cannot be resolved standalone.
    ignored = frozenset({"valueFrom"})

    name: str
    value: str | None = None


class ContainerPort(Schema):
    """A port a runtime container declares."""

    ignored = frozenset({"hostPort", "hostIP"})

    container_port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: str | None = None


class ResourceRequirements(Schema):
    """Requests and limits; the memory request sizes the runtime's capacity."""

    ignored = frozenset({"claims"})

    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)


class VolumeMount(Schema):
    """Kept only so reserved volume names can be refused."""

    name: str
    mount_path: str | None = None


class Container(Schema):
    """A runtime container. meshserve starts runtimes as local processes, so
    pod-level details (images pulled, mounts, probes) have no effect."""

    ignored = frozenset(
        {
            "volumeMounts",
            "imagePullPolicy",
            "securityContext",
            "livenessProbe",
            "startupProbe",
            "envFrom",
            "volumeDevices",
            "resizePolicy",
            "restartPolicy",
            "stdin",
            "stdinOnce",
            "tty",
            "terminationMessagePath",
            "terminationMessagePolicy",
        }
    )

    name: str
    image: str | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    resources: ResourceRequirements | None = None
    working_dir: str | None = None
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    # ModelMesh manages both; modelled so that validation can refuse them.
    readiness_probe: dict[str, Any] | None = None
    lifecycle: dict[str, Any] | None = None


# --- ServingRuntime / ClusterServingRuntime -----------------------------------


class SupportedModelFormat(Schema):
    """A model format (and optionally version) a runtime can load."""

    name: str
    version: str | None = None
    auto_select: bool | None = None
    priority: int | None = Field(default=None, ge=1)


class BuiltInAdapter(Schema):
    """ModelMesh Serving's adapter in front of a built-in server type."""

    server_type: str | None = None
    runtime_management_port: int | None = None
    mem_buffer_bytes: int | None = Field(default=None, ge=0)
    model_loading_timeout_millis: int | None = Field(default=None, ge=0)
    env: list[EnvVar] = Field(default_factory=list)


class StorageHelper(Schema):
    """Whether the model puller fetches artifacts for this runtime."""

    disabled: bool = False


class Volume(Schema):
    """Kept only so reserved volume names can be refused."""

    name: str


class ServingRuntimeSpec(Schema):
    """What a runtime serves and how it is reached."""

    ignored = frozenset(
        {
            "volumes",
            "nodeSelector",
            "affinity",
            "tolerations",
            "labels",
            "annotations",
            "imagePullSecrets",
            "hostIPC",
            "workerSpec",
            # meshserve serves the v2 REST API itself.
            "httpDataEndpoint",
        }
    )

    supported_model_formats: list[SupportedModelFormat] = Field(default_factory=list)
    multi_model: bool | None = None
    disabled: bool | None = None
    protocol_versions: list[str] = Field(default_factory=list)
    containers: list[Container] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    grpc_endpoint: str | None = None
    grpc_data_endpoint: str | None = None
    replicas: int | None = Field(default=None, ge=0, le=65535)
    storage_helper: StorageHelper | None = None
    built_in_adapter: BuiltInAdapter | None = None

    @property
    def is_multi_model(self) -> bool:
        return self.multi_model is True

    @property
    def is_disabled(self) -> bool:
        return self.disabled is True


class ServingRuntime(ResourceBase):
    """A namespaced template for runtime instances."""

    kind: Literal["ServingRuntime"]
    api_version: Literal["serving.kserve.io/v1alpha1"]
    spec: ServingRuntimeSpec


class ClusterServingRuntime(ResourceBase):
    """A cluster-wide ServingRuntime; it has no namespace."""

    kind: Literal["ClusterServingRuntime"]
    api_version: Literal["serving.kserve.io/v1alpha1"]
    spec: ServingRuntimeSpec

    @property
    def namespace(self) -> str:
        return ""

    def ignored_fields(self) -> list[FieldWarning]:
        warnings = super().ignored_fields()
        if "namespace" in self.metadata.model_fields_set:
            warnings.insert(0, FieldWarning("metadata.namespace", WarningKind.IGNORED))
        return warnings
