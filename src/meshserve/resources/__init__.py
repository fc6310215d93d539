"""Resources in ModelMesh Serving's shape: schemas, validation, ids, runtime choice.

A pure library: it parses and checks ServingRuntime, ClusterServingRuntime,
Predictor and InferenceService documents (and the Secret holding a
namespace's storage-config), derives the vmodel and model ids
a resource maps to, and picks the runtime that serves it. The controller
and the CLI build on it; nothing here talks to the mesh.
"""

from meshserve.resources._batching import (
    MAX_BATCH_DELAY_ANNOTATION,
    MAX_BATCH_SIZE_ANNOTATION,
    batch_overrides,
)
from meshserve.resources._documents import (
    Manifest,
    Resource,
    load_documents,
    load_manifest,
    parse_resource,
)
from meshserve.resources._inference_service import FRAMEWORKS, InferenceService
from meshserve.resources._locations import ModelLocation, model_location
from meshserve.resources._naming import (
    INFERENCE_SERVICE_SOURCE,
    NO_RUNTIME_LABEL,
    PREDICTOR_SOURCE,
    ModelNames,
    go_json,
    model_names,
    model_type_label,
    registry_scope,
    spec_hash,
)
from meshserve.resources._predictor import Predictor
from meshserve.resources._runtime_selection import FailureReason, RuntimeSelection, select_runtime
from meshserve.resources._schema import (
    DEPLOYMENT_MODE_ANNOTATION,
    MODELMESH_DEPLOYMENT_MODE,
    RUNTIME_ANNOTATION,
    SCHEMA_PATH_ANNOTATION,
    SECRET_KEY_ANNOTATION,
    FieldWarning,
    ObjectMeta,
    WarningKind,
)
from meshserve.resources._secret import SEALED_DATA_FIELD, Secret
from meshserve.resources._serving_runtime import (
    BuiltInAdapter,
    ClusterServingRuntime,
    Container,
    ServingRuntime,
    ServingRuntimeSpec,
    SupportedModelFormat,
)
from meshserve.resources._target import FormatRef, ModelTarget, model_target
from meshserve.resources._uri import (
    AZURE_BLOB_HOST_SUFFIX,
    StorageLocation,
    check_no_credentials,
    is_storage_uri,
    looks_like_uri,
    parse_storage_uri,
    redact_uri,
    redact_uris,
)
from meshserve.resources._validation import (
    BUILT_IN_SERVER_TYPES,
    RESERVED_CONTAINER_NAMES,
    RESERVED_PORT_RANGE,
    RESERVED_PORTS,
    validate_inference_service,
    validate_predictor,
    validate_resource,
    validate_serving_runtime,
)

__all__ = [
    "AZURE_BLOB_HOST_SUFFIX",
    "BUILT_IN_SERVER_TYPES",
    "DEPLOYMENT_MODE_ANNOTATION",
    "FRAMEWORKS",
    "INFERENCE_SERVICE_SOURCE",
    "MAX_BATCH_DELAY_ANNOTATION",
    "MAX_BATCH_SIZE_ANNOTATION",
    "MODELMESH_DEPLOYMENT_MODE",
    "NO_RUNTIME_LABEL",
    "PREDICTOR_SOURCE",
    "RESERVED_CONTAINER_NAMES",
    "RESERVED_PORTS",
    "RESERVED_PORT_RANGE",
    "RUNTIME_ANNOTATION",
    "SCHEMA_PATH_ANNOTATION",
    "SEALED_DATA_FIELD",
    "SECRET_KEY_ANNOTATION",
    "BuiltInAdapter",
    "ClusterServingRuntime",
    "Container",
    "FailureReason",
    "FieldWarning",
    "FormatRef",
    "InferenceService",
    "Manifest",
    "ModelLocation",
    "ModelNames",
    "ModelTarget",
    "ObjectMeta",
    "Predictor",
    "Resource",
    "RuntimeSelection",
    "Secret",
    "ServingRuntime",
    "ServingRuntimeSpec",
    "StorageLocation",
    "SupportedModelFormat",
    "WarningKind",
    "batch_overrides",
    "check_no_credentials",
    "go_json",
    "is_storage_uri",
    "load_documents",
    "load_manifest",
    "looks_like_uri",
    "model_location",
    "model_names",
    "model_target",
    "model_type_label",
    "parse_resource",
    "parse_storage_uri",
    "redact_uri",
    "redact_uris",
    "registry_scope",
    "select_runtime",
    "spec_hash",
    "validate_inference_service",
    "validate_predictor",
    "validate_resource",
    "validate_serving_runtime",
]
