"""The ClusterServingRuntimes meshserve ships.

- ``meshserve-builtin``: the built-in Python runtime (sklearn skops,
  xgboost, lightgbm, onnx), auto-selected by format; every instance ``up``
  runs itself offers it (``mesh.runtimeName``), so it is never scaled to zero.
- ``meshserve-pickle``: the same runtime out of process with pickle allowed,
  for joblib/pickle sklearn models; never auto-selected (a resource names it),
  since pickle runs the artifact's code.
- ``meshserve-mlserver``: a real MLServer (``mlserver-sklearn``) behind
  meshserve's adapter, as ModelMesh Serving's built-in ``mlserver`` adapter;
  named explicitly too. MLServer lives in its own Python environment
  (``control.mlserverExecutable``).

The last two run as runtime pools (``meshserve up`` starts their instances
when a resource uses them). Applying a ClusterServingRuntime of the same
name replaces a shipped one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from meshserve.controller._pools import PICKLE_RUNTIME
from meshserve.resources import ClusterServingRuntime, parse_resource

__all__ = [
    "BUILTIN_RUNTIME",
    "MLSERVER_RUNTIME",
    "PICKLE_RUNTIME",
    "PICKLE_RUNTIMES",
    "builtin_runtimes",
]

BUILTIN_RUNTIME = "meshserve-builtin"
MLSERVER_RUNTIME = "meshserve-mlserver"
PICKLE_RUNTIMES = frozenset({PICKLE_RUNTIME, MLSERVER_RUNTIME})
"""The shipped runtimes that load pickle artifacts (control.pickleNamespaces)."""

_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx")


def _runtime(name: str, spec: dict[str, Any]) -> ClusterServingRuntime:
    document = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": name},
        "spec": {"multiModel": True, "protocolVersions": ["grpc-v2"], **spec},
    }
    runtime = parse_resource(document)
    assert isinstance(runtime, ClusterServingRuntime)
    return runtime


@cache
def builtin_runtimes() -> tuple[ClusterServingRuntime, ...]:
    return (
        _runtime(
            BUILTIN_RUNTIME,
            {
                "supportedModelFormats": [
                    {"name": name, "autoSelect": True, "priority": 1} for name in _FORMATS
                ]
            },
        ),
        _runtime(
            PICKLE_RUNTIME, {"supportedModelFormats": [{"name": "sklearn", "autoSelect": False}]}
        ),
        _runtime(
            MLSERVER_RUNTIME,
            {
                "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": False}],
                "builtInAdapter": {"serverType": "mlserver", "modelLoadingTimeoutMillis": 90000},
            },
        ),
    )
