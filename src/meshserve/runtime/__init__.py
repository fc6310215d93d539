"""Runtimes: where models are loaded and predictions run.

The built-in runtime loads sklearn (skops; joblib/pickle when allowed),
xgboost, lightgbm and onnx artifacts. The instance drives any runtime through
:class:`Runtime`, hosted in-process (:class:`InProcessRuntime`) or in a
supervised child process speaking ModelMesh's runtime SPI
(:class:`ProcessRuntime`), or in a process started by someone else and
reached at a loopback address over the same SPI (:class:`ExternalRuntime`),
or started here from a ServingRuntime's command line (:class:`CommandRuntime`).
"""

from meshserve.protocol.model_key import ModelKey
from meshserve.runtime._address import ListenAddress
from meshserve.runtime._builtin import BuiltinRuntime, resolve_model_type
from meshserve.runtime._command import CommandRuntime
from meshserve.runtime._external import ExternalRuntime, ExternalState
from meshserve.runtime._formats import supported_model_types
from meshserve.runtime._inprocess import InProcessRuntime
from meshserve.runtime._interface import Runtime
from meshserve.runtime._mlserver_adapter import (
    MLServerAdapter,
    MLServerAdapterConfig,
    mlserver_address,
)
from meshserve.runtime._process import HostState, ProcessRuntime, runtime_user
from meshserve.runtime._records import (
    LoadResult,
    ModelSpec,
    RuntimeState,
    RuntimeStatus,
)
from meshserve.runtime._server import MODEL_ID_HEADER, RuntimeServer
from meshserve.runtime._supervised import SupervisedCommand, with_parent

__all__ = [
    "MODEL_ID_HEADER",
    "BuiltinRuntime",
    "CommandRuntime",
    "ExternalRuntime",
    "ExternalState",
    "HostState",
    "InProcessRuntime",
    "ListenAddress",
    "LoadResult",
    "MLServerAdapter",
    "MLServerAdapterConfig",
    "ModelKey",
    "ModelSpec",
    "ProcessRuntime",
    "Runtime",
    "RuntimeServer",
    "RuntimeState",
    "RuntimeStatus",
    "SupervisedCommand",
    "mlserver_address",
    "resolve_model_type",
    "runtime_user",
    "supported_model_types",
    "with_parent",
]
