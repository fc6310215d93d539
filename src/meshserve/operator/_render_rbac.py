"""The operator's RBAC, from one table of the API calls it makes.

:data:`OPERATOR_API_USE` is the one declaration: keep it in sync with what
the operator calls (the operator's tests check its real calls against it,
and the deploy tests check the installed Roles against it). Nothing grants
a verb or resource that is not in it.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from meshserve.operator._render_config import ClusterConfig
from meshserve.operator._render_network import OPERATOR_LABELS
from meshserve.operator._render_pod import MANAGED_BY

__all__ = [
    "OPERATOR_ACCOUNT",
    "OPERATOR_API_USE",
    "ApiUse",
    "Scope",
    "render_operator_rbac",
    "render_runtime_account",
]

Scope = Literal["cluster", "namespace"]

OPERATOR_ACCOUNT = "meshserve-operator"


class ApiUse(NamedTuple):
    """One kind of call: these verbs on this resource of this API group."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    where: Literal["watched", "own", "cluster"] = "watched"
    """``watched``: in every namespace the operator serves; ``own``: only in
    its own namespace (leader election); ``cluster``: a cluster-scoped
    resource, used only when the operator is cluster-scoped."""


_READ = ("get", "list", "watch")
_OWN = (*_READ, "create", "patch", "delete")

OPERATOR_API_USE: tuple[ApiUse, ...] = (
    # Keep in sync with what the operator calls.
    # The resources it serves. Runtimes: read, and their status written;
    # InferenceServices and Predictors also patched (their finalizers).
    ApiUse("serving.kserve.io", "servingruntimes", _READ),
    ApiUse("serving.kserve.io", "servingruntimes/status", ("get", "patch")),
    ApiUse("serving.kserve.io", "inferenceservices", (*_READ, "patch")),
    ApiUse("serving.kserve.io", "inferenceservices/status", ("get", "patch")),
    ApiUse("serving.kserve.io", "predictors", (*_READ, "patch")),
    ApiUse("serving.kserve.io", "predictors/status", ("get", "patch")),
    ApiUse("serving.kserve.io", "clusterservingruntimes", _READ, "cluster"),
    ApiUse("serving.kserve.io", "clusterservingruntimes/status", ("get", "patch"), "cluster"),
    # model-serving-config, the storage-config and etcd Secrets: read only.
    ApiUse("", "configmaps", _READ),
    ApiUse("", "secrets", _READ),
    # What it renders.
    ApiUse("apps", "deployments", _OWN),
    ApiUse("", "services", _OWN),
    ApiUse("autoscaling", "horizontalpodautoscalers", _OWN),
    # kopf posts events (core v1) about the objects it handles.
    ApiUse("", "events", ("create",)),
    # One active replica (leader election), in its own namespace only.
    ApiUse("coordination.k8s.io", "leases", ("get", "create", "patch"), "own"),
    # Cluster scope: which namespaces are modelmesh-enabled.
    ApiUse("", "namespaces", _READ, "cluster"),
)


def render_operator_rbac(
    config: ClusterConfig, *, scope: Scope, namespaces: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The operator's ServiceAccount and its roles: a ClusterRole (cluster
    scope) or a Role in each served namespace (namespace scope: its own and
    ``namespaces``), plus a Role for leader election in its own namespace."""
    own = config.namespace
    labels = {**OPERATOR_LABELS, "app.kubernetes.io/managed-by": MANAGED_BY}
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": OPERATOR_ACCOUNT, "namespace": own, "labels": labels},
    }
    served = [
        u
        for u in OPERATOR_API_USE
        if u.where == "watched" or (u.where == "cluster" and scope == "cluster")
    ]
    elected = [u for u in OPERATOR_API_USE if u.where == "own"]
    objects: list[dict[str, Any]] = [account]
    if scope == "cluster":
        objects += _bound("ClusterRole", OPERATOR_ACCOUNT, None, served, own=own, labels=labels)
    else:
        for namespace in dict.fromkeys((own, *namespaces)):
            objects += _bound("Role", OPERATOR_ACCOUNT, namespace, served, own=own, labels=labels)
    objects += _bound("Role", f"{OPERATOR_ACCOUNT}-leader", own, elected, own=own, labels=labels)
    return objects


def render_runtime_account(
    config: ClusterConfig, *, namespace: str | None = None
) -> dict[str, Any]:
    """The runtime pods' default account: no roles, no mounted token."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": config.runtime_service_account,
            "namespace": namespace or config.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "automountServiceAccountToken": False,
    }


def _bound(
    kind: Literal["ClusterRole", "Role"],
    name: str,
    namespace: str | None,
    uses: list[ApiUse],
    *,
    own: str,
    labels: dict[str, str],
) -> list[dict[str, Any]]:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "rules": [
            {"apiGroups": [u.api_group], "resources": [u.resource], "verbs": list(u.verbs)}
            for u in uses
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{kind}Binding",
        "metadata": dict(metadata),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": own}],
    }
    return [role, binding]
