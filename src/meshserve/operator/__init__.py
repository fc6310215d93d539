"""The Kubernetes operator: ModelMesh Serving's resources on a cluster run meshserve.

``meshserve operator`` (:func:`run_operator`) watches ServingRuntime,
ClusterServingRuntime, InferenceService and Predictor resources with kopf,
and (one replica at a time, by a Lease) reconciles them with
:class:`meshserve.controller.Controller`, the same as ``meshserve up``:
models and vmodels in the mesh's etcd, status in KServe's shape, the
runtime pools as the Deployments ``_render`` renders.
"""

from meshserve.operator._kube import ApiError, KubeApi, KubeConnection
from meshserve.operator._operator import OperatorOptions, run_operator

__all__ = ["ApiError", "KubeApi", "KubeConnection", "OperatorOptions", "run_operator"]
