"""What the operator renders and installs, as plain Kubernetes objects.

Pure functions, no I/O: each returns ``dict`` objects ready to apply (or to
compare with what the cluster holds). The pieces live in ``_render_*``
modules; this module is their one public face:

- :class:`ClusterConfig`: model-serving-config and the operator's settings;
- :func:`render_runtime`: a ServingRuntime's Deployment (and HPA);
- :func:`render_services`, :func:`render_network_policies`;
- :data:`OPERATOR_API_USE` and :func:`render_operator_rbac`, the operator's
  RBAC from the one table of its API calls; :func:`render_runtime_account`.
"""

from meshserve.operator._render_autoscaling import (
    AUTOSCALER_CLASS_ANNOTATION,
    MAX_SCALE_ANNOTATION,
    METRICS_ANNOTATION,
    MIN_SCALE_ANNOTATION,
    TARGET_UTILIZATION_ANNOTATION,
)
from meshserve.operator._render_config import (
    DEFAULT_RUNTIME_SERVICE_ACCOUNT,
    ClusterConfig,
)
from meshserve.operator._render_instance import INSTANCE_CONTAINER
from meshserve.operator._render_network import (
    OPERATOR_LABELS,
    Flows,
    instance_selector,
    render_network_policies,
    render_services,
)
from meshserve.operator._render_rbac import (
    OPERATOR_ACCOUNT,
    OPERATOR_API_USE,
    ApiUse,
    Scope,
    render_operator_rbac,
    render_runtime_account,
)
from meshserve.operator._render_runtime import (
    RUNTIME_HASH_ANNOTATION,
    UNSUPPORTED_ADAPTERS,
    deployment_name,
    render_runtime,
    runtime_hash,
    selector_labels,
)

__all__ = [
    "AUTOSCALER_CLASS_ANNOTATION",
    "DEFAULT_RUNTIME_SERVICE_ACCOUNT",
    "INSTANCE_CONTAINER",
    "MAX_SCALE_ANNOTATION",
    "METRICS_ANNOTATION",
    "MIN_SCALE_ANNOTATION",
    "OPERATOR_ACCOUNT",
    "OPERATOR_API_USE",
    "OPERATOR_LABELS",
    "RUNTIME_HASH_ANNOTATION",
    "TARGET_UTILIZATION_ANNOTATION",
    "UNSUPPORTED_ADAPTERS",
    "ApiUse",
    "ClusterConfig",
    "Flows",
    "Scope",
    "deployment_name",
    "instance_selector",
    "render_network_policies",
    "render_operator_rbac",
    "render_runtime",
    "render_runtime_account",
    "render_services",
    "runtime_hash",
    "selector_labels",
]
