"""Loading an artifact with the loader of its format."""

from __future__ import annotations

from collections.abc import Sequence

from meshserve.runtime._formats import _lightgbm, _memory, _onnx, _sklearn, _xgboost
from meshserve.runtime._formats._artifact import Artifact, ModelFormat
from meshserve.runtime._formats._model import LoadedModel

__all__ = ["load_model"]


def load_model(
    artifact: Artifact, *, allow_pickle: bool, trusted_types: Sequence[str] = ()
) -> LoadedModel:
    """Load ``artifact`` into memory.

    ``allow_pickle`` permits pickle-based files (which can run arbitrary code
    when loaded); ``trusted_types`` names extra types a ``.skops`` file may
    contain. Raises ``PickleRefusedError`` or ``LoadNotAttemptedError``
    when refusing, ``UnsupportedModelError`` when the format's library is
    not installed, ``CorruptModelError`` when the library cannot read the
    file.
    """
    try:
        return _load(artifact, allow_pickle=allow_pickle, trusted_types=trusted_types)
    finally:
        # Whether it loaded or not, the load's temporaries are garbage now.
        _memory.release_free_heap()


def _load(artifact: Artifact, *, allow_pickle: bool, trusted_types: Sequence[str]) -> LoadedModel:
    match artifact.format:
        case ModelFormat.SKOPS | ModelFormat.PICKLE:
            return _sklearn.load(artifact, allow_pickle=allow_pickle, trusted_types=trusted_types)
        case ModelFormat.XGBOOST_JSON | ModelFormat.XGBOOST_UBJ:
            return _xgboost.load(artifact)
        case ModelFormat.LIGHTGBM_TXT:
            return _lightgbm.load(artifact)
        case ModelFormat.ONNX:
            return _onnx.load(artifact)
