"""Model ids, vmodel ids and type labels, as ModelMesh Serving derives them."""

from __future__ import annotations

import pathlib
import re

import pytest

from meshserve.errors import ForeignResourceError
from meshserve.resources import (
    InferenceService,
    Predictor,
    go_json,
    load_documents,
    model_names,
    model_target,
    parse_resource,
)

DATA = pathlib.Path(__file__).parents[1] / "data" / "resources"


def _one(name: str) -> InferenceService | Predictor:
    [resource] = load_documents((DATA / name).read_text())
    assert isinstance(resource, InferenceService | Predictor)
    return resource


def _isvc(model: dict[str, object], name: str = "m") -> InferenceService:
    resource = parse_resource(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": name,
                "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
            },
            "spec": {"predictor": {"model": model}},
        }
    )
    assert isinstance(resource, InferenceService)
    return resource


def test_quickstart_isvc_gets_modelmesh_servings_published_model_id() -> None:
    # ModelMesh Serving's quickstart shows this id in the inference response.
    names = model_names(_one("isvc-sklearn-mnist.yaml"))
    assert names.model_id == "example-sklearn-isvc__isvc-3642375d03"
    assert names.vmodel_id == "example-sklearn-isvc"
    assert names.owner == "isvc"
    assert names.type_label == "mt:sklearn"
    assert names.registry_scope == "mm_ns/default"


def test_predictor_gets_modelmesh_servings_published_model_id() -> None:
    names = model_names(_one("predictor-sklearn.yaml"))
    assert names.model_id == "example-sklearn-isvc__ksp-7702c1b55a"
    assert names.owner == "ksp"


def test_the_id_follows_the_spec_not_the_name() -> None:
    spec: dict[str, object] = {"modelFormat": {"name": "onnx"}, "storageUri": "s3://b/m.onnx"}
    a, b = model_names(_isvc(spec, "a")), model_names(_isvc(spec, "b"))
    assert a.model_id.split("__")[1] == b.model_id.split("__")[1]
    changed = model_names(_isvc({**spec, "storageUri": "s3://b/m2.onnx"}, "a"))
    assert changed.model_id != a.model_id
    assert re.fullmatch(r"a__isvc-[0-9a-f]{10}", changed.model_id)


def test_fields_meshserve_ignores_do_not_change_the_id() -> None:
    spec: dict[str, object] = {"modelFormat": {"name": "onnx"}, "storageUri": "s3://b/m.onnx"}
    plain = model_names(_isvc(spec)).model_id
    decorated = model_names(_isvc({**spec, "runtimeVersion": "1.2", "colour": "red"})).model_id
    assert plain == decorated


def test_storage_uri_and_storage_spec_convert_like_modelmesh_serving() -> None:
    target = model_target(_one("isvc-storage-spec.yaml"))
    assert target.runtime == "mlserver-1.x"
    assert (target.path, target.storage_key) == ("sklearn/mnist-svm.joblib", "localMinIO")
    assert target.storage_params == {"bucket": "modelmesh-example-models"}
    assert list(target.predictor_spec) == ["modelType", "path", "storage", "runtime"]

    old = model_target(_one("isvc-old-framework.yaml"))
    assert old.model_format.name == "tensorflow"
    assert old.runtime == "triton-2.x"
    assert old.path == "tensorflow/mnist.savedmodel"
    assert old.storage_params == {"type": "s3", "bucket": "modelmesh-example-models"}


@pytest.mark.parametrize(
    ("uri", "path", "params"),
    [
        ("pvc://claim/dir/model.onnx", "dir/model.onnx", {"type": "pvc", "name": "claim"}),
        ("gs://bkt/m", "m", {"type": "gcs", "bucket": "bkt"}),
        (
            "https://acct.blob.core.windows.net/ctr/a/b.onnx",
            "a/b.onnx",
            {"type": "azure", "container": "ctr", "account_name": "acct"},
        ),
        ("https://example.com/m.onnx", "", {"type": "http", "url": "https://example.com/m.onnx"}),
    ],
)
def test_storage_uri_schemes(uri: str, path: str, params: dict[str, str]) -> None:
    target = model_target(_isvc({"modelFormat": {"name": "onnx"}, "storageUri": uri}))
    assert (target.path, target.storage_params) == (path, params)


def test_uri_parameters_override_storage_parameters() -> None:
    target = model_target(
        _isvc(
            {
                "modelFormat": {"name": "onnx"},
                "storageUri": "s3://real/m",
                "storage": {"key": "k", "parameters": {"bucket": "other", "region": "eu"}},
            }
        )
    )
    assert target.storage_params == {"bucket": "real", "region": "eu", "type": "s3"}
    assert target.storage_key == "k"
    # Go writes map keys sorted.
    assert go_json(target.predictor_spec["storage"]["parameters"]) == (
        '{"bucket":"real","region":"eu","type":"s3"}'
    )


@pytest.mark.parametrize(
    ("model", "label"),
    [
        ({"modelFormat": {"name": "sklearn", "version": "0"}}, "mt:sklearn:0"),
        ({"modelFormat": {"name": "onnx"}, "protocolVersion": "grpc-v2"}, "mt:onnx|pv:grpc-v2"),
        ({"modelFormat": {"name": "onnx"}, "runtime": "ovms-1.x"}, "rt:ovms-1.x"),
    ],
)
def test_type_labels(model: dict[str, object], label: str) -> None:
    names = model_names(_isvc({**model, "storageUri": "s3://b/p"}))
    assert names.type_label == label


def test_go_json_escapes_like_encoding_json() -> None:
    assert go_json({"a": "<&>", "b": "\u2028\b\n", "c": [True, None, 3]}) == (
        '{"a":"\\u003c\\u0026\\u003e","b":"\\u2028\\u0008\\n","c":[true,null,3]}'
    )


def test_namespace_scopes_the_registry_not_the_ids() -> None:
    [isvc] = load_documents((DATA / "isvc-storage-spec.yaml").read_text())
    assert isinstance(isvc, InferenceService)
    names = model_names(isvc)
    assert names.namespace == "team-a"
    assert names.vmodel_id == "example-sklearn-isvc"
    assert names.registry_scope == "mm_ns/team-a"


def test_a_foreign_isvc_has_no_names() -> None:
    resource = parse_resource(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": {"predictor": {"sklearn": {"storageUri": "s3://b/p"}}},
        }
    )
    assert isinstance(resource, InferenceService)
    with pytest.raises(ForeignResourceError):
        model_names(resource)
