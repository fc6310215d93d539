"""The controller: applied ServingRuntime, InferenceService and Predictor
resources become vmodels in the mesh, and their status is written back.

Resources live in the mesh's store (``meshserve apply`` writes them there);
the elected controller (one per mesh) reconciles them.
"""

from meshserve.controller._builtin_runtimes import BUILTIN_RUNTIME, builtin_runtimes
from meshserve.controller._controller import Controller
from meshserve.controller._resource_store import CLUSTER, ResourceKey, ResourceStore, kind_of

__all__ = [
    "BUILTIN_RUNTIME",
    "CLUSTER",
    "Controller",
    "ResourceKey",
    "ResourceStore",
    "builtin_runtimes",
    "kind_of",
]
