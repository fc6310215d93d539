"""The example models, and what their own libraries predict for them."""

from __future__ import annotations

import importlib.util
import pathlib
from types import ModuleType

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_models_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "meshserve_examples_make_models", ROOT / "examples" / "make_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_type(name: str) -> str:
    """sklearn-skops -> sklearn, xgboost-ubj -> xgboost, onnx -> onnx."""
    return name.split("-", 1)[0]


def iris_rows(count: int = 5) -> np.ndarray:
    rows: np.ndarray = make_models_module().iris()[0]
    return rows[:: max(1, len(rows) // count)][:count]


def library_predictions(name: str, path: pathlib.Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs computed by the model's own library, keyed by meshserve's output names."""
    kind = model_type(name)
    if kind == "sklearn":
        if path.suffix == ".skops":
            import skops.io

            estimator = skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
        else:
            import joblib

            estimator = joblib.load(path)
        return {"predict": estimator.predict(rows), "predict_proba": estimator.predict_proba(rows)}
    if kind == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(path)
        proba = booster.predict(xgboost.DMatrix(rows.astype(np.float32)))
        return {"predict": proba.argmax(axis=1), "predict_proba": proba}
    if kind == "lightgbm":
        import lightgbm

        # predict is the booster's own output, as MLServer's lightgbm runtime gives it.
        scores = np.asarray(lightgbm.Booster(model_file=str(path)).predict(rows.astype(np.float32)))
        return {"predict": scores, "predict_proba": scores}
    if kind == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: rows.astype(np.float32)}
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed), strict=True))
    raise AssertionError(f"unknown example {name}")


def assert_outputs_match(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for name, want in expected.items():
        have = got[name]
        assert have.shape == np.shape(want), (name, have.shape, np.shape(want))
        if np.issubdtype(np.asarray(want).dtype, np.floating):
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)
