"""Telling model files apart by their first bytes.

Suffixes are a habit, not a contract: LightGBM writes its text model under
any name (ModelMesh Serving's example is ``mushroom.bst``), and XGBoost
2.1+ writes UBJSON to a file named ``model.bst``. These checks read only a
file's first bytes and never parse it; the library still does that.
"""

from __future__ import annotations

import pathlib

from meshserve.runtime._formats._model_format import ModelFormat

__all__ = ["HEAD_BYTES", "head", "is_pickle", "lightgbm_text", "xgboost_document"]

HEAD_BYTES = 64
"""Enough for every marker below: XGBoost names its ``learner`` first."""

# pickle protocols 2-5 open with PROTO (0x80) and the protocol number.
_PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))


def head(path: pathlib.Path) -> bytes:
    """The first bytes of ``path``; empty when it cannot be read."""
    try:
        with path.open("rb") as f:
            return f.read(HEAD_BYTES)
    except OSError:
        return b""


def lightgbm_text(start: bytes) -> ModelFormat | None:
    """LightGBM's text model: a first line ``tree`` (then ``version=vN``)."""
    first, _, rest = start.partition(b"\n")
    if first.rstrip(b"\r") != b"tree":
        return None
    # An older file may have a short header; a line after "tree" that is
    # there must be LightGBM's version line.
    if rest and not rest.startswith(b"version=v"):
        return None
    return ModelFormat.LIGHTGBM_TXT


def xgboost_document(start: bytes) -> ModelFormat | None:
    """XGBoost's JSON or UBJSON model: one object whose first key is ``learner``."""
    if not start.startswith(b"{") or b"learner" not in start:
        return None
    # JSON follows '{' with a quote (or whitespace); UBJSON with a length marker.
    if start[1:].lstrip()[:1] == b'"':
        return ModelFormat.XGBOOST_JSON
    return ModelFormat.XGBOOST_UBJ


def is_pickle(start: bytes) -> bool:
    """A pickle (``joblib.dump`` or ``pickle.dump``) of protocol 2 or later."""
    return start.startswith(_PICKLE_PROTOCOLS)
