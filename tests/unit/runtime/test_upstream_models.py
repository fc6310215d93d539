"""ModelMesh Serving's example models, as stored upstream, load and answer
as upstream's runtimes (MLServer 1.7, Triton) answered them: a client that
reads ``outputs[0]`` gets the same name, datatype and values.

MLServer's xgboost runtime loads a booster file as ``XGBRegressor``, whose
``predict`` is the booster's output (FP32 probabilities for
``binary:logistic``); its lightgbm runtime answers ``Booster.predict``
(FP64); its sklearn runtime answers ``predict`` in the datatype numpy gives
the estimator's prediction (its NumpyCodec maps the dtype one to one).
"""

from __future__ import annotations

import pathlib
import pickle
from typing import Any

import numpy as np
import pytest

from meshserve.errors import PickleRefusedError
from meshserve.protocol.datatypes import Datatype, datatype_of
from meshserve.protocol.inference import Tensor, TensorMetadata
from meshserve.runtime import _formats
from tests import _upstream_models as upstream

# As upstream's client sends a mushroom: input "predict", FP32 [1, 126].
MUSHROOM_INPUT = "predict"


def _load(model_type: str, path: pathlib.Path) -> _formats.LoadedModel:
    artifact = _formats.find_artifact(model_type=model_type, model_path=path)
    return _formats.load_model(artifact, allow_pickle=False)


def _first_output(model: _formats.LoadedModel, tensor: Tensor) -> Tensor:
    return model.predict([tensor])[0]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A storage root laid out as upstream's example models bucket."""
    return tmp_path_factory.mktemp("modelmesh-example-models")


def test_xgboost_mushroom_booster_answers_fp32_probabilities(storage: pathlib.Path) -> None:
    path = upstream.xgboost_mushroom(storage / "xgboost-mushroom")
    rows = upstream.mushroom_rows(7, seed=1)
    for model_path in (path, path.parent):
        model = _load("xgboost", model_path)
        assert model.metadata_inputs == (
            TensorMetadata("input-0", Datatype.FP32, (-1, upstream.MUSHROOM_FEATURES)),
        )
        assert model.metadata_outputs[0] == TensorMetadata("predict", Datatype.FP32, (-1,))
        first = _first_output(model, Tensor(MUSHROOM_INPUT, Datatype.FP32, rows))
        assert (first.name, first.datatype) == ("predict", Datatype.FP32)
        assert first.data.dtype == np.float32
        expected = upstream.xgboost_predict(path, rows)
        np.testing.assert_allclose(first.data, expected, rtol=1e-6)
        # Probabilities, not class indices: a client rounding outputs[0] to
        # 0.1 (as upstream's tests do) sees both classes' probabilities.
        assert 0.0 < float(first.data.min()) < 0.5 < float(first.data.max()) < 1.0


def test_xgboost_classifier_file_keeps_class_indices(tmp_path: pathlib.Path) -> None:
    """A file XGBClassifier saved is loaded as one by MLServer too: INT64 labels."""
    import xgboost

    rows = upstream.mushroom_rows(60, seed=2)
    labels = (rows[:, 3] > 0.5).astype(np.int64)
    classifier = xgboost.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1).fit(rows, labels)
    classifier.save_model(tmp_path / "model.json")
    first = _first_output(_load("xgboost", tmp_path), Tensor("x", Datatype.FP32, rows))
    assert (first.name, first.datatype) == ("predict", Datatype.INT64)
    np.testing.assert_array_equal(first.data, classifier.predict(rows))


def test_lightgbm_mushroom_bst_loads_and_answers_fp64(storage: pathlib.Path) -> None:
    path = upstream.lightgbm_mushroom(storage / "lightgbm-mushroom")
    assert path.name == "mushroom.bst"
    rows = upstream.mushroom_rows(7, seed=3)
    for model_path in (path, path.parent):
        artifact = _formats.find_artifact(model_type="lightgbm", model_path=model_path)
        assert (artifact.path, artifact.format) == (path, _formats.ModelFormat.LIGHTGBM_TXT)
        model = _formats.load_model(artifact, allow_pickle=False)
        assert model.metadata_outputs[0] == TensorMetadata("predict", Datatype.FP64, (-1,))
        first = _first_output(model, Tensor(MUSHROOM_INPUT, Datatype.FP32, rows))
        assert (first.name, first.datatype) == ("predict", Datatype.FP64)
        assert first.data.dtype == np.float64
        np.testing.assert_array_equal(first.data, upstream.lightgbm_predict(path, rows))


@pytest.mark.parametrize("config", [True, False], ids=["config.pbtxt", "versions-only"])
def test_onnx_mnist_in_triton_layout_serves_its_highest_version(
    tmp_path: pathlib.Path, config: bool
) -> None:
    # 10 is the highest version, though "9" sorts after "10" as text.
    latest = upstream.onnx_mnist_triton(tmp_path / "mnist", config=config, versions=(1, 9, 10))
    images = upstream.mnist_images(3)
    model = _load("onnx", tmp_path / "mnist")
    assert model.metadata_inputs == (
        TensorMetadata(upstream.MNIST_INPUT, Datatype.FP32, (-1, 1, 28, 28)),
    )
    assert model.metadata_outputs == (
        TensorMetadata(upstream.MNIST_OUTPUT, Datatype.FP32, (-1, 10)),
    )
    first = _first_output(model, Tensor(upstream.MNIST_INPUT, Datatype.FP32, images))
    assert (first.name, first.datatype) == (upstream.MNIST_OUTPUT, Datatype.FP32)
    np.testing.assert_allclose(first.data, upstream.onnx_predict(latest, images), rtol=1e-6)
    older = upstream.onnx_predict(tmp_path / "mnist" / "9" / "model.onnx", images)
    assert not np.allclose(first.data, older)


def test_onnx_mnist_single_version_without_config(tmp_path: pathlib.Path) -> None:
    """``<model>/1/model.onnx`` and nothing else."""
    path = upstream.onnx_mnist_triton(tmp_path / "onnx-mnist", config=False)
    artifact = _formats.find_artifact(model_type="onnx", model_path=tmp_path / "onnx-mnist")
    assert artifact.path == path
    images = upstream.mnist_images(2, seed=5)
    first = _first_output(
        _formats.load_model(artifact, allow_pickle=False),
        Tensor(upstream.MNIST_INPUT, Datatype.FP32, images),
    )
    np.testing.assert_allclose(first.data, upstream.onnx_predict(path, images), rtol=1e-6)


def test_onnx_mnist_plain_file(tmp_path: pathlib.Path) -> None:
    """Upstream's ``onnx/mnist.onnx``: one file, named as it likes."""
    source = upstream.onnx_mnist_triton(tmp_path / "triton", config=False)
    plain = tmp_path / "onnx" / "mnist.onnx"
    plain.parent.mkdir()
    plain.write_bytes(source.read_bytes())
    images = upstream.mnist_images(1)
    first = _first_output(_load("onnx", plain), Tensor(upstream.MNIST_INPUT, Datatype.FP32, images))
    np.testing.assert_allclose(first.data, upstream.onnx_predict(plain, images), rtol=1e-6)


def _fit(estimator: Any, labels: np.ndarray) -> Any:
    rows = upstream.mushroom_rows(len(labels), seed=6).astype(np.float64)
    return estimator.fit(rows, labels)


@pytest.mark.parametrize(
    ("estimator", "labels"),
    [
        ("forest", np.array([0, 1, 2] * 10, dtype=np.int64)),
        ("forest", np.array([0, 1, 2] * 10, dtype=np.int32)),
        ("forest", np.array([3, 7] * 15, dtype=np.uint8)),
        ("forest", np.array([1.0, 2.0] * 15, dtype=np.float32)),
        ("forest", np.array([True, False] * 15)),
        ("forest", np.array(["edible", "poisonous"] * 15)),
        ("linear", np.linspace(0.0, 1.0, 30)),
    ],
    ids=["int64", "int32", "uint8", "float32", "bool", "str", "regressor"],
)
def test_sklearn_predict_has_the_estimators_own_datatype(
    tmp_path: pathlib.Path, estimator: str, labels: np.ndarray
) -> None:
    """MLServer's sklearn runtime encodes ``predict()``'s array as it is:
    INT32 labels answer INT32, strings BYTES, a regressor FP64."""
    import skops.io
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LinearRegression

    fitted = _fit(
        RandomForestClassifier(n_estimators=3, random_state=0)
        if estimator == "forest"
        else LinearRegression(),
        labels,
    )
    skops.io.dump(fitted, tmp_path / "model.skops")
    rows = upstream.mushroom_rows(5, seed=7)
    model = _load("sklearn", tmp_path)
    first = _first_output(model, Tensor("predict", Datatype.FP32, rows))
    expected = fitted.predict(rows.astype(np.float64))
    assert first.name == "predict"
    assert first.datatype is datatype_of(expected)
    assert model.metadata_outputs[0].datatype is first.datatype
    if first.datatype is Datatype.BYTES:
        assert first.data.tolist() == [label.encode() for label in expected]
    else:
        np.testing.assert_array_equal(first.data, expected)


def test_pickle_refusal_says_what_to_change_in_the_resource(tmp_path: pathlib.Path) -> None:
    """A joblib model on the built-in runtime: the message names the field
    and the runtime to put there (the names the controller ships)."""
    from meshserve.controller import MLSERVER_RUNTIME, PICKLE_RUNTIME

    path = tmp_path / "model.joblib"
    path.write_bytes(pickle.dumps({"not": "loaded"}))
    with pytest.raises(PickleRefusedError) as info:
        _load("sklearn", tmp_path)
    message = str(info.value)
    assert f"InferenceService spec.predictor.model.runtime: {PICKLE_RUNTIME}" in message
    assert f"Predictor spec.runtime.name: {PICKLE_RUNTIME}" in message
    assert MLSERVER_RUNTIME in message
    assert "--allow-pickle" in message
    assert "skops.io.dump" in message
