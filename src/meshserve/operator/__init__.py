"""``meshserve operator``: ModelMesh Serving's resources on a Kubernetes
cluster run meshserve.

:func:`run_operator` watches ServingRuntime, ClusterServingRuntime,
InferenceService and Predictor resources with kopf and (one replica at a
time, by a Lease) reconciles them with :class:`meshserve.controller.Controller`,
the same as ``meshserve up``: models and vmodels in the mesh's etcd, status
in KServe's shape, the runtime pools as the Deployments ``_render`` renders
(pure functions: what the operator renders and installs).
"""

from meshserve.operator._kube import ApiError, KubeApi, KubeConnection
from meshserve.operator._operator import OperatorOptions, run_operator

__all__ = ["ApiError", "KubeApi", "KubeConnection", "OperatorOptions", "run_operator"]
