"""The Services clients and instances use, and the NetworkPolicies that
allow exactly the flows that exist (docs/kubernetes.md has the table):

| from | to | port |
|---|---|---|
| clients (allowed namespaces / CIDRs) | instances | gRPC 8033, REST 8008 |
| monitoring namespace | instances | metrics 2112 |
| instances | instances | internal 8080, data 11881 |
| instances | etcd | 2379 |
| instances | object storage | 443 (not private ranges, not link-local) |
| operator | Kubernetes API server | 443, 6443 |
| operator | etcd | 2379 |
| instances, operator | cluster DNS | 53 |

Everything else to or from these pods is dropped (where the network
plugin enforces NetworkPolicy). The runtime containers share the pod's
network: they bind to 127.0.0.1 and the policies give the pod nothing
beyond the instance's flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshserve.operator._render_config import ClusterConfig
from meshserve.operator._render_pod import MANAGED_BY

__all__ = [
    "OPERATOR_LABELS",
    "Flows",
    "instance_selector",
    "render_network_policies",
    "render_services",
]

OPERATOR_LABELS = {"app.kubernetes.io/name": "meshserve", "app.kubernetes.io/component": "operator"}
"""The operator Deployment's pod labels (deploy/kubernetes/base)."""

_PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")


@dataclass(frozen=True, slots=True, kw_only=True)
class Flows:
    """Who the policies let in and where they let out; each default is the
    narrowest that works on a typical cluster, overlays narrow further."""

    client_namespace_labels: dict[str, str] = field(
        default_factory=lambda: {"modelmesh-enabled": "true"}
    )
    """Namespaces whose pods may call 8033/8008 (upstream's label)."""
    client_cidrs: tuple[str, ...] = ()
    """Addresses outside the cluster that may call 8033/8008 (ingress, LBs)."""
    monitoring_namespace: str = "monitoring"
    etcd_pod_labels: dict[str, str] = field(
        default_factory=lambda: {"app.kubernetes.io/name": "etcd"}
    )
    """etcd's pods, in the operator's namespace (the dev etcd overlay's)."""
    etcd_cidrs: tuple[str, ...] = ()
    """An etcd outside the cluster (or not in pods the labels select)."""
    etcd_port: int = 2379
    storage_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    storage_except: tuple[str, ...] = _PRIVATE
    """Never storage: cluster-private ranges and link-local (cloud metadata)."""
    storage_ports: tuple[int, ...] = (443,)
    api_server_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    """Where the API server is; narrow it to its address in an overlay."""
    api_server_ports: tuple[int, ...] = (443, 6443)


def instance_selector(config: ClusterConfig) -> dict[str, str]:
    """Every runtime pod of the mesh (ModelMesh Serving's Service selector)."""
    return {"modelmesh-service": config.inference_service_name}


def render_services(config: ClusterConfig, *, namespace: str | None = None) -> list[dict[str, Any]]:
    """``modelmesh-serving`` (gRPC, REST, metrics: any instance takes any
    request) and the headless ``modelmesh-serving-internal`` (stable DNS
    names for the internal ports; instances find each other through etcd)."""
    where = namespace or config.namespace
    name = config.inference_service_name
    ports = [_service_port("grpc", config.grpc_port)]
    if config.rest_enabled:
        ports.append(_service_port("http", config.rest_port))
    if config.metrics_enabled:
        ports.append(_service_port("prometheus", config.metrics_port, target="metrics"))
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/name": "meshserve"}
    public = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": where, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": instance_selector(config), "ports": ports},
    }
    internal = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-internal", "namespace": where, "labels": labels},
        "spec": {
            # Headless: nothing reaches "some instance" through it by accident.
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": instance_selector(config),
            "ports": [
                _service_port("internal", config.internal_port),
                _service_port("data", config.data_port),
            ],
        },
    }
    return [public, internal]


def render_network_policies(
    config: ClusterConfig, *, flows: Flows | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The instances' policy (in ``namespace``, default the operator's) and,
    in the operator's namespace, the operator's."""
    flows = flows or Flows()
    where = namespace or config.namespace
    instances = instance_selector(config)
    peers = [
        {"podSelector": {"matchLabels": instances}},
        {
            "namespaceSelector": {"matchLabels": {"modelmesh-enabled": "true"}},
            "podSelector": {"matchLabels": instances},
        },
    ]
    client_ports = [config.grpc_port] + ([config.rest_port] if config.rest_enabled else [])
    clients: list[dict[str, Any]] = [
        {"namespaceSelector": {"matchLabels": flows.client_namespace_labels}}
    ]
    clients += [{"ipBlock": {"cidr": cidr}} for cidr in flows.client_cidrs]
    ingress = [
        {"from": peers, "ports": _ports([config.internal_port, config.data_port])},
        {"from": clients, "ports": _ports(client_ports)},
    ]
    if config.metrics_enabled:
        monitoring = {"kubernetes.io/metadata.name": flows.monitoring_namespace}
        ingress.append(
            {
                "from": [{"namespaceSelector": {"matchLabels": monitoring}}],
                "ports": _ports([config.metrics_port]),
            }
        )
    storage = [
        {"ipBlock": {"cidr": cidr, "except": list(flows.storage_except)}}
        for cidr in flows.storage_cidrs
    ]
    instance_egress = [
        {"to": peers, "ports": _ports([config.internal_port, config.data_port])},
        _etcd_egress(config, flows),
        {"to": storage, "ports": _ports(flows.storage_ports)},
        _dns_egress(),
    ]
    api = [{"ipBlock": {"cidr": cidr}} for cidr in flows.api_server_cidrs]
    operator_egress = [
        {"to": api, "ports": _ports(flows.api_server_ports)},
        _etcd_egress(config, flows),
        _dns_egress(),
    ]
    return [
        _policy(
            f"{config.inference_service_name}-instances",
            namespace=where,
            selector=instances,
            ingress=ingress,
            egress=instance_egress,
        ),
        # The operator serves nothing: no ingress at all (kubelet probes
        # come from the node, which plugins let through).
        _policy(
            "meshserve-operator",
            namespace=config.namespace,
            selector=OPERATOR_LABELS,
            ingress=[],
            egress=operator_egress,
        ),
    ]


def _etcd_egress(config: ClusterConfig, flows: Flows) -> dict[str, Any]:
    to: list[dict[str, Any]] = [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": config.namespace}},
            "podSelector": {"matchLabels": flows.etcd_pod_labels},
        }
    ]
    to += [{"ipBlock": {"cidr": cidr}} for cidr in flows.etcd_cidrs]
    return {"to": to, "ports": _ports([flows.etcd_port])}


def _dns_egress() -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


def _policy(
    name: str,
    *,
    namespace: str,
    selector: dict[str, str],
    ingress: list[dict[str, Any]],
    egress: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def _ports(ports: list[int] | tuple[int, ...]) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def _service_port(name: str, port: int, *, target: str | None = None) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": target or name, "protocol": "TCP"}
