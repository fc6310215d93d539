"""Where a Predictor or InferenceService says its model lives, checked as far
as the resource alone allows (no settings, nothing read).

``meshserve apply`` refuses up front what is known bad from the document:
a ``storageUri`` with no or an unsupported scheme, or credentials in it,
and any storage path with a ``..`` segment (it would escape its bucket,
claim or root). What is left to decide with the server's settings is
whether a *local* location (no storage key, parameters or URI: a file on
the server) lies under the allowed roots; :func:`model_location` says which
path that is.

Problems that are not about the location (a missing modelType, both
storageUri and storage.path...) are left to the controller, which reports
them in the resource's status as ModelMesh Serving does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from meshserve.errors import InvalidResourceError, quote_client_value
from meshserve.resources._inference_service import FrameworkSpec, InferenceService
from meshserve.resources._predictor import Predictor
from meshserve.resources._schema import (
    DEPLOYMENT_MODE_ANNOTATION,
    MODELMESH_DEPLOYMENT_MODE,
    SCHEMA_PATH_ANNOTATION,
)
from meshserve.resources._target import model_target
from meshserve.resources._uri import is_storage_uri
from meshserve.resources._validation import storage_uri_location

__all__ = ["ModelLocation", "model_location"]


@dataclass(frozen=True, slots=True)
class ModelLocation:
    """The location of a resource's model, once it passed the checks."""

    path: str
    field: str
    """The field that gives ``path`` (for an error that names it)."""
    local: bool
    """True: a path on the server's own filesystem (no storage key,
    parameters or URI), which must lie under the allowed roots."""


def model_location(resource: Predictor | InferenceService) -> ModelLocation | None:
    """Check ``resource``'s storage fields (InvalidResourceError naming the
    field) and return its model's location; None when it has none to check
    (an InferenceService for another controller, or a spec the controller
    will refuse for another reason)."""
    if isinstance(resource, InferenceService) and not _for_modelmesh(resource):
        return None
    for path, field in _paths(resource):
        _refuse_escape(path, field=field)
    try:
        target = model_target(resource)
    except InvalidResourceError:
        return None  # not about storage: the controller's status says what
    local = not target.storage_key and not target.storage_params
    local = local and not is_storage_uri(target.path)
    return ModelLocation(path=target.path, field=_location_field(resource), local=local)


def _for_modelmesh(isvc: InferenceService) -> bool:
    annotations = isvc.metadata.annotations
    return annotations.get(DEPLOYMENT_MODE_ANNOTATION) == MODELMESH_DEPLOYMENT_MODE


def _paths(resource: Predictor | InferenceService) -> Iterator[tuple[str, str]]:
    """Every storage path the resource gives, with its field; a storageUri
    is parsed on the way (its refusal names the field)."""
    if isinstance(resource, Predictor):
        spec = resource.spec
        yield spec.path, "spec.path"
        if spec.schema_path is not None:
            yield spec.schema_path, "spec.schemaPath"
        if spec.storage is not None:
            if spec.storage.path is not None:
                yield spec.storage.path, "spec.storage.path"
            if spec.storage.schema_path is not None:
                yield spec.storage.schema_path, "spec.storage.schemaPath"
        return
    schema_path = resource.metadata.annotations.get(SCHEMA_PATH_ANNOTATION)
    if schema_path is not None:
        yield schema_path, f"metadata.annotations[{SCHEMA_PATH_ANNOTATION}]"
    for prefix, block in _blocks(resource):
        if block.storage_uri is not None:
            field = f"{prefix}.storageUri"
            location = storage_uri_location(block.storage_uri, field=field)
            if location.type != "http":
                yield location.path, field
        if block.storage is not None:
            if block.storage.path is not None:
                yield block.storage.path, f"{prefix}.storage.path"
            if block.storage.schema_path is not None:
                yield block.storage.schema_path, f"{prefix}.storage.schemaPath"


def _blocks(isvc: InferenceService) -> Iterator[tuple[str, FrameworkSpec]]:
    predictor = isvc.spec.predictor
    if predictor.model is not None:
        yield "spec.predictor.model", predictor.model
    for name, block in predictor.frameworks():
        yield f"spec.predictor.{name}", block


def _location_field(resource: Predictor | InferenceService) -> str:
    if isinstance(resource, Predictor):
        storage = resource.spec.storage
        return "spec.storage.path" if storage is not None and storage.path else "spec.path"
    prefix, block = next(_blocks(resource))
    return f"{prefix}.storageUri" if block.storage_uri is not None else f"{prefix}.storage.path"


def _refuse_escape(path: str, *, field: str) -> None:
    if ".." in path.replace("\\", "/").split("/"):
        raise InvalidResourceError(
            f"the path {quote_client_value(path)} escapes its root with '..'; give a path "
            "inside the bucket, claim or directory",
            field=field,
        )
