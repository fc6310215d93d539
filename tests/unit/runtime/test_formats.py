"""The built-in runtime's model formats: detection, loading, predicting, errors."""

from __future__ import annotations

import importlib.util
import json
import operator
import pathlib
import re
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from meshserve.errors import (
    CorruptModelError,
    InferenceError,
    InputRejectedError,
    InvalidRequestError,
    LoadNotAttemptedError,
    PickleRefusedError,
    TensorError,
    UnsupportedModelError,
)
from meshserve.protocol.datatypes import Datatype, numpy_dtype
from meshserve.protocol.inference import Tensor, TensorMetadata
from meshserve.runtime import _formats
from meshserve.runtime._formats import _sizing
from meshserve.runtime._formats._library_errors import (
    MAX_LIBRARY_MESSAGE,
    library_message,
    predict_failure,
)

EXAMPLES = pathlib.Path(__file__).parents[3] / "examples"
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]])

# name in make_models -> (model type, format)
EXAMPLE_MODELS = {
    "sklearn-skops": ("sklearn", _formats.ModelFormat.SKOPS),
    "sklearn-joblib": ("sklearn", _formats.ModelFormat.PICKLE),
    "xgboost-json": ("xgboost", _formats.ModelFormat.XGBOOST_JSON),
    "xgboost-ubj": ("xgboost", _formats.ModelFormat.XGBOOST_UBJ),
    "lightgbm": ("lightgbm", _formats.ModelFormat.LIGHTGBM_TXT),
    "onnx": ("onnx", _formats.ModelFormat.ONNX),
}


def _import_file(name: str, path: pathlib.Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def examples() -> ModuleType:
    return _import_file("meshserve_example_models", EXAMPLES / "make_models.py")


@pytest.fixture(scope="module")
def models(
    examples: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pathlib.Path]:
    paths: dict[str, pathlib.Path] = examples.make_models(tmp_path_factory.mktemp("models"))
    return paths


def _load(
    model_type: str, path: pathlib.Path, *, allow_pickle: bool = True
) -> _formats.LoadedModel:
    artifact = _formats.find_artifact(model_type=model_type, model_path=path)
    return _formats.load_model(artifact, allow_pickle=allow_pickle)


def _tensor(name: str, datatype: Datatype, data: Any) -> Tensor:
    return Tensor(name, datatype, np.asarray(data, dtype=numpy_dtype(datatype)))


def _rows(datatype: Datatype = Datatype.FP32, name: str = "input-0") -> Tensor:
    return _tensor(name, datatype, ROWS)


def _classes(first: Tensor) -> np.ndarray:
    """The class of each row from a first output of labels or (LightGBM's) probabilities."""
    return first.data.argmax(axis=1) if first.data.ndim == 2 else first.data


def _input_for(model: _formats.LoadedModel) -> Tensor:
    meta = model.metadata_inputs[0]
    return _rows(meta.datatype, meta.name)


# --- what each library itself predicts, keyed like our outputs --------------


def _sklearn_reference(path: pathlib.Path) -> dict[str, np.ndarray]:
    import joblib

    model = joblib.load(path.parent.parent / "sklearn-joblib" / "model.joblib")
    return {"predict": model.predict(ROWS), "predict_proba": model.predict_proba(ROWS)}


def _xgboost_reference(path: pathlib.Path) -> dict[str, np.ndarray]:
    import xgboost

    model = xgboost.XGBClassifier()
    model.load_model(path)
    x = ROWS.astype(np.float32)
    return {"predict": model.predict(x), "predict_proba": model.predict_proba(x)}


def _lightgbm_reference(path: pathlib.Path) -> dict[str, np.ndarray]:
    import lightgbm

    proba = lightgbm.Booster(model_file=str(path)).predict(ROWS)
    return {"predict": proba, "predict_proba": proba}


def _onnx_reference(path: pathlib.Path) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {"float_input": ROWS.astype(np.float32)})
    return {"label": label, "probabilities": proba}


REFERENCES: dict[str, Callable[[pathlib.Path], dict[str, np.ndarray]]] = {
    "sklearn-skops": _sklearn_reference,
    "sklearn-joblib": _sklearn_reference,
    "xgboost-json": _xgboost_reference,
    "xgboost-ubj": _xgboost_reference,
    "lightgbm": _lightgbm_reference,
    "onnx": _onnx_reference,
}

FP64_PROBA = TensorMetadata("predict_proba", Datatype.FP64, (-1, 3))
FP32_PROBA = TensorMetadata("predict_proba", Datatype.FP32, (-1, 3))
LABEL = TensorMetadata("predict", Datatype.INT64, (-1,))
EXPECTED_METADATA = {
    "sklearn-skops": ("sklearn", Datatype.FP64, (LABEL, FP64_PROBA)),
    "sklearn-joblib": ("sklearn", Datatype.FP64, (LABEL, FP64_PROBA)),
    "xgboost-json": ("xgboost", Datatype.FP32, (LABEL, FP32_PROBA)),
    "xgboost-ubj": ("xgboost", Datatype.FP32, (LABEL, FP32_PROBA)),
    "lightgbm": (
        "lightgbm",
        Datatype.FP32,
        (TensorMetadata("predict", Datatype.FP64, (-1, 3)), FP64_PROBA),
    ),
    "onnx": (
        "onnxruntime_onnx",
        Datatype.FP32,
        (
            TensorMetadata("label", Datatype.INT64, (-1,)),
            TensorMetadata("probabilities", Datatype.FP32, (-1, 3)),
        ),
    ),
}


@pytest.mark.parametrize("name", list(EXAMPLE_MODELS))
def test_example_model_predicts_like_its_library(
    models: dict[str, pathlib.Path], name: str
) -> None:
    model_type, model_format = EXAMPLE_MODELS[name]
    artifact = _formats.find_artifact(model_type=model_type, model_path=models[name].parent)
    assert artifact.path == models[name]
    assert artifact.format is model_format
    assert artifact.disk_size == models[name].stat().st_size

    model = _formats.load_model(artifact, allow_pickle=True)
    outputs = model.predict([_input_for(model)])

    expected = REFERENCES[name](models[name])
    assert [t.name for t in outputs] == list(expected)
    for tensor in outputs:
        np.testing.assert_allclose(tensor.data, expected[tensor.name], rtol=1e-6, atol=1e-7)
        assert tensor.data.dtype == numpy_dtype(tensor.datatype)
    # The three iris rows are one of each species.
    np.testing.assert_array_equal(_classes(outputs[0]), [0, 1, 2])


@pytest.mark.parametrize("name", list(EXAMPLE_MODELS))
def test_example_model_metadata(models: dict[str, pathlib.Path], name: str) -> None:
    model = _load(EXAMPLE_MODELS[name][0], models[name])
    platform, input_datatype, outputs = EXPECTED_METADATA[name]
    input_name = "float_input" if name == "onnx" else "input-0"
    assert model.platform == platform
    assert model.metadata_inputs == (TensorMetadata(input_name, input_datatype, (-1, 4)),)
    assert model.metadata_outputs == outputs
    assert model.size_bytes > 0


@pytest.mark.parametrize("name", list(EXAMPLE_MODELS))
def test_committed_request_body_fits_its_model(models: dict[str, pathlib.Path], name: str) -> None:
    body = json.loads((EXAMPLES / "requests" / f"{name}.json").read_text())
    (spec,) = body["inputs"]
    datatype = Datatype(spec["datatype"])
    data = np.asarray(spec["data"], dtype=numpy_dtype(datatype)).reshape(spec["shape"])
    model = _load(EXAMPLE_MODELS[name][0], models[name])
    assert spec["name"] == model.metadata_inputs[0].name
    outputs = model.predict([Tensor(spec["name"], datatype, data)])
    np.testing.assert_array_equal(_classes(outputs[0]), [0, 1, 2])


def test_one_row_as_a_vector_is_one_row(models: dict[str, pathlib.Path]) -> None:
    model = _load("xgboost", models["xgboost-ubj"])
    (label, proba) = model.predict([_tensor("row", Datatype.FP64, ROWS[2])])
    assert label.shape == (1,)
    assert proba.shape == (1, 3)
    assert int(label.data[0]) == 2


def test_requested_outputs_only(models: dict[str, pathlib.Path]) -> None:
    for name, output in (("lightgbm", "predict_proba"), ("onnx", "probabilities")):
        model = _load(EXAMPLE_MODELS[name][0], models[name])
        (tensor,) = model.predict([_input_for(model)], outputs=[output])
        assert tensor.name == output
        assert tensor.shape == (3, 3)


def test_integer_inputs_are_converted(models: dict[str, pathlib.Path]) -> None:
    model = _load("sklearn", models["sklearn-skops"])
    (label,) = model.predict([_tensor("x", Datatype.INT32, ROWS.round())], outputs=["predict"])
    assert label.datatype is Datatype.INT64
    assert label.shape == (3,)


# --- detection -------------------------------------------------------------


def test_directory_ignores_unrelated_files(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    model_path = tmp_path / "forest.skops"
    model_path.write_bytes(models["sklearn-skops"].read_bytes())
    (tmp_path / "README.md").write_text("iris forest")
    (tmp_path / "model-settings.json").write_text("{}")
    (tmp_path / ".hidden.joblib").write_bytes(b"x")
    (tmp_path / "old.joblib").mkdir()
    artifact = _formats.find_artifact(model_type="SKLearn", model_path=tmp_path)
    assert artifact.path == model_path
    assert artifact.model_type == "sklearn"


@pytest.mark.parametrize(
    ("name", "decoy"),
    [("lightgbm", "README.txt"), ("xgboost-json", "metadata.json")],
)
def test_shared_extension_decided_by_content(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path, name: str, decoy: str
) -> None:
    model_path = tmp_path / models[name].name
    model_path.write_bytes(models[name].read_bytes())
    (tmp_path / decoy).write_text('{"owner": "iris team"}\n')
    artifact = _formats.find_artifact(model_type=EXAMPLE_MODELS[name][0], model_path=tmp_path)
    assert artifact.path == model_path


def test_ambiguous_directory(models: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    for file in ("a.skops", "b.joblib"):
        (tmp_path / file).write_bytes(models["sklearn-skops"].read_bytes())
    with pytest.raises(UnsupportedModelError, match=r"holds 2 candidate model files") as info:
        _formats.find_artifact(model_type="sklearn", model_path=tmp_path)
    # A directory's contents are never listed: the path may be anyone's.
    assert "a.skops" not in str(info.value)


def test_empty_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(UnsupportedModelError, match=r"no file ending in \.onnx") as info:
        _formats.find_artifact(model_type="onnx", model_path=tmp_path)
    assert "notes.md" not in str(info.value)


def test_unknown_type(models: dict[str, pathlib.Path]) -> None:
    with pytest.raises(UnsupportedModelError, match="'tensorflow' is not supported") as info:
        _formats.find_artifact(model_type="tensorflow", model_path=models["onnx"])
    assert str(models["onnx"]) in str(info.value)


def test_missing_path(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(
        UnsupportedModelError, match=r"xgboost model path .* does not exist"
    ) as info:
        _formats.find_artifact(model_type="xgboost", model_path=missing)
    assert str(missing) in str(info.value)


def test_file_of_another_type(models: dict[str, pathlib.Path]) -> None:
    with pytest.raises(UnsupportedModelError, match=r"not a xgboost model file.*JSON or UBJSON"):
        _formats.find_artifact(model_type="xgboost", model_path=models["onnx"])


@pytest.mark.parametrize("file_name", ["mushroom.bst", "model", "weights.dat", "model.txt"])
def test_lightgbm_text_is_known_by_content_under_any_name(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path, file_name: str
) -> None:
    path = tmp_path / file_name
    path.write_bytes(models["lightgbm"].read_bytes())
    (tmp_path / "model-settings.json").write_text('{"name": "mushroom"}')
    (tmp_path / "README.md").write_text("tree\nnot a model\n")
    for model_path in (path, tmp_path):
        artifact = _formats.find_artifact(model_type="lightgbm", model_path=model_path)
        assert (artifact.path, artifact.format) == (path, _formats.ModelFormat.LIGHTGBM_TXT)
    model = _formats.load_model(artifact, allow_pickle=False)
    np.testing.assert_array_equal(_classes(model.predict([_rows()])[0]), [0, 1, 2])


@pytest.mark.parametrize("file_name", ["model.bst", "model.txt", "model.pkl"])
@pytest.mark.parametrize("model_type", ["lightgbm", "xgboost"])
def test_a_pickled_booster_is_refused_before_its_library_sees_it(
    tmp_path: pathlib.Path, model_type: str, file_name: str
) -> None:
    import pickle

    path = tmp_path / file_name
    path.write_bytes(pickle.dumps({"booster": _FILE_SECRET}))
    with pytest.raises(UnsupportedModelError, match=r"is a pickle.*booster\.save_model") as info:
        _formats.find_artifact(model_type=model_type, model_path=path)
    assert _FILE_SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("model_type", "shape"),
    [("lightgbm", "starts with a 'tree' line"), ("xgboost", "JSON or UBJSON")],
)
def test_a_binary_file_of_another_name_is_refused(
    tmp_path: pathlib.Path, model_type: str, shape: str
) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"binf\x00\x01SECRET" * 8)
    with pytest.raises(UnsupportedModelError, match=re.escape(shape)) as info:
        _formats.find_artifact(model_type=model_type, model_path=path)
    assert "SECRET" not in str(info.value)
    with pytest.raises(UnsupportedModelError, match=r"no file ending in .* nor any other"):
        _formats.find_artifact(model_type=model_type, model_path=tmp_path)


@pytest.mark.parametrize("name", ["xgboost-json", "xgboost-ubj"])
def test_xgboost_bst_is_read_by_content(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path, name: str
) -> None:
    """XGBoost 2.1+ writes UBJSON to model.bst; MLServer looks for that name."""
    path = tmp_path / "model.bst"
    path.write_bytes(models[name].read_bytes())
    artifact = _formats.find_artifact(model_type="xgboost", model_path=tmp_path)
    assert (artifact.path, artifact.format) == (path, EXAMPLE_MODELS[name][1])
    model = _formats.load_model(artifact, allow_pickle=False)
    expected = _xgboost_reference(models[name])
    np.testing.assert_array_equal(model.predict([_rows()])[0].data, expected["predict"])


def test_triton_layout_serves_the_highest_numbered_version(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\n')
    for version in ("2", "9", "10"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "model.onnx").write_bytes(models["onnx"].read_bytes())
    (tmp_path / "latest").mkdir()  # not a version
    artifact = _formats.find_artifact(model_type="onnx", model_path=tmp_path)
    assert artifact.path == tmp_path / "10" / "model.onnx"


def test_triton_config_names_the_model_file(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "config.pbtxt").write_text(
        'name: "iris"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "iris.onnx"\n'
    )
    (tmp_path / "1").mkdir()
    for file_name in ("iris.onnx", "other.onnx"):
        (tmp_path / "1" / file_name).write_bytes(models["onnx"].read_bytes())
    artifact = _formats.find_artifact(model_type="onnx", model_path=tmp_path)
    assert artifact.path == tmp_path / "1" / "iris.onnx"


def test_a_model_beside_version_directories_wins(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    (tmp_path / "model.onnx").write_bytes(models["onnx"].read_bytes())
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(models["onnx"].read_bytes())
    assert _formats.find_artifact(model_type="onnx", model_path=tmp_path).path == (
        tmp_path / "model.onnx"
    )


def test_triton_version_without_a_model(tmp_path: pathlib.Path) -> None:
    (tmp_path / "config.pbtxt").write_text('platform: "onnxruntime_onnx"\n')
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "notes-secret.txt").write_text("nothing")
    (tmp_path / "3" / "deeper").mkdir()
    with pytest.raises(
        UnsupportedModelError, match=r"highest version directory of onnx model directory"
    ) as info:
        _formats.find_artifact(model_type="onnx", model_path=tmp_path)
    assert "notes-secret" not in str(info.value)


# --- refusals and corrupt files --------------------------------------------


def test_pickle_refused_unless_allowed(models: dict[str, pathlib.Path]) -> None:
    with pytest.raises(PickleRefusedError) as info:
        _load("sklearn", models["sklearn-joblib"], allow_pickle=False)
    message = str(info.value)
    assert str(models["sklearn-joblib"]) in message
    assert "arbitrary code" in message
    assert "--allow-pickle" in message
    assert "spec.predictor.model.runtime: meshserve-pickle" in message
    assert ".skops" in message
    served = _load("sklearn", models["sklearn-joblib"], allow_pickle=True)
    np.testing.assert_array_equal(served.predict([_rows()])[0].data, [0, 1, 2])


def test_skops_untrusted_type_refused_until_trusted(tmp_path: pathlib.Path) -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = make_pipeline(
        FunctionTransformer(operator.neg), LogisticRegression(max_iter=500, random_state=0)
    ).fit(ROWS, [0, 1, 1])
    skops.io.dump(pipeline, tmp_path / "model.skops")
    artifact = _formats.find_artifact(model_type="sklearn", model_path=tmp_path)
    with pytest.raises(LoadNotAttemptedError, match=r"not trusted: _operator\.neg"):
        _formats.load_model(artifact, allow_pickle=False)
    model = _formats.load_model(artifact, allow_pickle=False, trusted_types=["_operator.neg"])
    np.testing.assert_array_equal(model.predict([_rows()])[0].data, pipeline.predict(ROWS))


@pytest.mark.parametrize("name", list(EXAMPLE_MODELS))
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path, name: str, damage: str
) -> None:
    original = models[name].read_bytes()
    content = original[: len(original) // 2] if damage == "truncated" else b"\x00garbage" * 64
    broken = tmp_path / models[name].name
    broken.write_bytes(content)
    model_type = EXAMPLE_MODELS[name][0]
    with pytest.raises(CorruptModelError) as info:
        _load(model_type, broken)
    message = str(info.value)
    assert message.startswith(f"{model_type} model {broken} could not be loaded: ")
    assert len(message) > len(f"{model_type} model {broken} could not be loaded: ")


_FILE_SECRET = "SECRETLINE-abc123"


@pytest.mark.parametrize(
    ("model_type", "name", "content"),
    [
        ("xgboost", "m.json", b'{"learner": {"x": SECRETLINE-abc123 root:x:0:0}}'),
        ("xgboost", "m.json", b"root:x:0:0:SECRETLINE-abc123\n"),
        ("xgboost", "m.ubj", b"{SECRETLINE-abc123"),
        ("lightgbm", "m.txt", b"tree\nSECRETLINE-abc123\n"),
        ("onnx", "m.onnx", b"SECRETLINE-abc123" * 10),
        ("sklearn", "m.skops", b"SECRETLINE-abc123"),
    ],
)
def test_a_broken_file_is_not_echoed_in_the_error(
    tmp_path: pathlib.Path, model_type: str, name: str, content: bytes
) -> None:
    """The attack: point a model at any file and read it back in the error.
    xgboost quotes the bytes around a parse error and appends a native stack
    trace with load addresses; neither may reach the caller."""
    broken = tmp_path / name
    broken.write_bytes(content)
    with pytest.raises(CorruptModelError) as info:
        _load(model_type, broken)
    message = str(info.value)
    assert _FILE_SECRET[:8] not in message
    assert "Stack trace" not in message and "[bt]" not in message
    assert not re.search(r"0x[0-9a-f]{6,}", message)
    assert "\n" not in message
    assert len(message) < len(str(broken)) + 400


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "[01:52:36] /src/j.cc:409: Unknown construct\n  : {SECRET\nStack trace:\n [bt] (0)",
            "Unknown construct",
        ),
        ("invalid load key, b'\\x80SECRET'.", "invalid load key, b'...'."),
        ("bad bytes \\x00\\x01\\x02 here", "bad bytes ... here"),
        ("at [0x7f3f5b71031e]", "at [0x...]"),
        ("x" * 1000, "x" * 237 + "..."),
        ("", "ValueError"),
    ],
)
def test_library_messages_keep_the_first_line_without_bytes_or_addresses(
    raw: str, shown: str
) -> None:
    assert library_message(ValueError(raw)) == shown


def test_truncated_lightgbm_never_reaches_lightgbm(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    # LightGBM 4.7 segfaults on these cuts (in the trees, and inside the
    # parameters after "end of trees"), so reaching it would kill the test run.
    original = models["lightgbm"].read_bytes()
    in_parameters = original.index(b"\nparameters:") + 40
    cuts = [len(original) * i // 12 for i in range(1, 12)] + [in_parameters]
    for cut in cuts:
        broken = tmp_path / "model.txt"
        broken.write_bytes(original[:cut])
        with pytest.raises(CorruptModelError, match=r"truncated|header"):
            _load("lightgbm", broken)


def test_truncated_ubjson_never_reaches_xgboost(
    models: dict[str, pathlib.Path], tmp_path: pathlib.Path
) -> None:
    # XGBoost 3.2 segfaulted on the cut at 21/24 of this model.
    original = models["xgboost-ubj"].read_bytes()
    for i in range(1, 24):
        broken = tmp_path / "model.ubj"
        broken.write_bytes(original[: len(original) * i // 24])
        with pytest.raises(CorruptModelError, match="truncated"):
            _load("xgboost", broken)


def test_ubjson_check(models: dict[str, pathlib.Path], tmp_path: pathlib.Path) -> None:
    from meshserve.runtime._formats import _ubjson

    _ubjson.check_ubjson(models["xgboost-ubj"])
    extra = tmp_path / "extra.ubj"
    extra.write_bytes(models["xgboost-ubj"].read_bytes() + b"Z")
    with pytest.raises(_ubjson.UBJSONError, match="1 stray bytes"):
        _ubjson.check_ubjson(extra)
    typed = tmp_path / "typed.ubj"
    # {"a": [$d#U 3 <12 bytes>]}, cut 4 bytes short
    typed.write_bytes(b"{U\x01a[$d#U\x03" + b"\x00" * 8)
    with pytest.raises(_ubjson.UBJSONError, match="12 bytes needed"):
        _ubjson.check_ubjson(typed)


def test_pickle_of_something_else_is_corrupt(tmp_path: pathlib.Path) -> None:
    import joblib

    joblib.dump({"weights": [1, 2]}, tmp_path / "model.pkl")
    with pytest.raises(CorruptModelError, match="has no predict method"):
        _load("sklearn", tmp_path)


def test_missing_library_names_the_extra(
    models: dict[str, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes the import fail as if lightgbm were absent.
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(UnsupportedModelError, match=r"pip install meshserve\[lightgbm\]"):
        _load("lightgbm", models["lightgbm"])


# --- bad requests ----------------------------------------------------------


@pytest.fixture(params=["sklearn-skops", "xgboost-ubj", "lightgbm"])
def tabular(request: pytest.FixtureRequest, models: dict[str, pathlib.Path]) -> Iterator[Any]:
    name = request.param
    yield _load(EXAMPLE_MODELS[name][0], models[name])


def test_wrong_feature_count(tabular: _formats.LoadedModel) -> None:
    with pytest.raises(TensorError, match="tensor 'features': expects 4 features, got 3"):
        tabular.predict([_tensor("features", Datatype.FP32, ROWS[:, :3])])


def test_bytes_input(tabular: _formats.LoadedModel) -> None:
    data = np.array([[b"a", b"b", b"c", b"d"]], dtype=object)
    with pytest.raises(TensorError, match="tensor 'words': BYTES input is not supported"):
        tabular.predict([Tensor("words", Datatype.BYTES, data)])


def test_wrong_rank(tabular: _formats.LoadedModel) -> None:
    with pytest.raises(TensorError, match=r"tensor 'cube': expects a 2-D tensor.*\[1, 3, 4\]"):
        tabular.predict([_tensor("cube", Datatype.FP32, ROWS[None, :, :])])


def test_more_than_one_input(tabular: _formats.LoadedModel) -> None:
    with pytest.raises(InvalidRequestError, match=r"exactly one input.*got 2 \('a', 'b'\)"):
        tabular.predict([_rows(name="a"), _rows(name="b")])


def test_unknown_output(tabular: _formats.LoadedModel) -> None:
    with pytest.raises(InvalidRequestError, match=r"unknown output.*'scores'") as info:
        tabular.predict([_rows()], outputs=["predict", "scores"])
    assert not isinstance(info.value, TensorError)
    assert "'predict_proba'" in str(info.value)


def test_a_library_refusing_the_input_is_the_callers_error(tmp_path: pathlib.Path) -> None:
    import skops.io
    from sklearn.linear_model import LogisticRegression

    skops.io.dump(LogisticRegression(max_iter=500).fit(ROWS, [0, 1, 1]), tmp_path / "m.skops")
    model = _load("sklearn", tmp_path)
    rows = ROWS.copy()
    rows[0, 0] = np.nan
    with pytest.raises(InputRejectedError, match=r"scikit-learn refused the input: .*NaN") as info:
        model.predict([_tensor("x", Datatype.FP64, rows)])
    # Both: INVALID_ARGUMENT / 400 on the wire, still an InferenceError to code.
    assert isinstance(info.value, InvalidRequestError)
    assert isinstance(info.value, InferenceError)
    with pytest.raises(InputRejectedError, match=r"scikit-learn refused the input: .*0 sample"):
        model.predict([_tensor("x", Datatype.FP64, np.zeros((0, ROWS.shape[1])))])


def test_a_library_message_is_bounded_and_memory_stays_an_internal_error() -> None:
    huge = predict_failure("lib", ValueError("x" * 100_000))
    assert isinstance(huge, InputRejectedError)
    assert len(str(huge)) < MAX_LIBRARY_MESSAGE + 100
    oom = predict_failure("lib", MemoryError())
    assert type(oom) is InferenceError
    assert "MemoryError" in str(oom)


def test_string_labels_are_bytes(tmp_path: pathlib.Path) -> None:
    import skops.io
    from sklearn.ensemble import RandomForestClassifier

    labels = np.array(["setosa", "versicolor", "virginica"])
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(ROWS, labels)
    skops.io.dump(forest, tmp_path / "model.skops")
    model = _load("sklearn", tmp_path)
    assert model.metadata_outputs[0] == TensorMetadata("predict", Datatype.BYTES, (-1,))
    (label,) = model.predict([_rows()], outputs=["predict"])
    assert label.datatype is Datatype.BYTES
    assert label.data.tolist() == [b"setosa", b"versicolor", b"virginica"]


def test_regressor_has_predict_only(tmp_path: pathlib.Path) -> None:
    import xgboost

    xgboost.XGBRegressor(n_estimators=3).fit(ROWS, [1.0, 2.0, 3.0]).save_model(
        tmp_path / "model.ubj"
    )
    model = _load("xgboost", tmp_path)
    assert model.metadata_outputs == (TensorMetadata("predict", Datatype.FP32, (-1,)),)
    (prediction,) = model.predict([_rows()])
    assert prediction.datatype is Datatype.FP32
    assert prediction.shape == (3,)


def test_binary_classifier_probabilities(tmp_path: pathlib.Path) -> None:
    import lightgbm

    x = np.tile(ROWS, (20, 1))
    y = np.tile([0, 1, 1], 20)
    gbm = lightgbm.LGBMClassifier(n_estimators=3, min_child_samples=2, verbose=-1).fit(x, y)
    gbm.booster_.save_model(tmp_path / "model.txt")
    model = _load("lightgbm", tmp_path)
    predict, proba = model.predict([_rows()])
    np.testing.assert_allclose(proba.data, gbm.predict_proba(ROWS))
    # predict is the booster's p(class 1), FP64, as MLServer gives it.
    assert predict.datatype is Datatype.FP64
    np.testing.assert_allclose(predict.data, gbm.predict_proba(ROWS)[:, 1])


# --- onnx ------------------------------------------------------------------


@pytest.fixture
def onnx_model(models: dict[str, pathlib.Path]) -> _formats.LoadedModel:
    return _load("onnx", models["onnx"])


def test_onnx_missing_input(onnx_model: _formats.LoadedModel) -> None:
    with pytest.raises(TensorError, match="tensor 'float_input': required input is missing"):
        onnx_model.predict([])


def test_onnx_unexpected_input(onnx_model: _formats.LoadedModel) -> None:
    with pytest.raises(TensorError, match=r"tensor 'input-0': unexpected input.*'float_input'"):
        onnx_model.predict([_rows()])


def test_onnx_wrong_datatype(onnx_model: _formats.LoadedModel) -> None:
    with pytest.raises(TensorError, match="tensor 'float_input': expects FP32, got FP64"):
        onnx_model.predict([_rows(Datatype.FP64, "float_input")])


def test_onnx_wrong_shape(onnx_model: _formats.LoadedModel) -> None:
    wrong = _tensor("float_input", Datatype.FP32, ROWS[:, :3])
    with pytest.raises(TensorError, match=r"tensor 'float_input': expects shape \[-1, 4\]"):
        onnx_model.predict([wrong])


def test_onnx_unknown_output(onnx_model: _formats.LoadedModel) -> None:
    with pytest.raises(InvalidRequestError, match=r"unknown output.*'predict'"):
        onnx_model.predict([_rows(name="float_input")], outputs=["predict"])


def test_onnx_zipmap_becomes_a_tensor(
    models: dict[str, pathlib.Path], examples: ModuleType, tmp_path: pathlib.Path
) -> None:
    import skops.io
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    forest = skops.io.load(
        models["sklearn-skops"], trusted=skops.io.get_untrusted_types(file=models["sklearn-skops"])
    )
    zipped = convert_sklearn(forest, initial_types=[("x", FloatTensorType([None, 4]))])
    (tmp_path / "model.onnx").write_bytes(zipped.SerializeToString())
    model = _load("onnx", tmp_path)
    assert model.metadata_outputs[1] == TensorMetadata(
        "output_probability", Datatype.FP32, (-1, -1)
    )
    label, proba = model.predict([_rows(name="x")])
    np.testing.assert_allclose(proba.data, forest.predict_proba(ROWS), atol=1e-6)
    np.testing.assert_array_equal(label.data, [0, 1, 2])


def test_onnx_string_tensors_round_trip(tmp_path: pathlib.Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "echo",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["N"])],
    )
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_proto.ir_version = 8
    onnx.save(model_proto, tmp_path / "echo.onnx")
    model = _load("onnx", tmp_path)
    assert model.metadata_inputs == (TensorMetadata("text", Datatype.BYTES, (-1,)),)
    data = np.array(["héllo".encode(), b"iris"], dtype=object)
    (same,) = model.predict([Tensor("text", Datatype.BYTES, data)])
    assert same.datatype is Datatype.BYTES
    assert same.data.tolist() == ["héllo".encode(), b"iris"]


# --- sizing ----------------------------------------------------------------


def test_reachable_bytes_counts_each_buffer_once() -> None:
    array = np.zeros(1000, dtype=np.float64)
    alone = _sizing.reachable_bytes({"a": array})
    shared = _sizing.reachable_bytes({"a": array, "b": array[10:], "c": [array.reshape(10, 100)]})
    assert 8000 <= alone < 9000
    assert shared - alone < 1000


def test_reachable_bytes_enters_object_arrays_and_extension_types(
    models: dict[str, pathlib.Path],
) -> None:
    inner = np.ones(5000, dtype=np.float64)
    holder = np.empty(2, dtype=object)
    holder[0], holder[1] = inner, "label"
    assert _sizing.reachable_bytes(holder) >= inner.nbytes

    import joblib

    forest = joblib.load(models["sklearn-joblib"])
    tree_bytes = sum(t.tree_.node_count * 88 for t in forest.estimators_)  # node + 3 values
    assert _sizing.reachable_bytes(forest) >= tree_bytes


def test_a_tiny_sklearn_model_is_measured_in_kilobytes(tmp_path: pathlib.Path) -> None:
    """A logistic regression takes a few KB (bench/density.py: ~7 KB of RSS
    per loaded copy); a fixed overhead of 64 KiB made the cache hold a tenth
    of the tiny models its memory could."""
    import skops.io
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    estimator = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    path = tmp_path / "tiny.skops"
    skops.io.dump(estimator, path)
    model = _load("sklearn", path)
    reachable = _sizing.reachable_bytes(estimator)
    assert model.size_bytes == _sizing.apply(_sizing.SKLEARN_RULE, reachable)
    assert model.size_bytes <= 24 * 1024


def test_estimate_grows_with_the_file(models: dict[str, pathlib.Path]) -> None:
    for name, (model_type, _) in EXAMPLE_MODELS.items():
        artifact = _formats.find_artifact(model_type=model_type, model_path=models[name])
        bigger = _formats.Artifact(
            path=artifact.path,
            model_type=artifact.model_type,
            format=artifact.format,
            disk_size=artifact.disk_size * 10,
        )
        assert _formats.estimate_size(artifact) > artifact.disk_size // 2
        assert _formats.estimate_size(bigger) > _formats.estimate_size(artifact)
