"""Runtimes: where models are loaded and predictions run.

The built-in runtime loads sklearn (skops; joblib/pickle when allowed),
xgboost, lightgbm and onnx artifacts. The instance drives any runtime through
:class:`Runtime`, hosted in-process (:class:`InProcessRuntime`) or in a
supervised child process speaking ModelMesh's runtime SPI
(:class:`ProcessRuntime`), or in a process started by someone else and
reached at a loopback address over the same SPI (:class:`ExternalRuntime`).
"""

from meshserve.runtime._address import ListenAddress
from meshserve.runtime._builtin import BuiltinRuntime, resolve_model_type
from meshserve.runtime._external import ExternalRuntime, ExternalState
from meshserve.runtime._formats import supported_model_types
from meshserve.runtime._inprocess import InProcessRuntime
from meshserve.runtime._interface import Runtime
from meshserve.runtime._process import HostState, ProcessRuntime
from meshserve.runtime._records import (
    LoadResult,
    ModelKey,
    ModelSpec,
    RuntimeState,
    RuntimeStatus,
)
from meshserve.runtime._server import MODEL_ID_HEADER, RuntimeServer

__all__ = [
    "MODEL_ID_HEADER",
    "BuiltinRuntime",
    "ExternalRuntime",
    "ExternalState",
    "HostState",
    "InProcessRuntime",
    "ListenAddress",
    "LoadResult",
    "ModelKey",
    "ModelSpec",
    "ProcessRuntime",
    "Runtime",
    "RuntimeServer",
    "RuntimeState",
    "RuntimeStatus",
    "resolve_model_type",
    "supported_model_types",
]
