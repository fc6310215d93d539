"""The mesh benchmark's model artifacts: a few tiny sklearn estimators of
different sizes, saved as .skops, each registered under many model ids.

Training a thousand models would take longer than the benchmark; a thousand
ids over a handful of files cost nothing, and the mesh still treats every id
as a separate model with its own cached copy. The sizes vary (decision trees
with 4 to 2,048 leaves, and a logistic regression) so the byte-weighted LRU
has something to weigh.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["INPUT_NAME", "ROW", "Artifact", "artifact_of", "make_artifacts", "model_id"]

INPUT_NAME = "input-0"
ROW = (0.3, -1.2, 0.8, 0.1)
"""The one row every request sends (FP64, shape [1, 4])."""
_FEATURES = 4
_TRAIN_ROWS = 6000
_LEAVES = (4, 16, 64, 256, 1024, 2048)


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    path: pathlib.Path
    expected: int
    """The estimator's own ``predict`` for ``ROW``."""


def _training_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(_TRAIN_ROWS, _FEATURES))
    # Noisy labels, so a tree keeps splitting until it reaches its leaf limit.
    score = x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.8, size=_TRAIN_ROWS)
    y = np.digitize(score, [-0.5, 0.5]).astype(np.int64)
    return x, y


def make_artifacts(out_dir: pathlib.Path, *, seed: int) -> list[Artifact]:
    """Train the estimators and save each as ``out_dir/<name>.skops``."""
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = _training_data(seed)
    estimators: dict[str, Any] = {"logreg": LogisticRegression(max_iter=1000)}
    for leaves in _LEAVES:
        estimators[f"tree{leaves}"] = DecisionTreeClassifier(
            max_leaf_nodes=leaves, random_state=seed
        )
    row = np.asarray([ROW], dtype=np.float64)
    artifacts = []
    for name, estimator in estimators.items():
        estimator.fit(x, y)
        path = out_dir / f"{name}.skops"
        skops.io.dump(estimator, path)
        artifacts.append(Artifact(name=name, path=path, expected=int(estimator.predict(row)[0])))
    return artifacts


def artifact_of(model_index: int, artifacts: list[Artifact]) -> Artifact:
    """The file behind model id number ``model_index``: ids cycle through the
    artifacts, so every size is equally common among the ids."""
    return artifacts[model_index % len(artifacts)]


def model_id(model_index: int) -> str:
    return f"m{model_index:04d}"
