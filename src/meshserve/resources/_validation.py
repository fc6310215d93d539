"""Checks a parsed resource must pass before meshserve acts on it.

They follow ModelMesh Serving's: its ServingRuntime validator (reserved
container, volume and port names and numbers, the built-in adapter's
container), its Predictor checks, and the InferenceService-to-Predictor
conversion's errors. Each failure is an InvalidResourceError naming the
field; a resource meant for another controller (no ModelMesh deployment
mode, a runtime that is not multiModel) is a ForeignResourceError.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from meshserve.errors import ForeignResourceError, InvalidRequestError, InvalidResourceError
from meshserve.resources._batching import batch_overrides
from meshserve.resources._documents import Resource
from meshserve.resources._inference_service import FRAMEWORKS, FrameworkSpec, InferenceService
from meshserve.resources._predictor import Predictor
from meshserve.resources._schema import (
    DEPLOYMENT_MODE_ANNOTATION,
    MODELMESH_DEPLOYMENT_MODE,
    RUNTIME_ANNOTATION,
)
from meshserve.resources._serving_runtime import ClusterServingRuntime, Container, ServingRuntime
from meshserve.resources._uri import StorageLocation, parse_storage_uri

__all__ = [
    "BUILT_IN_SERVER_TYPES",
    "RESERVED_CONTAINER_NAMES",
    "RESERVED_PORTS",
    "RESERVED_PORT_RANGE",
    "storage_uri_location",
    "validate_inference_service",
    "validate_predictor",
    "validate_resource",
    "validate_serving_runtime",
]

BUILT_IN_SERVER_TYPES: tuple[str, ...] = ("triton", "mlserver", "ovms", "torchserve")
"""model-serving-config's default ``builtInServerTypes``."""

RESERVED_CONTAINER_NAMES = frozenset({"mm", "rest-proxy", "puller"})
"""Containers ModelMesh Serving injects into every runtime pod."""

RESERVED_PORTS = frozenset({8080, 8085, 8089, 8090})
"""8080 litelinks between instances, 8085 the built-in adapter, 8089 probes,
8090 the preStop hook."""

RESERVED_PORT_RANGE = range(11881, 11900)
"""Held back for future internal use ('m' is 109; 109 x 109 = 11881)."""

_RESERVED_PREFIX = "mm-"
_RESERVED_PORT_NAMES = frozenset({"grpc", "http", "prometheus"})
_RESERVED_MOUNTS = frozenset({"storage-config", "etcd-config", "tc-config", "domain-socket"})
_RESERVED_VOLUMES = _RESERVED_MOUNTS | {"models-dir"}


def validate_resource(
    resource: Resource, *, built_in_server_types: Collection[str] = BUILT_IN_SERVER_TYPES
) -> None:
    """Raise InvalidResourceError (or ForeignResourceError) if meshserve
    cannot act on ``resource``."""
    match resource:
        case ServingRuntime() | ClusterServingRuntime():
            validate_serving_runtime(resource, built_in_server_types=built_in_server_types)
        case Predictor():
            validate_predictor(resource)
        case InferenceService():
            validate_inference_service(resource)


# --- runtimes -----------------------------------------------------------------


def validate_serving_runtime(
    runtime: ServingRuntime | ClusterServingRuntime,
    *,
    built_in_server_types: Collection[str] = BUILT_IN_SERVER_TYPES,
) -> None:
    """A runtime meshserve can run: multiModel, no reserved names or ports,
    batching annotations in range."""
    batch_overrides(runtime.metadata.annotations)
    spec = runtime.spec
    if not spec.is_multi_model:
        stated = "false" if spec.multi_model is False else "not set"
        raise ForeignResourceError(
            f"{runtime.kind} {runtime.name} is not multiModel ({stated}): it is a "
            "single-model KServe runtime, which meshserve cannot serve (set "
            "multiModel: true for a runtime that implements the model-mesh SPI)",
            field="spec.multiModel",
        )
    adapter = spec.built_in_adapter
    if adapter is not None:
        server_type = adapter.server_type or ""
        if server_type not in built_in_server_types:
            known = ", ".join(built_in_server_types)
            raise InvalidResourceError(
                f"unrecognized built-in runtime server type {server_type!r} (known: {known})",
                field="spec.builtInAdapter.serverType",
            )
        if all(container.name != server_type for container in spec.containers):
            raise InvalidResourceError(
                f"the built-in adapter for {server_type!r} needs a container named {server_type!r}",
                field="spec.containers",
            )
    seen: set[str] = set()
    for index, container in enumerate(spec.containers):
        if container.name in seen:
            raise InvalidResourceError(
                f"container name {container.name!r} is used twice",
                field=f"spec.containers[{index}].name",
            )
        seen.add(container.name)
        _check_container(container, field=f"spec.containers[{index}]")
    for index, volume in enumerate(spec.volumes):
        _check_name(
            volume.name, _RESERVED_VOLUMES, what="volume", field=f"spec.volumes[{index}].name"
        )
    for name in ("grpc_endpoint", "grpc_data_endpoint"):
        endpoint = getattr(spec, name)
        if endpoint is not None:
            _check_endpoint(endpoint, field=f"spec.{type(spec).model_fields[name].alias}")


def _check_container(container: Container, *, field: str) -> None:
    _check_name(
        container.name, RESERVED_CONTAINER_NAMES, what="container name", field=f"{field}.name"
    )
    for key, value in (
        ("readinessProbe", container.readiness_probe),
        ("lifecycle", container.lifecycle),
    ):
        if value is not None:
            raise InvalidResourceError(
                f"{key} is managed by the mesh and cannot be set", field=f"{field}.{key}"
            )
    for index, mount in enumerate(container.volume_mounts):
        _check_name(
            mount.name, _RESERVED_MOUNTS, what="volume", field=f"{field}.volumeMounts[{index}].name"
        )
    for index, port in enumerate(container.ports):
        where = f"{field}.ports[{index}]"
        if port.name is not None:
            _check_name(port.name, _RESERVED_PORT_NAMES, what="port name", field=f"{where}.name")
        number = port.container_port
        if number in RESERVED_PORTS:
            raise InvalidResourceError(
                f"port {number} is reserved for internal use (reserved: "
                f"{', '.join(map(str, sorted(RESERVED_PORTS)))}, 11881-11899)",
                field=f"{where}.containerPort",
            )
        if number in RESERVED_PORT_RANGE:
            raise InvalidResourceError(
                f"port {number} is in the range 11881-11899, reserved for internal use",
                field=f"{where}.containerPort",
            )


def _check_name(name: str, reserved: Iterable[str], *, what: str, field: str) -> None:
    if name in reserved:
        raise InvalidResourceError(f"{what} {name!r} is reserved for internal use", field=field)
    if name.startswith(_RESERVED_PREFIX):
        raise InvalidResourceError(
            f"{what} {name!r} starts with 'mm-', which is reserved for internal use", field=field
        )


def _check_endpoint(endpoint: str, *, field: str) -> None:
    kind, _, rest = endpoint.partition(":")
    if kind == "port" and rest.isdigit() and 0 < int(rest) < 65536:
        return
    if kind == "unix" and rest.startswith("/"):
        return
    raise InvalidResourceError(
        f"endpoint {endpoint!r} must be 'port:<number>' or 'unix:/<socket path>'", field=field
    )


# --- Predictor ------------------------------------------------------------------


def validate_predictor(predictor: Predictor) -> None:
    """A Predictor ModelMesh Serving would register (else InvalidPredictorSpec)."""
    spec = predictor.spec
    if spec.model_type is None:
        raise InvalidResourceError("modelType is required", field="spec.modelType")
    storage = spec.storage
    if storage is None:
        if not spec.path:
            raise InvalidResourceError(
                "no model location: set spec.storage.path (or the deprecated spec.path)",
                field="spec.storage",
            )
        return
    if storage.path is not None and spec.path:
        raise InvalidResourceError(
            "only one of spec.path and spec.storage.path can be specified",
            field="spec.storage.path",
        )
    if storage.schema_path is not None and spec.schema_path is not None:
        raise InvalidResourceError(
            "only one of spec.schemaPath and spec.storage.schemaPath can be specified",
            field="spec.storage.schemaPath",
        )
    if storage.persistent_volume_claim is not None:
        raise InvalidResourceError(
            "spec.storage.persistentVolumeClaim is not supported; use storage.parameters "
            "{type: pvc, name: <claim>} with storage.path",
            field="spec.storage.persistentVolumeClaim",
        )
    newer = (storage.path, storage.schema_path, storage.parameters, storage.key)
    if storage.s3 is not None and any(value is not None for value in newer):
        raise InvalidResourceError(
            "spec.storage.s3 (deprecated) cannot be combined with path, schemaPath, "
            "parameters or key in spec.storage",
            field="spec.storage.s3",
        )
    if storage.path is None and not spec.path:
        raise InvalidResourceError(
            "no model location: set spec.storage.path (or the deprecated spec.path)",
            field="spec.storage.path",
        )


# --- InferenceService ---------------------------------------------------------------


def validate_inference_service(isvc: InferenceService) -> None:
    """An InferenceService meshserve serves: ModelMesh mode, exactly one of
    ``model`` or a framework block, a model format and one model location."""
    annotations = isvc.metadata.annotations
    field = f"metadata.annotations[{DEPLOYMENT_MODE_ANNOTATION}]"
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    if mode != MODELMESH_DEPLOYMENT_MODE:
        stated = "missing" if mode is None else f"{mode!r}"
        raise ForeignResourceError(
            f"InferenceService {isvc.name} is not for meshserve: annotation "
            f"{DEPLOYMENT_MODE_ANNOTATION} is {stated}, and only "
            f"{MODELMESH_DEPLOYMENT_MODE!r} InferenceServices are served by ModelMesh",
            field=field,
        )
    predictor = isvc.spec.predictor
    frameworks = predictor.frameworks()
    block: FrameworkSpec
    if predictor.model is not None:
        if frameworks:
            names = ", ".join(name for name, _ in frameworks)
            raise InvalidResourceError(
                f"spec.predictor.model cannot be combined with a framework spec ({names})",
                field=f"spec.predictor.{frameworks[0][0]}",
            )
        if RUNTIME_ANNOTATION in annotations:
            raise InvalidResourceError(
                f"spec.predictor.model cannot be combined with the {RUNTIME_ANNOTATION} "
                "annotation; name the runtime in spec.predictor.model.runtime",
                field=f"metadata.annotations[{RUNTIME_ANNOTATION}]",
            )
        if predictor.model.model_format is None:
            raise InvalidResourceError(
                "modelFormat is required", field="spec.predictor.model.modelFormat"
            )
        if not predictor.model.model_format.name:
            raise InvalidResourceError(
                "modelFormat.name must not be empty", field="spec.predictor.model.modelFormat.name"
            )
        block, prefix = predictor.model, "spec.predictor.model"
    elif not frameworks:
        raise InvalidResourceError(
            "spec.predictor has neither model nor a framework spec (" + ", ".join(FRAMEWORKS) + ")",
            field="spec.predictor",
        )
    elif len(frameworks) > 1:
        names = ", ".join(name for name, _ in frameworks)
        raise InvalidResourceError(
            f"spec.predictor has several framework specs ({names}); give exactly one",
            field=f"spec.predictor.{frameworks[1][0]}",
        )
    else:
        name, block = frameworks[0]
        prefix = f"spec.predictor.{name}"
    _check_storage(block, prefix=prefix)


def _check_storage(block: FrameworkSpec, *, prefix: str) -> None:
    has_path = block.storage is not None and block.storage.path is not None
    if block.storage_uri is None:
        if not has_path:
            raise InvalidResourceError(
                "no model location: set storageUri or storage.path", field=f"{prefix}.storage"
            )
        return
    if has_path:
        raise InvalidResourceError(
            "storageUri and storage.path cannot both be set; use storageUri alone, or "
            "storage.key and storage.path",
            field=f"{prefix}.storageUri",
        )
    storage_uri_location(block.storage_uri, field=f"{prefix}.storageUri")


def storage_uri_location(uri: str, *, field: str) -> StorageLocation:
    """``uri`` parsed as :func:`parse_storage_uri` does; its refusal as an
    InvalidResourceError at ``field``."""
    try:
        return parse_storage_uri(uri)
    except InvalidRequestError as exc:
        raise InvalidResourceError(exc.message, field=field) from None
