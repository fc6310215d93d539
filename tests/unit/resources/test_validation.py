"""Validation of resources, with ModelMesh Serving's rules."""

from __future__ import annotations

import pathlib

import pytest

from meshserve.errors import ForeignResourceError, InvalidResourceError
from meshserve.resources import (
    Resource,
    load_documents,
    model_target,
    parse_resource,
    validate_resource,
)

DATA = pathlib.Path(__file__).parents[1] / "data" / "resources"

_RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata: {name: custom}
spec:
  multiModel: true
  supportedModelFormats: [{name: sklearn, autoSelect: true}]
  grpcEndpoint: "port:8085"
"""


def _runtime(**spec: object) -> Resource:
    [runtime] = load_documents(_RUNTIME)
    document = runtime.to_document()
    document["spec"].update(spec)
    return parse_resource(document)


def _isvc(predictor: dict[str, object], annotations: dict[str, str] | None = None) -> Resource:
    if annotations is None:
        annotations = {"serving.kserve.io/deploymentMode": "ModelMesh"}
    return parse_resource(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "m", "annotations": annotations},
            "spec": {"predictor": predictor},
        }
    )


def _predictor(spec: dict[str, object]) -> Resource:
    return parse_resource(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "Predictor",
            "metadata": {"name": "p"},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    "name",
    [
        "isvc-sklearn-mnist.yaml",
        "isvc-storage-spec.yaml",
        "isvc-old-framework.yaml",
        "predictor-sklearn.yaml",
        "runtimes.yaml",
        "list.yaml",
    ],
)
def test_published_shapes_are_valid(name: str) -> None:
    for resource in load_documents((DATA / name).read_text()):
        validate_resource(resource)


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"containers": [{"name": "mm"}]}, "spec.containers[0].name", "'mm' is reserved"),
        ({"containers": [{"name": "puller"}]}, "spec.containers[0].name", "reserved"),
        ({"containers": [{"name": "rest-proxy"}]}, "spec.containers[0].name", "reserved"),
        ({"containers": [{"name": "mm-sidecar"}]}, "spec.containers[0].name", "'mm-'"),
        (
            {"containers": [{"name": "a", "ports": [{"containerPort": 8085}]}]},
            "spec.containers[0].ports[0].containerPort",
            "port 8085 is reserved",
        ),
        (
            {"containers": [{"name": "a", "ports": [{"containerPort": 8089}]}]},
            "spec.containers[0].ports[0].containerPort",
            "reserved",
        ),
        (
            {"containers": [{"name": "a", "ports": [{"containerPort": 11890}]}]},
            "spec.containers[0].ports[0].containerPort",
            "11881-11899",
        ),
        (
            {"containers": [{"name": "a", "ports": [{"containerPort": 9000, "name": "grpc"}]}]},
            "spec.containers[0].ports[0].name",
            "port name 'grpc'",
        ),
        (
            {"containers": [{"name": "a", "readinessProbe": {"exec": {}}}]},
            "spec.containers[0].readinessProbe",
            "managed by the mesh",
        ),
        (
            {
                "containers": [
                    {
                        "name": "a",
                        "volumeMounts": [{"name": "models-dir-x"}, {"name": "etcd-config"}],
                    }
                ]
            },
            "spec.containers[0].volumeMounts[1].name",
            "'etcd-config' is reserved",
        ),
        ({"volumes": [{"name": "models-dir"}]}, "spec.volumes[0].name", "reserved"),
        ({"containers": [{"name": "a"}, {"name": "a"}]}, "spec.containers[1].name", "twice"),
        (
            {"builtInAdapter": {"serverType": "seldon"}, "containers": [{"name": "seldon"}]},
            "spec.builtInAdapter.serverType",
            "unrecognized built-in runtime server type 'seldon'",
        ),
        (
            {"builtInAdapter": {"serverType": "mlserver"}, "containers": [{"name": "server"}]},
            "spec.containers",
            "container named 'mlserver'",
        ),
        ({"grpcEndpoint": "8085"}, "spec.grpcEndpoint", "'port:<number>'"),
        ({"grpcDataEndpoint": "unix:relative"}, "spec.grpcDataEndpoint", "unix:/"),
    ],
)
def test_runtime_errors(spec: dict[str, object], field: str, words: str) -> None:
    runtime = _runtime(**spec)
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(runtime)
    assert not isinstance(caught.value, ForeignResourceError)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_allowed_ports_and_unix_endpoints_pass() -> None:
    runtime = _runtime(
        containers=[{"name": "a", "ports": [{"containerPort": 8001}, {"containerPort": 11900}]}],
        grpcDataEndpoint="unix:/tmp/data.sock",
    )
    validate_resource(runtime)


@pytest.mark.parametrize("multi_model", [False, None])
def test_non_multi_model_runtime_is_foreign(multi_model: bool | None) -> None:
    runtime = _runtime(multiModel=multi_model)
    with pytest.raises(ForeignResourceError) as caught:
        validate_resource(runtime)
    assert caught.value.field == "spec.multiModel"
    assert "meshserve cannot serve" in str(caught.value)


@pytest.mark.parametrize(
    ("annotations", "words"),
    [({}, "is missing"), ({"serving.kserve.io/deploymentMode": "Serverless"}, "'Serverless'")],
)
def test_isvc_without_modelmesh_mode_is_not_for_meshserve(
    annotations: dict[str, str], words: str
) -> None:
    isvc = _isvc({"sklearn": {"storageUri": "s3://b/p"}}, annotations)
    with pytest.raises(ForeignResourceError) as caught:
        validate_resource(isvc)
    assert "not for meshserve" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("predictor", "field", "words"),
    [
        (
            {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": "s3://b/p",
                    "storage": {"path": "p"},
                }
            },
            "spec.predictor.model.storageUri",
            "storageUri and storage.path cannot both be set",
        ),
        (
            {"sklearn": {"storageUri": "s3://b/p", "storage": {"path": "p"}}},
            "spec.predictor.sklearn.storageUri",
            "cannot both be set",
        ),
        (
            {"model": {"modelFormat": {"name": "sklearn"}, "storage": {"key": "k"}}},
            "spec.predictor.model.storage",
            "no model location",
        ),
        ({"xgboost": {}}, "spec.predictor.xgboost.storage", "no model location"),
        (
            {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/p"},
                "onnx": {"storageUri": "s3://b/q"},
            },
            "spec.predictor.onnx",
            "cannot be combined with a framework spec (onnx)",
        ),
        (
            {"model": {"storageUri": "s3://b/p"}},
            "spec.predictor.model.modelFormat",
            "modelFormat is required",
        ),
        ({}, "spec.predictor", "neither model nor a framework"),
        (
            {"sklearn": {"storageUri": "s3://b/p"}, "xgboost": {"storageUri": "s3://b/q"}},
            "spec.predictor.sklearn",
            "several framework specs",
        ),
        (
            {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "ftp://host/p"}},
            "spec.predictor.model.storageUri",
            "scheme 'ftp' is not supported",
        ),
    ],
)
def test_isvc_errors(predictor: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(_isvc(predictor))
    assert caught.value.field == field
    assert words in str(caught.value)


def test_isvc_model_form_refuses_the_runtime_annotation() -> None:
    isvc = _isvc(
        {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/p"}},
        {
            "serving.kserve.io/deploymentMode": "ModelMesh",
            "serving.kserve.io/servingRuntime": "mlserver-1.x",
        },
    )
    with pytest.raises(InvalidResourceError, match=r"model\.runtime") as caught:
        validate_resource(isvc)
    assert caught.value.field == "metadata.annotations[serving.kserve.io/servingRuntime]"


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"path": "p"}, "spec.modelType", "modelType is required"),
        ({"modelType": {"name": "x"}}, "spec.storage", "no model location"),
        (
            {"modelType": {"name": "x"}, "path": "a", "storage": {"path": "b"}},
            "spec.storage.path",
            "only one of spec.path and spec.storage.path",
        ),
        (
            {
                "modelType": {"name": "x"},
                "schemaPath": "s",
                "storage": {"path": "b", "schemaPath": "t"},
            },
            "spec.storage.schemaPath",
            "only one of spec.schemaPath",
        ),
        (
            {
                "modelType": {"name": "x"},
                "path": "a",
                "storage": {"persistentVolumeClaim": {"claimName": "c"}},
            },
            "spec.storage.persistentVolumeClaim",
            "not supported",
        ),
        (
            {"modelType": {"name": "x"}, "storage": {"path": "a", "s3": {"secretKey": "k"}}},
            "spec.storage.s3",
            "cannot be combined",
        ),
    ],
)
def test_predictor_errors(spec: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(_predictor(spec))
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_runtime_with_a_batching_annotation_out_of_range_is_invalid() -> None:
    [runtime] = load_documents(_RUNTIME)
    document = runtime.to_document()
    document["metadata"]["annotations"] = {"serving.meshserve.io/maxBatchDelayMs": "-3"}
    with pytest.raises(InvalidResourceError) as caught:
        validate_resource(parse_resource(document))
    assert caught.value.field == "metadata.annotations[serving.meshserve.io/maxBatchDelayMs]"


def test_an_inference_service_with_a_bad_batching_annotation_is_invalid() -> None:
    annotations = {
        "serving.kserve.io/deploymentMode": "ModelMesh",
        "serving.meshserve.io/maxBatchSize": "0",
    }
    predictor = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m"}}
    with pytest.raises(InvalidResourceError, match="1 or more"):
        model_target(_isvc(predictor, annotations))
