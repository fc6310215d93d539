"""The ClusterServingRuntimes meshserve ships: its built-in Python runtime.

Resources select it by format (autoSelect) or by name; instances offer it
as the label ``rt:meshserve-builtin`` (``mesh.runtimeName``). Applying a
ClusterServingRuntime of the same name replaces it.
"""

from __future__ import annotations

from functools import cache

from meshserve.control import ClusterServingRuntime, parse_resource

__all__ = ["BUILTIN_RUNTIME", "builtin_runtimes"]

BUILTIN_RUNTIME = "meshserve-builtin"

_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx")


@cache
def builtin_runtimes() -> tuple[ClusterServingRuntime, ...]:
    document = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": BUILTIN_RUNTIME},
        "spec": {
            "multiModel": True,
            "protocolVersions": ["grpc-v2"],
            "supportedModelFormats": [
                {"name": name, "autoSelect": True, "priority": 1} for name in _FORMATS
            ],
        },
    }
    runtime = parse_resource(document)
    assert isinstance(runtime, ClusterServingRuntime)
    return (runtime,)
