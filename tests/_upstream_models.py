"""Models shaped like ModelMesh Serving's example models, made at test time.

Upstream's examples are a mushroom classifier (126 one-hot features, binary)
saved by XGBoost as ``xgboost-mushroom/mushroom.json`` (a Booster,
``binary:logistic``) and by LightGBM as text named
``lightgbm-mushroom/mushroom.bst``, and an MNIST ONNX model (input
``Input3`` FP32 ``[N, 1, 28, 28]``, output ``Plus214_Output_0`` FP32
``[N, 10]``) stored as a plain file or in Triton's repository layout. These
are small stand-ins of the same shape, trained on synthetic rows, with what
their own libraries predict for them.
"""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = [
    "MNIST_INPUT",
    "MNIST_OUTPUT",
    "MUSHROOM_FEATURES",
    "lightgbm_mushroom",
    "lightgbm_predict",
    "mnist_images",
    "mushroom_rows",
    "onnx_mnist_triton",
    "onnx_predict",
    "xgboost_mushroom",
    "xgboost_predict",
]

MUSHROOM_FEATURES = 126
MNIST_INPUT = "Input3"
MNIST_OUTPUT = "Plus214_Output_0"
_SEED = 14


def mushroom_rows(count: int, *, seed: int = _SEED) -> np.ndarray:
    """``count`` one-hot-style rows of 0.0/1.0, FP32 (as upstream's client sends)."""
    rng = np.random.default_rng(seed)
    return (rng.random((count, MUSHROOM_FEATURES)) < 0.2).astype(np.float32)


def _mushroom_training() -> tuple[np.ndarray, np.ndarray]:
    rows = mushroom_rows(400)
    # "Poisonous" when some of a few columns are set: learnable in a few trees.
    labels = ((rows[:, 3] + rows[:, 17] + rows[:, 60] - rows[:, 99]) > 0.5).astype(np.int64)
    return rows, labels


def xgboost_mushroom(directory: pathlib.Path) -> pathlib.Path:
    """``<directory>/mushroom.json``: a Booster trained with ``binary:logistic``."""
    import xgboost

    rows, labels = _mushroom_training()
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": _SEED},
        xgboost.DMatrix(rows, label=labels),
        num_boost_round=4,
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mushroom.json"
    booster.save_model(path)
    return path


def xgboost_predict(path: pathlib.Path, rows: np.ndarray) -> np.ndarray:
    """What XGBoost itself predicts: p(class 1), FP32."""
    import xgboost

    return np.asarray(xgboost.Booster(model_file=str(path)).predict(xgboost.DMatrix(rows)))


def lightgbm_mushroom(directory: pathlib.Path) -> pathlib.Path:
    """``<directory>/mushroom.bst``: a binary LightGBM model in its text format."""
    import lightgbm

    rows, labels = _mushroom_training()
    booster = lightgbm.train(
        {
            "objective": "binary",
            "num_leaves": 4,
            "min_data_in_leaf": 5,
            "num_threads": 1,
            "seed": _SEED,
            "verbose": -1,
        },
        lightgbm.Dataset(rows.astype(np.float64), label=labels),
        num_boost_round=4,
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mushroom.bst"
    booster.save_model(str(path))
    return path


def lightgbm_predict(path: pathlib.Path, rows: np.ndarray) -> np.ndarray:
    """What LightGBM itself predicts: p(class 1), FP64."""
    import lightgbm

    return np.asarray(lightgbm.Booster(model_file=str(path)).predict(rows))


def mnist_images(count: int, *, seed: int = _SEED) -> np.ndarray:
    """``count`` 28x28 grey images, pixels 0-255, FP32 ``[count, 1, 28, 28]``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 1, 28, 28)).astype(np.float32)


def _mnist_onnx(*, seed: int) -> bytes:
    """A linear MNIST-shaped classifier: Flatten -> MatMul -> Add."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((784, 10)) / 784).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", [MNIST_INPUT], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], [MNIST_OUTPUT]),
        ],
        "mnist",
        [helper.make_tensor_value_info(MNIST_INPUT, TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info(MNIST_OUTPUT, TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    encoded: bytes = model.SerializeToString()
    return encoded


_CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 0
"""


def onnx_mnist_triton(
    directory: pathlib.Path, *, config: bool, versions: tuple[int, ...] = (1,)
) -> pathlib.Path:
    """``<directory>/[config.pbtxt]`` + ``<version>/model.onnx`` for each
    version (each with its own weights); returns the highest version's file."""
    directory.mkdir(parents=True, exist_ok=True)
    if config:
        (directory / "config.pbtxt").write_text(_CONFIG.format(name=directory.name))
    for version in versions:
        (directory / str(version)).mkdir()
        (directory / str(version) / "model.onnx").write_bytes(_mnist_onnx(seed=version))
    return directory / str(max(versions)) / "model.onnx"


def onnx_predict(path: pathlib.Path, images: np.ndarray) -> np.ndarray:
    """What onnxruntime itself computes: the 10 scores, FP32."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (scores,) = session.run([MNIST_OUTPUT], {MNIST_INPUT: images})
    return np.asarray(scores)
