"""The controller: applied ServingRuntime, InferenceService and Predictor
resources become vmodels in the mesh, and their status is written back.

Resources live in the mesh's store (``meshserve apply`` writes them there);
the elected controller (one per mesh) reconciles them into the mesh it is
given (:class:`MeshPort`), writes their status (typed records serialised
by :func:`status_document`), and sizes the runtime pools whoever runs
processes provides (:class:`RuntimePools`).
"""

from meshserve.controller._builtin_runtimes import (
    BUILTIN_RUNTIME,
    MLSERVER_RUNTIME,
    PICKLE_RUNTIME,
    builtin_runtimes,
)
from meshserve.controller._controller import Controller
from meshserve.controller._pools import (
    AnyRuntime,
    PoolPlan,
    PoolPlanner,
    PoolSpec,
    PoolSpecMaker,
    RuntimePools,
    expand_vars,
    format_labels,
    pool_spec,
    pool_variables,
)
from meshserve.controller._port import MeshPort
from meshserve.controller._resource_store import (
    CLUSTER,
    Applied,
    ResourceKey,
    ResourceSource,
    ResourceStore,
    SealedSecrets,
    kind_of,
)
from meshserve.controller._secret_documents import redact_secret
from meshserve.controller._status import (
    PREDICTOR_READY,
    READY,
    ConditionStatus,
    LastFailureInfo,
    ModelState,
    PredictorStatus,
    ResourceStatus,
    RuntimeVerdict,
    SkippedStatus,
    TransitionStatus,
    find_condition,
    status_document,
)

__all__ = [
    "BUILTIN_RUNTIME",
    "CLUSTER",
    "MLSERVER_RUNTIME",
    "PICKLE_RUNTIME",
    "PREDICTOR_READY",
    "READY",
    "AnyRuntime",
    "Applied",
    "ConditionStatus",
    "Controller",
    "LastFailureInfo",
    "MeshPort",
    "ModelState",
    "PoolPlan",
    "PoolPlanner",
    "PoolSpec",
    "PoolSpecMaker",
    "PredictorStatus",
    "ResourceKey",
    "ResourceSource",
    "ResourceStatus",
    "ResourceStore",
    "RuntimePools",
    "RuntimeVerdict",
    "SealedSecrets",
    "SkippedStatus",
    "TransitionStatus",
    "builtin_runtimes",
    "expand_vars",
    "find_condition",
    "format_labels",
    "kind_of",
    "pool_spec",
    "pool_variables",
    "redact_secret",
    "status_document",
]
