"""Train tiny iris models in every format the built-in runtime serves.

    python examples/make_models.py [OUT_DIR]     # default: examples/models

writes ``OUT_DIR/<name>/<file>`` for each name in ``MODELS``. Training is
deterministic (fixed seeds, one thread): with the same library versions
every run writes the same models, byte for byte except the timestamps
inside the skops zip. The iris data ships with scikit-learn;
nothing is downloaded.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

__all__ = ["MODELS", "ONNX_INPUT_NAME", "iris", "make_models"]

MODELS = {
    "sklearn-skops": "model.skops",
    "sklearn-joblib": "model.joblib",
    "xgboost-json": "model.json",
    "xgboost-ubj": "model.ubj",
    "lightgbm": "model.txt",
    "onnx": "model.onnx",
}
"""Model name -> file name inside ``OUT_DIR/<name>/``."""

ONNX_INPUT_NAME = "float_input"
_SEED = 0


def iris() -> tuple[np.ndarray, np.ndarray]:
    """The iris rows (float64, 150 x 4) and their class indices."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)


def make_models(out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Write every example model under ``out_dir``; returns name -> file."""
    import joblib
    import lightgbm
    import skops.io
    import xgboost
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    x, y = iris()
    paths = {name: out_dir / name / file for name, file in MODELS.items()}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)

    forest = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=_SEED).fit(x, y)
    skops.io.dump(forest, paths["sklearn-skops"])
    joblib.dump(forest, paths["sklearn-joblib"])

    booster = xgboost.XGBClassifier(n_estimators=10, max_depth=3, random_state=_SEED, n_jobs=1).fit(
        x, y
    )
    booster.save_model(paths["xgboost-json"])
    booster.save_model(paths["xgboost-ubj"])

    gbm = lightgbm.LGBMClassifier(
        n_estimators=10, num_leaves=7, random_state=_SEED, n_jobs=1, verbose=-1
    ).fit(x, y)
    gbm.booster_.save_model(paths["lightgbm"])

    # zipmap off: probabilities as a plain [N, 3] tensor, not a list of maps.
    onnx_model = convert_sklearn(
        forest,
        name="iris_forest",  # otherwise a random graph name makes every file differ
        initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, x.shape[1]]))],
        options={id(forest): {"zipmap": False}},
    )
    paths["onnx"].write_bytes(onnx_model.SerializeToString())
    return paths


def main(argv: list[str]) -> None:
    out_dir = pathlib.Path(argv[1]) if len(argv) > 1 else pathlib.Path(__file__).parent / "models"
    for name, path in make_models(out_dir).items():
        print(f"{name:15} {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(sys.argv)
