"""KServe's InferenceService (``serving.kserve.io/v1beta1``), as ModelMesh reads it."""

from __future__ import annotations

from typing import Literal

from meshserve.resources._schema import (
    DEPLOYMENT_MODE_ANNOTATION,
    MODELMESH_DEPLOYMENT_MODE,
    Location,
    ModelFormat,
    ResourceBase,
    Schema,
)
from meshserve.resources._serving_runtime import Container

__all__ = [
    "FRAMEWORKS",
    "FrameworkSpec",
    "InferenceService",
    "InferenceServicePredictor",
    "InferenceServiceSpec",
    "IsvcModelSpec",
    "ModelStorageSpec",
]

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


class ModelStorageSpec(Schema):
    """The InferenceService ``storage`` block."""

    path: Location | None = None
    schema_path: str | None = None
    parameters: dict[str, Location] | None = None
    key: str | None = None


class FrameworkSpec(Schema):
    """An old-style framework block (``sklearn:``, ``onnx:`` ...)."""

    ignored = frozenset({"runtimeVersion"}) | _INLINE_CONTAINER_FIELDS

    storage_uri: Location | None = None
    storage: ModelStorageSpec | None = None
    runtime_version: str | None = None
    protocol_version: str | None = None


class IsvcModelSpec(FrameworkSpec):
    """The ``predictor.model`` block."""

    model_format: ModelFormat | None = None
    runtime: str | None = None


class InferenceServicePredictor(Schema):
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


class InferenceServiceSpec(Schema):
    """An InferenceService's spec; ModelMesh serves only the predictor."""

    ignored = frozenset({"transformer", "explainer"})

    predictor: InferenceServicePredictor


class InferenceService(ResourceBase):
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
