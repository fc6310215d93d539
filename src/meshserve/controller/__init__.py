"""The controller: applied ServingRuntime, InferenceService and Predictor
resources become vmodels in the mesh, and their status is written back.

Resources live in the mesh's store (``meshserve apply`` writes them there);
the elected controller (one per mesh) reconciles them, and sizes the runtime
pools whoever runs processes provides (:class:`RuntimePools`).
"""

from meshserve.controller._builtin_runtimes import (
    BUILTIN_RUNTIME,
    MLSERVER_RUNTIME,
    PICKLE_RUNTIME,
    builtin_runtimes,
)
from meshserve.controller._controller import Controller
from meshserve.controller._pools import (
    PoolPlan,
    PoolPlanner,
    PoolSpec,
    RuntimePools,
    expand_vars,
    pool_spec,
    pool_variables,
)
from meshserve.controller._resource_store import (
    CLUSTER,
    ResourceKey,
    ResourceStore,
    SealedSecrets,
    kind_of,
)
from meshserve.controller._secret_documents import redact_secret

__all__ = [
    "BUILTIN_RUNTIME",
    "CLUSTER",
    "MLSERVER_RUNTIME",
    "PICKLE_RUNTIME",
    "Controller",
    "PoolPlan",
    "PoolPlanner",
    "PoolSpec",
    "ResourceKey",
    "ResourceStore",
    "RuntimePools",
    "SealedSecrets",
    "builtin_runtimes",
    "expand_vars",
    "kind_of",
    "pool_spec",
    "pool_variables",
    "redact_secret",
]
