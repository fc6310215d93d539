"""What a Predictor or InferenceService asks the mesh to serve.

ModelMesh Serving turns every InferenceService into a v1alpha1 Predictor
first and then reads only that; :func:`model_target` does the same, so both
kinds end up as one :class:`ModelTarget`: the model type, the runtime named
(if any), the location and storage parameters, and the Predictor spec as
ModelMesh Serving would hold it (the model id hashes it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from meshserve.resources._batching import batch_overrides
from meshserve.resources._inference_service import FrameworkSpec, InferenceService
from meshserve.resources._predictor import Predictor, PredictorSpec
from meshserve.resources._schema import (
    RUNTIME_ANNOTATION,
    SCHEMA_PATH_ANNOTATION,
    SECRET_KEY_ANNOTATION,
    ModelFormat,
)
from meshserve.resources._validation import (
    storage_uri_location,
    validate_inference_service,
    validate_predictor,
)

__all__ = ["FormatRef", "ModelTarget", "model_target"]


@dataclasses.dataclass(frozen=True, slots=True)
class FormatRef:
    """A model format name with an optional version."""

    name: str
    version: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ModelTarget:
    """The model a Predictor or InferenceService describes."""

    model_format: FormatRef
    runtime: str | None
    """A runtime named explicitly, or None to choose one by format."""
    protocol_version: str | None
    path: str
    """The artifact's path inside its store ("" for an http(s) URL)."""
    schema_path: str | None
    storage_key: str | None
    """The storage-config entry; None means ModelMesh's default lookup."""
    storage_params: dict[str, str]
    predictor_spec: dict[str, Any] = dataclasses.field(compare=False, repr=False)
    """The v1alpha1 PredictorSpec in ModelMesh Serving's JSON field order and
    omission rules (see meshserve.resources._naming)."""
    batching: dict[str, int | float] = dataclasses.field(default_factory=dict)
    """Adaptive batching limits the resource's annotations set, as model key
    fields (:mod:`meshserve.resources._batching`); empty: the runtime's."""


def model_target(resource: Predictor | InferenceService) -> ModelTarget:
    """Validate ``resource`` and return what it asks to serve.

    Raises InvalidResourceError / ForeignResourceError as the validators do.
    """
    if isinstance(resource, Predictor):
        validate_predictor(resource)
        target = _predictor_target(resource.spec)
    else:
        validate_inference_service(resource)
        target = _isvc_target(resource)
    batching = batch_overrides(resource.metadata.annotations)
    return dataclasses.replace(target, batching=batching) if batching else target


def _predictor_target(spec: PredictorSpec) -> ModelTarget:
    # Mirrors ModelMesh Serving's extractModelFields: the newer storage
    # fields win over the deprecated top-level ones and over storage.s3.
    assert spec.model_type is not None  # validated
    storage = spec.storage
    path, schema_path = spec.path, spec.schema_path
    key: str | None = None
    params: dict[str, str] = {}
    if storage is not None:
        path = storage.path if storage.path is not None else spec.path
        schema_path = storage.schema_path if storage.schema_path is not None else spec.schema_path
        if storage.key is not None:
            key = storage.key
        elif storage.s3 is not None:
            key = storage.s3.secret_key
        if storage.parameters is not None:
            params = dict(storage.parameters)
        elif storage.s3 is not None and storage.s3.bucket is not None:
            params = {"bucket": storage.s3.bucket}
    return ModelTarget(
        model_format=_format(spec.model_type),
        runtime=spec.runtime.name if spec.runtime is not None and spec.runtime.name else None,
        protocol_version=spec.protocol_version or None,
        path=path,
        schema_path=schema_path,
        storage_key=key,
        storage_params=params,
        predictor_spec=_go_predictor_spec(spec),
    )


def _isvc_target(isvc: InferenceService) -> ModelTarget:
    annotations = isvc.metadata.annotations
    predictor = isvc.spec.predictor
    block: FrameworkSpec
    if predictor.model is not None:
        assert predictor.model.model_format is not None  # validated
        model_format = _format(predictor.model.model_format)
        runtime = predictor.model.runtime
        block, prefix = predictor.model, "spec.predictor.model"
    else:
        name, block = predictor.frameworks()[0]
        model_format = FormatRef(name)
        runtime = annotations.get(RUNTIME_ANNOTATION)
        prefix = f"spec.predictor.{name}"
    # "" is KServe's ProtocolUnknown: the same as not set.
    protocol = block.protocol_version or None

    storage = block.storage
    uri_params: dict[str, str] = {}
    if block.storage_uri is not None:
        location = storage_uri_location(block.storage_uri, field=f"{prefix}.storageUri")
        path, uri_params = location.path, location.params
    else:
        assert storage is not None and storage.path is not None  # validated
        path = storage.path
    # URI-derived parameters win over storage.parameters.
    params = {**(storage.parameters or {}), **uri_params} if storage is not None else uri_params
    key = storage.key if storage is not None else None
    if key is None:
        key = annotations.get(SECRET_KEY_ANNOTATION)
    schema_path = storage.schema_path if storage is not None else None
    if schema_path is None:
        schema_path = annotations.get(SCHEMA_PATH_ANNOTATION)

    go_spec: dict[str, Any] = {
        "modelType": _go_model_type(model_format),
        "path": "",
        "storage": _omit_none(
            {"path": path, "schemaPath": schema_path, "parameters": _go_map(params), "key": key}
        ),
    }
    if runtime is not None:
        go_spec["runtime"] = {"name": runtime}
    if protocol is not None:
        go_spec["protocolVersion"] = protocol
    return ModelTarget(
        model_format=model_format,
        runtime=runtime or None,
        protocol_version=protocol,
        path=path,
        schema_path=schema_path,
        storage_key=key,
        storage_params=params,
        predictor_spec=go_spec,
    )


def _format(model_format: ModelFormat) -> FormatRef:
    return FormatRef(model_format.name, model_format.version)


def _go_model_type(model_format: FormatRef) -> dict[str, Any]:
    return _omit_none({"name": model_format.name, "version": model_format.version})


def _go_predictor_spec(spec: PredictorSpec) -> dict[str, Any]:
    """``spec`` laid out as Go's encoding/json writes ModelMesh Serving's
    PredictorSpec: struct field order, pointers omitted when nil, ``path``
    always present, fields the struct lacks dropped (the API server prunes
    them)."""
    model_type = spec.model_type or ModelFormat(name="")
    go: dict[str, Any] = {
        "serviceAccountName": spec.service_account_name,
        "modelType": _go_model_type(_format(model_type)),
        "path": spec.path,
        "schemaPath": spec.schema_path,
    }
    storage = spec.storage
    if storage is not None:
        s3 = storage.s3
        go["storage"] = _omit_none(
            {
                "path": storage.path,
                "schemaPath": storage.schema_path,
                "parameters": None if storage.parameters is None else _go_map(storage.parameters),
                "key": storage.key,
                "persistentVolumeClaim": _go_claim(storage.persistent_volume_claim),
                "s3": None
                if s3 is None
                else _omit_none({"secretKey": s3.secret_key, "bucket": s3.bucket}),
            }
        )
    go["gpu"] = spec.gpu
    if spec.runtime is not None:
        go["runtime"] = _omit_none({"name": spec.runtime.name})
    go["protocolVersion"] = spec.protocol_version
    return _omit_none(go)


def _go_map(values: dict[str, str]) -> dict[str, str]:
    # Go writes map keys sorted; struct fields keep declaration order.
    return dict(sorted(values.items()))


def _go_claim(claim: dict[str, Any] | None) -> dict[str, Any] | None:
    if claim is None:
        return None
    go: dict[str, Any] = {"claimName": str(claim.get("claimName", ""))}
    if claim.get("readOnly"):
        go["readOnly"] = True
    return go


def _omit_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}
