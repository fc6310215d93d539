"""Parsing ServingRuntime, Predictor and InferenceService documents."""

from __future__ import annotations

import pathlib

import pytest

import meshserve.resources as control
from meshserve.errors import InvalidRequestError, InvalidResourceError
from meshserve.resources import (
    ClusterServingRuntime,
    FieldWarning,
    InferenceService,
    Predictor,
    ServingRuntime,
    WarningKind,
    load_documents,
)

DATA = pathlib.Path(__file__).parents[1] / "data" / "resources"


def _load(name: str) -> list[control.Resource]:
    return load_documents((DATA / name).read_text())


def test_exported_names_exist() -> None:
    for name in control.__all__:
        assert hasattr(control, name), name


def test_quickstart_inference_service_parses() -> None:
    [isvc] = _load("isvc-sklearn-mnist.yaml")
    assert isinstance(isvc, InferenceService)
    assert (isvc.name, isvc.namespace) == ("example-sklearn-isvc", "default")
    assert isvc.is_modelmesh
    model = isvc.spec.predictor.model
    assert model is not None and model.model_format is not None
    assert model.model_format.name == "sklearn"
    assert model.storage_uri == "s3://modelmesh-example-models/sklearn/mnist-svm.joblib"
    assert isvc.ignored_fields() == []


def test_old_framework_form_parses_and_reports_what_is_ignored() -> None:
    [isvc] = _load("isvc-old-framework.yaml")
    assert isinstance(isvc, InferenceService)
    [(name, block)] = isvc.spec.predictor.frameworks()
    assert name == "tensorflow"
    assert block.runtime_version == "2.7"
    paths = {str(w.path) for w in isvc.ignored_fields()}
    assert paths == {
        "spec.predictor.tensorflow.runtimeVersion",
        "spec.predictor.tensorflow.resources",
    }


def test_built_in_runtime_shapes_parse() -> None:
    runtimes = _load("runtimes.yaml")
    assert [type(rt) for rt in runtimes] == [ClusterServingRuntime] * 3
    triton, mlserver, ovms = runtimes
    assert isinstance(triton, ClusterServingRuntime)
    assert triton.namespace == ""
    assert triton.spec.is_multi_model and not triton.spec.is_disabled
    assert triton.spec.grpc_endpoint == "port:8085"
    adapter = triton.spec.built_in_adapter
    assert adapter is not None
    assert (
        adapter.server_type,
        adapter.mem_buffer_bytes,
        adapter.model_loading_timeout_millis,
    ) == (
        "triton",
        134217728,
        90000,
    )
    assert triton.spec.containers[0].resources is not None
    assert triton.spec.containers[0].resources.requests["memory"] == "1Gi"
    assert [w.path for w in triton.ignored_fields()] == ["spec.containers[0].livenessProbe"]
    assert isinstance(mlserver, ClusterServingRuntime)
    assert mlserver.spec.containers[0].env[0].value == "/models/_mlserver_models/"
    assert isinstance(ovms, ClusterServingRuntime)
    assert ovms.spec.supported_model_formats[1].auto_select is None


def test_kind_list_is_flattened_and_namespaces_default() -> None:
    first, second = _load("list.yaml")
    assert isinstance(first, Predictor) and isinstance(second, Predictor)
    assert (first.name, first.namespace) == ("first", "default")
    assert (second.name, second.namespace) == ("second", "team-b")


def test_unknown_fields_are_kept_and_reported() -> None:
    [predictor] = load_documents(
        """
apiVersion: serving.kserve.io/v1alpha1
kind: Predictor
metadata: {name: p, finalizers: [x]}
spec:
  modelType: {name: onnx}
  gpu: preferred
  storage: {path: m.onnx, colour: blue}
  replicaz: 3
status: {available: true}
"""
    )
    warnings = predictor.ignored_fields()
    assert FieldWarning("spec.storage.colour", WarningKind.UNKNOWN) in warnings
    assert FieldWarning("spec.replicaz", WarningKind.UNKNOWN) in warnings
    assert FieldWarning("spec.gpu", WarningKind.IGNORED) in warnings
    assert FieldWarning("metadata.finalizers", WarningKind.IGNORED) in warnings
    assert FieldWarning("status", WarningKind.IGNORED) in warnings
    assert "unknown field" in str(FieldWarning("spec.replicaz", WarningKind.UNKNOWN))
    document = predictor.to_document()
    assert document["spec"]["storage"]["colour"] == "blue"
    assert document["spec"]["replicaz"] == 3
    assert document["metadata"]["finalizers"] == ["x"]


def test_namespace_on_a_cluster_runtime_is_reported() -> None:
    [runtime] = load_documents(
        """
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata: {name: rt, namespace: team-a}
spec: {multiModel: true}
"""
    )
    assert runtime.namespace == ""
    assert runtime.ignored_fields()[0] == FieldWarning("metadata.namespace", WarningKind.IGNORED)


def test_namespaced_serving_runtime_keeps_its_namespace() -> None:
    [runtime] = load_documents(
        "apiVersion: serving.kserve.io/v1alpha1\nkind: ServingRuntime\n"
        "metadata: {name: rt, namespace: ns1}\nspec: {multiModel: true}\n"
    )
    assert isinstance(runtime, ServingRuntime)
    assert runtime.namespace == "ns1"


@pytest.mark.parametrize(
    ("text", "document", "field", "words"),
    [
        pytest.param(
            "kind: Predictor\napiVersion: serving.kserve.io/v1alpha1\nmetadata: {name: a}\n"
            "spec: {modelType: {name: x}, path: p}\n---\n"
            "kind: Deployment\napiVersion: apps/v1\n",
            1,
            "kind",
            "Deployment",
            id="unknown-kind",
        ),
        pytest.param(
            "kind: InferenceService\napiVersion: serving.kserve.io/v1alpha1\n"
            "metadata: {name: a}\nspec: {predictor: {}}\n",
            0,
            "apiVersion",
            "v1beta1",
            id="wrong-api-version",
        ),
        pytest.param(
            "---\n---\nkind: Predictor\napiVersion: serving.kserve.io/v1alpha1\n"
            "metadata: {name: a}\nspec: {modelType: {name: x, version: 1}}\n",
            1,
            "spec.modelType.version",
            "quote",
            id="unquoted-version",
        ),
        pytest.param(
            "kind: Predictor\napiVersion: serving.kserve.io/v1alpha1\n"
            "metadata: {name: Bad_Name}\nspec: {}\n",
            0,
            "metadata.name",
            "RFC 1123",
            id="bad-name",
        ),
        pytest.param(
            "kind: ServingRuntime\napiVersion: serving.kserve.io/v1alpha1\n"
            "metadata: {name: rt}\nspec: {supportedModelFormats: [{name: a, priority: 0}]}\n",
            0,
            "spec.supportedModelFormats[0].priority",
            "greater than or equal to 1",
            id="priority-zero",
        ),
        pytest.param(
            "apiVersion: v1\nkind: List\nitems:\n- kind: Predictor\n"
            "  apiVersion: serving.kserve.io/v1alpha1\n  spec: {}\n",
            0,
            "items[0].metadata",
            "required",
            id="list-item",
        ),
        pytest.param("a: [1, 2\n", 0, "", "not valid YAML (line", id="bad-yaml"),
        pytest.param("- 1\n- 2\n", 0, "", "mapping", id="not-a-mapping"),
    ],
)
def test_errors_name_the_document_and_field(
    text: str, document: int, field: str, words: str
) -> None:
    with pytest.raises(InvalidResourceError) as caught:
        load_documents(text)
    error = caught.value
    assert isinstance(error, InvalidRequestError)
    assert error.document == document
    assert error.field == field
    assert words in str(error)
    assert str(error).startswith(f"document {document}")


def test_empty_text_is_no_resources() -> None:
    assert load_documents("") == []
    assert load_documents("---\n# nothing\n---\n") == []


_SECRET = "S3CR3Tvalue"


@pytest.mark.parametrize(
    ("block", "field"),
    [
        (
            f"model: {{modelFormat: {{name: sklearn}}, storageUri: 's3://K:{_SECRET}@b/m'}}",
            "spec.predictor.model.storageUri",
        ),
        (
            f"sklearn: {{storageUri: 'https://h.test/m?X-Amz-Signature={_SECRET}'}}",
            "spec.predictor.sklearn.storageUri",
        ),
        (
            "model: {modelFormat: {name: sklearn}, storage: "
            f"{{key: k, path: 'https://h.test/m#access_token={_SECRET}'}}}}",
            "spec.predictor.model.storage.path",
        ),
        (
            "model: {modelFormat: {name: sklearn}, storage: "
            f"{{path: m, parameters: {{type: http, url: 'https://u:{_SECRET}@h.test/m'}}}}}}",
            "spec.predictor.model.storage.parameters.url",
        ),
    ],
)
def test_a_location_carrying_a_credential_is_refused_when_parsed(block: str, field: str) -> None:
    text = (
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n"
        "metadata: {name: x, annotations: {serving.kserve.io/deploymentMode: ModelMesh}}\n"
        f"spec: {{predictor: {{{block}}}}}\n"
    )
    with pytest.raises(InvalidResourceError) as info:
        load_documents(text)
    assert info.value.field == field
    assert "credential" in str(info.value) or "fragment" in str(info.value)
    assert _SECRET not in str(info.value)


def test_a_predictor_path_carrying_a_credential_is_refused_when_parsed() -> None:
    text = (
        "apiVersion: serving.kserve.io/v1alpha1\nkind: Predictor\nmetadata: {name: p}\n"
        f"spec: {{modelType: {{name: sklearn}}, path: 'https://u:{_SECRET}@h.test/m'}}\n"
    )
    with pytest.raises(InvalidResourceError, match="user credentials") as info:
        load_documents(text)
    assert info.value.field == "spec.path"
    assert _SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, {}),
        ({"serving.meshserve.io/maxBatchSize": " 16 "}, {"max_batch_size": 16}),
        ({"serving.meshserve.io/maxBatchDelayMs": "2.5"}, {"max_batch_delay_ms": 2.5}),
    ],
)
def test_batching_annotations_become_model_key_fields(
    annotations: dict[str, str], expected: dict[str, float]
) -> None:
    assert control.batch_overrides(annotations) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("maxBatchSize", "0"),
        ("maxBatchSize", "2.5"),
        ("maxBatchDelayMs", "-1"),
        ("maxBatchDelayMs", "nan"),
        ("maxBatchDelayMs", "5000"),
    ],
)
def test_batching_annotations_out_of_range_are_refused_naming_them(name: str, value: str) -> None:
    annotation = f"serving.meshserve.io/{name}"
    with pytest.raises(InvalidResourceError) as caught:
        control.batch_overrides({annotation: value})
    assert caught.value.field == f"metadata.annotations[{annotation}]"
