"""ModelMesh Serving's own model resource: Predictor (``serving.kserve.io/v1alpha1``)."""

from __future__ import annotations

from typing import Any, Literal

from meshserve.resources._schema import Location, ModelFormat, ResourceBase, Schema

__all__ = ["Predictor", "PredictorSpec", "PredictorStorage", "RuntimeRef", "S3Storage"]


class RuntimeRef(Schema):
    """A runtime named explicitly."""

    name: str | None = None


class S3Storage(Schema):
    """Deprecated Predictor storage form."""

    secret_key: str
    bucket: str | None = None


class PredictorStorage(Schema):
    """Where a Predictor's model lives."""

    path: Location | None = None
    schema_path: str | None = None
    parameters: dict[str, Location] | None = None
    key: str | None = None
    s3: S3Storage | None = None
    # Never supported by ModelMesh Serving; kept so validation can say so.
    persistent_volume_claim: dict[str, Any] | None = None


class PredictorSpec(Schema):
    """A Predictor's desired model."""

    ignored = frozenset({"gpu", "serviceAccountName"})

    model_type: ModelFormat | None = None
    path: Location = ""
    schema_path: str | None = None
    storage: PredictorStorage | None = None
    runtime: RuntimeRef | None = None
    protocol_version: str | None = None
    gpu: str | None = None
    service_account_name: str | None = None


class Predictor(ResourceBase):
    """ModelMesh Serving's own model resource."""

    kind: Literal["Predictor"]
    api_version: Literal["serving.kserve.io/v1alpha1"]
    spec: PredictorSpec
