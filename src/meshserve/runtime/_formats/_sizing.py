"""How much memory a model takes: estimated before load, measured after.

The estimate (``estimate_size``, behind the SPI's predictModelSize) reads
only the file size: ``disk_size * factor + overhead`` per format. After the
load each format reports its own measurement (``LoadedModel.size_bytes``).
The factors come from ``bench/calibrate_sizes.py``, which compares both
with the RSS growth of a fresh process that loads the model; the measured
ratios are quoted beside each constant and tabled in docs/model-formats.md.
ModelMesh's adapters use ``disk * 1.25`` for every format.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import BuiltinFunctionType, FunctionType, MethodType, ModuleType

import numpy as np

from meshserve.runtime._formats._artifact import Artifact, ModelFormat

__all__ = ["ESTIMATE_RULES", "SizeRule", "apply", "estimate_size", "reachable_bytes"]


@dataclass(frozen=True, slots=True)
class SizeRule:
    """``bytes = disk_size * factor + overhead``."""

    factor: float
    overhead: int


_KIB = 1024

# The ratios quoted are RSS growth / file size from bench/calibrate_sizes.py
# (forests, boosted trees and MLPs of 1-515 MB, two runs; RSS after the
# load's malloc_trim, see _memory.py; tabled in docs/model-formats.md).
# Factors sit a little above the largest ratio: an estimate is used to make
# room before a load, so erring high costs a little cache, erring low an
# out-of-memory kill. The overhead covers small models' fixed costs.
ESTIMATE_RULES: dict[ModelFormat, SizeRule] = {
    # forests 1.04-1.25, MLPs 0.99-1.00 (skops zips small arrays loosely)
    ModelFormat.SKOPS: SizeRule(factor=1.3, overhead=256 * _KIB),
    # forests 0.91-1.06; assumes an uncompressed joblib/pickle file
    ModelFormat.PICKLE: SizeRule(factor=1.15, overhead=256 * _KIB),
    # 1.86-2.20: XGBoost's trees take twice their JSON text
    ModelFormat.XGBOOST_JSON: SizeRule(factor=2.3, overhead=256 * _KIB),
    # 2.51-2.86
    ModelFormat.XGBOOST_UBJ: SizeRule(factor=2.9, overhead=256 * _KIB),
    # 0.67-0.69: the text spells out every double
    ModelFormat.LIGHTGBM_TXT: SizeRule(factor=0.75, overhead=256 * _KIB),
    # 1.00-1.05: initializers as stored
    ModelFormat.ONNX: SizeRule(factor=1.1, overhead=256 * _KIB),
}

# Measured after load. scikit-learn: bytes reachable from the estimator
# (reachable_bytes); RSS growth / reachable was 0.84-1.43 for forests (skops
# loads fragment the heap more than pickle), 0.97-1.0 for MLPs; with this
# rule measured / RSS growth was 0.81-1.34. The overhead is one cache unit
# (mesh/_lru.py rounds to 8 KiB): bench/density.py measured ~7 KB of RSS
# per loaded LogisticRegression copy, instance bookkeeping included, so the
# 64 KiB it was overstated tiny models ~10x (a 1 GiB cache held 14,500 of
# them where its memory held 150,000); MB-sized models move by under 2 %.
SKLEARN_RULE = SizeRule(factor=1.15, overhead=8 * _KIB)
# XGBoost: the booster's own UBJSON serialization (save_raw); RSS growth /
# that size was 2.52-2.84 whichever file format the model came from; with
# this rule measured / RSS growth was 0.82-1.10.
XGBOOST_UBJ_RULE = SizeRule(factor=2.7, overhead=256 * _KIB)
# LightGBM and ONNX expose nothing closer to their memory than the size of
# the file they loaded, which is their own serialization: the estimate is
# the measurement.
LIGHTGBM_RULE = ESTIMATE_RULES[ModelFormat.LIGHTGBM_TXT]
ONNX_RULE = ESTIMATE_RULES[ModelFormat.ONNX]


def apply(rule: SizeRule, nbytes: int) -> int:
    """``nbytes`` scaled by ``rule``."""
    return int(nbytes * rule.factor) + rule.overhead


def estimate_size(artifact: Artifact) -> int:
    """A cheap size estimate in bytes, made without loading the model."""
    return apply(ESTIMATE_RULES[artifact.format], artifact.disk_size)


# Objects that are shared by every model (code, classes, modules), not owned.
_SHARED = (type, ModuleType, FunctionType, BuiltinFunctionType, MethodType)


def reachable_bytes(root: object) -> int:
    """Bytes held by numpy arrays and Python objects reachable from ``root``.

    Array memory is counted once per buffer however many views point at it.
    Extension types without ``__dict__`` (scikit-learn's ``Tree``) are
    entered through ``__getstate__``, which for them returns views of their
    buffers rather than copies.
    """
    # Holding every visited object keeps the temporaries __getstate__ makes
    # alive, so their ids are not reused by later objects while we walk.
    seen_objects: dict[int, object] = {}
    seen_buffers: set[int] = set()
    total = 0
    stack: list[object] = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen_objects or isinstance(obj, _SHARED):
            continue
        seen_objects[id(obj)] = obj
        if isinstance(obj, np.ndarray):
            total += _array_bytes(obj, seen_buffers)
            if obj.dtype.kind == "O":
                stack.extend(obj.ravel().tolist())
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, str | bytes | bytearray | int | float | complex | bool):
            continue
        elif hasattr(obj, "__dict__"):
            stack.append(vars(obj))
        else:
            stack.extend(_state_of(obj))
    return total


def _array_bytes(array: np.ndarray, seen_buffers: set[int]) -> int:
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    address = int(root.__array_interface__["data"][0])
    if address in seen_buffers:
        return 0
    seen_buffers.add(address)
    return int(root.nbytes)


def _state_of(obj: object) -> list[object]:
    getstate = getattr(obj, "__getstate__", None)
    if getstate is None:
        return []
    try:
        state = getstate()
    except Exception:  # sizing must never fail a load
        return []
    if isinstance(state, dict):
        return list(state.values())
    if isinstance(state, tuple):
        return list(state)
    return []
