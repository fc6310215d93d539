"""Schemas of the ``serving.kserve.io`` resources ModelMesh Serving reads.

ServingRuntime and ClusterServingRuntime (v1alpha1), Predictor (v1alpha1)
and InferenceService (v1beta1), shaped after the CRDs so that files written
for ModelMesh Serving load unchanged, and the core v1 Secret that holds a
namespace's ``storage-config``. Field names are the CRDs' camelCase.

Nothing is dropped: a field the schema does not know is kept (and written
back by :meth:`to_document`), and :meth:`ignored_fields` lists, as dotted
paths, every field meshserve parses but does not act on, so ``apply`` can
warn about each one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import enum
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from meshserve.control._uri import check_no_credentials
from meshserve.errors import InvalidRequestError, InvalidResourceError

__all__ = [
    "DEPLOYMENT_MODE_ANNOTATION",
    "FRAMEWORKS",
    "MODELMESH_DEPLOYMENT_MODE",
    "RUNTIME_ANNOTATION",
    "SCHEMA_PATH_ANNOTATION",
    "SEALED_DATA_FIELD",
    "SECRET_KEY_ANNOTATION",
    "BuiltInAdapter",
    "ClusterServingRuntime",
    "Container",
    "ContainerPort",
    "EnvVar",
    "FieldWarning",
    "FrameworkSpec",
    "InferenceService",
    "InferenceServicePredictor",
    "InferenceServiceSpec",
    "IsvcModelSpec",
    "ModelFormat",
    "ModelStorageSpec",
    "ObjectMeta",
    "Predictor",
    "PredictorSpec",
    "PredictorStorage",
    "Resource",
    "RuntimeRef",
    "S3Storage",
    "Secret",
    "ServingRuntime",
    "ServingRuntimeSpec",
    "StorageHelper",
    "SupportedModelFormat",
    "WarningKind",
    "load_documents",
    "parse_resource",
]

GROUP = "serving.kserve.io"
V1ALPHA1 = f"{GROUP}/v1alpha1"
V1BETA1 = f"{GROUP}/v1beta1"

DEPLOYMENT_MODE_ANNOTATION = f"{GROUP}/deploymentMode"
MODELMESH_DEPLOYMENT_MODE = "ModelMesh"
RUNTIME_ANNOTATION = f"{GROUP}/servingRuntime"
SECRET_KEY_ANNOTATION = f"{GROUP}/secretKey"
SCHEMA_PATH_ANNOTATION = f"{GROUP}/schemaPath"

FRAMEWORKS: tuple[str, ...] = (
    "xgboost",
    "lightgbm",
    "sklearn",
    "tensorflow",
    "onnx",
    "pytorch",
    "triton",
    "pmml",
)
"""The old InferenceService framework blocks ModelMesh Serving understands,
in the order it looks for them."""

_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class WarningKind(enum.Enum):
    """Why a field earns a warning."""

    IGNORED = "ignored"
    """The CRD defines it, meshserve does not act on it."""
    UNKNOWN = "unknown"
    """The CRD does not define it (a typo, or a newer API); kept as written."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldWarning:
    """One field of a resource that meshserve keeps but does not act on."""

    path: str
    kind: WarningKind

    def __str__(self) -> str:
        if self.kind is WarningKind.UNKNOWN:
            return f"{self.path}: unknown field, kept but not used"
        return f"{self.path}: not acted on by meshserve"


class _Schema(BaseModel):
    # frozen: a parsed resource is a value; the controller derives from it.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )

    ignored: ClassVar[frozenset[str]] = frozenset()
    """Keys (as spelled in YAML) the CRD defines but meshserve does not act on,
    whether this class models them or keeps them as extras."""

    def _warnings(self, prefix: str) -> Iterator[FieldWarning]:
        for name, field in type(self).model_fields.items():
            if name not in self.model_fields_set:
                continue
            key = field.alias or name
            path = f"{prefix}.{key}" if prefix else key
            if key in self.ignored:
                yield FieldWarning(path, WarningKind.IGNORED)
                continue
            yield from _nested_warnings(getattr(self, name), path)
        for key in self.model_extra or {}:
            path = f"{prefix}.{key}" if prefix else key
            kind = WarningKind.IGNORED if key in self.ignored else WarningKind.UNKNOWN
            yield FieldWarning(path, kind)


def _nested_warnings(value: object, path: str) -> Iterator[FieldWarning]:
    if isinstance(value, _Schema):
        yield from value._warnings(path)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nested_warnings(item, f"{path}[{index}]")


# --- metadata ---------------------------------------------------------------


class ObjectMeta(_Schema):
    """The parts of Kubernetes object metadata meshserve keeps."""

    ignored = frozenset(
        {
            "generateName",
            "finalizers",
            "ownerReferences",
            "managedFields",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        }
    )

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    creation_timestamp: datetime.datetime | None = None

    @field_validator("name")
    @classmethod
    def _name_is_dns_subdomain(cls, value: str) -> str:
        if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
            raise ValueError(
                "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_is_dns_label(cls, value: str) -> str:
        if len(value) > 63 or not _DNS1123_LABEL.match(value):
            raise ValueError("must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63)")
        return value


# --- containers (the subset of corev1.Container runtimes need) ----------------


class EnvVar(_Schema):
    """An environment variable of a runtime container or adapter."""

    # A Kubernetes Secret or ConfigMap reference cannot be resolved standalone.
    ignored = frozenset({"valueFrom"})

    name: str
    value: str | None = None


class ContainerPort(_Schema):
    """A port a runtime container declares."""

    ignored = frozenset({"hostPort", "hostIP"})

    container_port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: str | None = None


class ResourceRequirements(_Schema):
    """Requests and limits; the memory request sizes the runtime's capacity."""

    ignored = frozenset({"claims"})

    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)


class VolumeMount(_Schema):
    """Kept only so reserved volume names can be refused."""

    name: str
    mount_path: str | None = None


class Container(_Schema):
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


class SupportedModelFormat(_Schema):
    """A model format (and optionally version) a runtime can load."""

    name: str
    version: str | None = None
    auto_select: bool | None = None
    priority: int | None = Field(default=None, ge=1)


class BuiltInAdapter(_Schema):
    """ModelMesh Serving's adapter in front of a built-in server type."""

    server_type: str | None = None
    runtime_management_port: int | None = None
    mem_buffer_bytes: int | None = Field(default=None, ge=0)
    model_loading_timeout_millis: int | None = Field(default=None, ge=0)
    env: list[EnvVar] = Field(default_factory=list)


class StorageHelper(_Schema):
    """Whether the model puller fetches artifacts for this runtime."""

    disabled: bool = False


class Volume(_Schema):
    """Kept only so reserved volume names can be refused."""

    name: str


class ServingRuntimeSpec(_Schema):
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


class _Resource(_Schema):
    """Fields every resource document has."""

    ignored = frozenset({"status"})

    api_version: str
    metadata: ObjectMeta
    # Written by the controller; what a file says here is not applied.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    def ignored_fields(self) -> list[FieldWarning]:
        """Every field meshserve keeps without acting on it, as dotted paths."""
        return list(self._warnings(""))

    def to_document(self) -> dict[str, Any]:
        """The resource as a JSON-able mapping, unknown fields included."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ServingRuntime(_Resource):
    """A namespaced template for runtime instances."""

    kind: Literal["ServingRuntime"]
    api_version: Literal["serving.kserve.io/v1alpha1"]
    spec: ServingRuntimeSpec


class ClusterServingRuntime(_Resource):
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


# --- Predictor (v1alpha1) -----------------------------------------------------


def _no_credentials(text: str) -> str:
    # Checked when the document is parsed, so a URI with a credential in it
    # is refused before it is stored (and shown to every reader).
    try:
        check_no_credentials(text)
    except InvalidRequestError as exc:
        raise PydanticCustomError("credential_in_uri", exc.message) from None
    return text


_Location = Annotated[str, AfterValidator(_no_credentials)]
"""A model location (``storageUri``, a path, a storage parameter): a URI in
it may carry no credential."""


class ModelFormat(_Schema):
    """A model format name and optional version (Predictor ``modelType``,
    InferenceService ``modelFormat``)."""

    name: str
    version: str | None = None


class RuntimeRef(_Schema):
    """A runtime named explicitly."""

    name: str | None = None


class S3Storage(_Schema):
    """Deprecated Predictor storage form."""

    secret_key: str
    bucket: str | None = None


class PredictorStorage(_Schema):
    """Where a Predictor's model lives."""

    path: _Location | None = None
    schema_path: str | None = None
    parameters: dict[str, _Location] | None = None
    key: str | None = None
    s3: S3Storage | None = None
    # Never supported by ModelMesh Serving; kept so validation can say so.
    persistent_volume_claim: dict[str, Any] | None = None


class PredictorSpec(_Schema):
    """A Predictor's desired model."""

    ignored = frozenset({"gpu", "serviceAccountName"})

    model_type: ModelFormat | None = None
    path: _Location = ""
    schema_path: str | None = None
    storage: PredictorStorage | None = None
    runtime: RuntimeRef | None = None
    protocol_version: str | None = None
    gpu: str | None = None
    service_account_name: str | None = None


class Predictor(_Resource):
    """ModelMesh Serving's own model resource."""

    kind: Literal["Predictor"]
    api_version: Literal["serving.kserve.io/v1alpha1"]
    spec: PredictorSpec


# --- InferenceService (v1beta1) -----------------------------------------------

# corev1.Container fields a predictor block may carry inline: KServe's
# single-model deployments use them, ModelMesh does not.
_INLINE_CONTAINER_FIELDS = Container.ignored | {
    "name",
    "image",
    "command",
    "args",
    "env",
    "ports",
    "resources",
    "workingDir",
    "readinessProbe",
    "lifecycle",
}


class ModelStorageSpec(_Schema):
    """The InferenceService ``storage`` block."""

    path: _Location | None = None
    schema_path: str | None = None
    parameters: dict[str, _Location] | None = None
    key: str | None = None


class FrameworkSpec(_Schema):
    """An old-style framework block (``sklearn:``, ``onnx:`` ...)."""

    ignored = frozenset({"runtimeVersion"}) | _INLINE_CONTAINER_FIELDS

    storage_uri: _Location | None = None
    storage: ModelStorageSpec | None = None
    runtime_version: str | None = None
    protocol_version: str | None = None


class IsvcModelSpec(FrameworkSpec):
    """The ``predictor.model`` block."""

    model_format: ModelFormat | None = None
    runtime: str | None = None


class InferenceServicePredictor(_Schema):
    """``spec.predictor``: one of ``model`` or a framework block."""

    ignored = frozenset(
        {
            # frameworks ModelMesh Serving never served
            "paddle",
            "huggingface",
            "storageUris",
            "workerSpec",
            # PodSpec
            "containers",
            "volumes",
            "serviceAccountName",
            "nodeSelector",
            "affinity",
            "tolerations",
            "imagePullSecrets",
            "initContainers",
            "securityContext",
            "hostIPC",
            "hostNetwork",
            "priorityClassName",
            "schedulerName",
            "runtimeClassName",
            # ComponentExtensionSpec
            "minReplicas",
            "maxReplicas",
            "scaleTarget",
            "scaleMetric",
            "scaleMetricType",
            "autoScaling",
            "containerConcurrency",
            "timeout",
            "canaryTrafficPercent",
            "logger",
            "batcher",
            "labels",
            "annotations",
            "deploymentStrategy",
        }
    )

    model: IsvcModelSpec | None = None
    sklearn: FrameworkSpec | None = None
    xgboost: FrameworkSpec | None = None
    lightgbm: FrameworkSpec | None = None
    tensorflow: FrameworkSpec | None = None
    onnx: FrameworkSpec | None = None
    pytorch: FrameworkSpec | None = None
    triton: FrameworkSpec | None = None
    pmml: FrameworkSpec | None = None

    def frameworks(self) -> list[tuple[str, FrameworkSpec]]:
        """The framework blocks present, in ModelMesh Serving's lookup order."""
        found = ((name, getattr(self, name)) for name in FRAMEWORKS)
        return [(name, spec) for name, spec in found if spec is not None]


class InferenceServiceSpec(_Schema):
    """An InferenceService's spec; ModelMesh serves only the predictor."""

    ignored = frozenset({"transformer", "explainer"})

    predictor: InferenceServicePredictor


class InferenceService(_Resource):
    """KServe's InferenceService, served by meshserve when annotated
    ``serving.kserve.io/deploymentMode: ModelMesh``."""

    kind: Literal["InferenceService"]
    api_version: Literal["serving.kserve.io/v1beta1"]
    spec: InferenceServiceSpec

    @property
    def is_modelmesh(self) -> bool:
        return (
            self.metadata.annotations.get(DEPLOYMENT_MODE_ANNOTATION) == MODELMESH_DEPLOYMENT_MODE
        )


# --- Secret (core v1) ----------------------------------------------------------

_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SEALED_DATA_FIELD = "sealedData"
"""Where a stored Secret keeps its sealed values (in place of ``data``)."""


class Secret(_Resource):
    """A Kubernetes Secret: for meshserve, a namespace's ``storage-config``
    (storage key -> JSON). As parsed it holds the values in the clear; the
    resource store seals them before they are written (``meshserve.controller``),
    and nothing prints them (the fields are left out of ``repr``)."""

    ignored = frozenset({"status", "immutable"})

    kind: Literal["Secret"]
    api_version: Literal["v1"]
    secret_type: str = Field(default="Opaque", alias="type")
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    """Base64 values, as Kubernetes keeps them."""
    string_data: dict[str, str] = Field(default_factory=dict, repr=False)
    """Plain values; on a key both have, this wins (as in Kubernetes)."""
    immutable: bool | None = None

    @field_validator("data", "string_data")
    @classmethod
    def _keys_and_values(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > 253 or not _SECRET_KEY.match(key):
                raise ValueError(f"key '{key}' must be at most 253 of a-z, A-Z, 0-9, '-', '_', '.'")
            if info.field_name == "data":
                try:
                    base64.b64decode(item, validate=True)
                except (binascii.Error, ValueError):
                    # The value is a credential: name the key only.
                    raise ValueError(f"key '{key}': not valid base64") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _not_sealed(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and SEALED_DATA_FIELD in value:
            raise ValueError(
                f"{SEALED_DATA_FIELD} is what meshserve stores, not what it applies; "
                "give the values in data or stringData"
            )
        return value

    def items(self) -> dict[str, bytes]:
        """Every key's value as bytes (``data`` decoded, ``stringData`` over it)."""
        values = {key: base64.b64decode(item) for key, item in self.data.items()}
        values.update({key: item.encode() for key, item in self.string_data.items()})
        return values


Resource: TypeAlias = ServingRuntime | ClusterServingRuntime | Predictor | InferenceService | Secret

_KINDS: dict[str, type[Resource]] = {
    "ServingRuntime": ServingRuntime,
    "ClusterServingRuntime": ClusterServingRuntime,
    "Predictor": Predictor,
    "InferenceService": InferenceService,
    "Secret": Secret,
}


# --- parsing ------------------------------------------------------------------


def parse_resource(document: Mapping[str, Any], *, index: int | None = None) -> Resource:
    """Parse one resource document (already decoded from YAML or JSON).

    Raises InvalidResourceError naming the document ``index`` and the field.
    """
    if not isinstance(document, Mapping):
        raise InvalidResourceError(
            f"a resource must be a mapping, not {type(document).__name__}", document=index
        )
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        known = ", ".join(_KINDS)
        shown = "missing" if kind is None else repr(kind)
        raise InvalidResourceError(
            f"kind is {shown}; meshserve reads {known} (or a List of them)",
            field="kind",
            document=index,
        )
    try:
        return _KINDS[kind].model_validate(dict(document))
    except ValidationError as error:
        raise _resource_error(error, document=index) from None


def load_documents(text: str) -> list[Resource]:
    """Parse a multi-document YAML (or JSON) text into resources.

    Empty documents are skipped; ``kind: List`` documents are flattened. Errors
    name the document's index in the file (and the item's, inside a List).
    """
    resources: list[Resource] = []
    for index, document in _yaml_documents(text):
        if document is None:
            continue
        if isinstance(document, Mapping) and document.get("kind") == "List":
            items = document.get("items")
            if not isinstance(items, list):
                raise InvalidResourceError(
                    "a List must have a sequence of items", field="items", document=index
                )
            for position, item in enumerate(items):
                try:
                    resources.append(parse_resource(item, index=index))
                except InvalidResourceError as error:
                    field = (
                        f"items[{position}].{error.field}" if error.field else f"items[{position}]"
                    )
                    raise InvalidResourceError(error.problem, field=field, document=index) from None
            continue
        resources.append(parse_resource(document, index=index))
    return resources


def _yaml_documents(text: str) -> Iterator[tuple[int, Any]]:
    documents = yaml.safe_load_all(text)
    index = 0
    while True:
        try:
            document = next(documents)
        except StopIteration:
            return
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(error, "problem", None) or str(error)
            raise InvalidResourceError(
                f"not valid YAML{where}: {problem}", document=index
            ) from None
        yield index, document
        index += 1


def _resource_error(error: ValidationError, *, document: int | None) -> InvalidResourceError:
    problems = []
    for detail in error.errors(include_url=False):
        field = _dotted(detail["loc"])
        message = detail["msg"]
        if detail["type"] == "string_type" and isinstance(detail.get("input"), int | float | bool):
            message += " (quote the value in YAML)"
        problems.append((field, message))
    first_field, first_message = problems[0]
    rest = "; ".join(f"{field}: {message}" for field, message in problems[1:])
    return InvalidResourceError(
        f"{first_message}; also {rest}" if rest else first_message,
        field=first_field,
        document=document,
    )


def _dotted(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path
