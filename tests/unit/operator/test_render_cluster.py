"""What the operator renders beside runtimes: the config it reads, the
Services, the NetworkPolicies (one rule per flow that exists) and its RBAC
(exactly the table of the calls it makes)."""

from __future__ import annotations

from typing import Any

import pytest

from meshserve.operator._render import (
    OPERATOR_LABELS,
    ClusterConfig,
    Flows,
    instance_selector,
    render_network_policies,
    render_operator_rbac,
    render_runtime_account,
    render_services,
)
from meshserve.resources import RESERVED_PORT_RANGE
from tests._kubernetes import declared, granted, validate_strict

CONFIG = ClusterConfig(namespace="modelmesh-serving", image="registry.example/meshserve:1.0")


def test_the_config_reads_model_serving_configs_keys_case_insensitively() -> None:
    config = ClusterConfig.from_config_yaml(
        {
            "podsPerRuntime": 3,
            "ServiceAccountName": "runtime-sa",
            "tls": {"secretName": "mm-tls", "clientAuth": "Require"},
            "storageSecretName": "my-storage",
            "etcdSecretName": "my-etcd",
            "inferenceServiceName": "mm",
            "inferenceServicePort": 9033,
            "restProxy": {"enabled": False},
            "metrics": {"port": 9112},
            "scaleToZero": {"enabled": False, "gracePeriodSeconds": 30},
            "modelMeshResources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
            "runtimePodLabels": {"team": "a"},
            "imagePullSecrets": [{"name": "pull"}],
        },
        namespace="ns",
        image="m:1",
        allowed_runtime_images=("seldonio/*",),
    )
    assert config.pods_per_runtime == 3
    assert config.runtime_service_account == "runtime-sa"
    assert (config.tls_secret_name, config.tls_client_auth) == ("mm-tls", "require")
    assert (config.storage_secret_name, config.etcd_secret_name) == ("my-storage", "my-etcd")
    assert config.inference_service_name == "mm"
    assert (config.grpc_port, config.rest_enabled, config.metrics_port) == (9033, False, 9112)
    assert (config.scale_to_zero_enabled, config.scale_to_zero_grace_period_s) == (False, 30.0)
    assert config.model_mesh_resources == {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}
    assert config.runtime_pod_labels == {"team": "a"}
    assert config.image_pull_secrets == ("pull",)
    assert ("MESHSERVE_SERVER__GRPC_PORT", "9033") in config.instance_env
    control = config.control_settings()
    assert (control.pods_per_runtime, control.allowed_runtime_images) == (3, ("seldonio/*",))


def test_the_default_config_is_model_mesh_servings() -> None:
    config = ClusterConfig.from_config_yaml(None, namespace="ns", image="m:1")
    assert config == ClusterConfig(namespace="ns", image="m:1")
    assert config.runtime_service_account == "meshserve-runtime"
    assert (config.storage_secret_name, config.etcd_secret_name) == (
        "storage-config",
        "model-serving-etcd",
    )
    assert (config.grpc_port, config.rest_port, config.metrics_port, config.internal_port) == (
        8033,
        8008,
        2112,
        8080,
    )
    # The data port: the first of ModelMesh's ports held back for internal use.
    assert config.data_port == 11881 and config.data_port in RESERVED_PORT_RANGE
    assert config.digest == ClusterConfig(namespace="ns", image="m:1").digest
    assert config.digest != ClusterConfig(namespace="ns", image="m:2").digest


def test_the_config_is_hashable_and_reports_keys_it_ignores() -> None:
    config = ClusterConfig.from_config_yaml(
        {"podsPerRuntime": 1, "modelMeshImage": {"name": "x"}, "podsPerRuntim": 2},
        namespace="ns",
        image="m:1",
    )
    assert {config: 1}[
        ClusterConfig.from_config_yaml({"podsPerRuntime": 1}, namespace="ns", image="m:1")
    ]
    assert any("modelMeshImage" in w for w in config.warnings)
    assert any("podsPerRuntim" in w for w in config.warnings)


def test_a_malformed_config_value_is_refused_by_key() -> None:
    with pytest.raises(ValueError, match="runtimePodLabels"):
        ClusterConfig.from_config_yaml({"runtimePodLabels": ["a"]}, namespace="ns", image="m:1")


def test_the_services_are_model_mesh_servings() -> None:
    public, internal = render_services(CONFIG)
    for service in (public, internal):
        validate_strict(service)
        assert service["spec"]["selector"] == {"modelmesh-service": "modelmesh-serving"}
    assert public["metadata"]["name"] == "modelmesh-serving"
    assert {(p["name"], p["port"]) for p in public["spec"]["ports"]} == {
        ("grpc", 8033),
        ("http", 8008),
        ("prometheus", 2112),
    }
    assert internal["spec"]["clusterIP"] == "None"
    assert [(p["name"], p["port"]) for p in internal["spec"]["ports"]] == [
        ("internal", 8080),
        ("data", 11881),
    ]


# --- network policies ------------------------------------------------------------


def _policies(**flows: Any) -> dict[str, dict[str, Any]]:
    rendered = render_network_policies(CONFIG, flows=Flows(**flows))
    for policy in rendered:
        validate_strict(policy)
    return {p["metadata"]["name"]: p["spec"] for p in rendered}


def _rule_ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule["ports"]}


def test_every_flow_has_its_rule_and_nothing_else_is_open() -> None:
    policies = _policies(client_cidrs=("203.0.113.0/24",), etcd_cidrs=("198.51.100.7/32",))
    instances = policies["modelmesh-serving-instances"]
    assert instances["podSelector"]["matchLabels"] == instance_selector(CONFIG)
    assert instances["policyTypes"] == ["Ingress", "Egress"]
    ingress = {frozenset(_rule_ports(r)): r["from"] for r in instances["ingress"]}
    # Instance to instance: the internal port and the data port, nothing else.
    peer_ports = frozenset({8080, 11881})
    assert set(ingress) == {peer_ports, frozenset({8033, 8008}), frozenset({2112})}
    assert all(
        p["podSelector"]["matchLabels"] == instance_selector(CONFIG) for p in ingress[peer_ports]
    )
    clients = ingress[frozenset({8033, 8008})]
    assert {"ipBlock": {"cidr": "203.0.113.0/24"}} in clients
    assert {"namespaceSelector": {"matchLabels": {"modelmesh-enabled": "true"}}} in clients
    assert ingress[frozenset({2112})] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress = {frozenset(_rule_ports(r)): r["to"] for r in instances["egress"]}
    assert set(egress) == {peer_ports, frozenset({2379}), frozenset({443}), frozenset({53})}
    assert egress[peer_ports] == ingress[peer_ports]
    assert {"ipBlock": {"cidr": "198.51.100.7/32"}} in egress[frozenset({2379})]
    (storage,) = egress[frozenset({443})]
    assert "169.254.0.0/16" in storage["ipBlock"]["except"]  # no cloud metadata service
    operator = policies["meshserve-operator"]
    assert operator["podSelector"]["matchLabels"] == OPERATOR_LABELS
    assert operator["ingress"] == []
    assert {frozenset(_rule_ports(r)) for r in operator["egress"]} == {
        frozenset({443, 6443}),
        frozenset({2379}),
        frozenset({53}),
    }


def test_metrics_closed_when_off() -> None:
    config = ClusterConfig(namespace="ns", image="m:1", metrics_enabled=False, rest_enabled=False)
    instances = render_network_policies(config)[0]["spec"]
    assert {frozenset(_rule_ports(r)) for r in instances["ingress"]} == {
        frozenset({8080, 11881}),
        frozenset({8033}),
    }


# --- RBAC ----------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_rbac_grants_exactly_the_declared_calls(scope: Any) -> None:
    objects = render_operator_rbac(CONFIG, scope=scope, namespaces=("team-a",))
    for document in objects:
        validate_strict(document)
    wanted = {"watched", "own"} | ({"cluster"} if scope == "cluster" else set())
    assert granted(objects) == declared(wanted)
    assert not any("*" in part for grant in granted(objects) for part in grant)
    kinds = {o["kind"] for o in objects}
    if scope == "cluster":
        assert {"ClusterRole", "ClusterRoleBinding"} <= kinds
    else:
        assert "ClusterRole" not in kinds
        assert {o["metadata"].get("namespace") for o in objects if o["kind"] == "Role"} == {
            "modelmesh-serving",
            "team-a",
        }


def test_leader_election_is_granted_in_the_operators_namespace_only() -> None:
    objects = render_operator_rbac(CONFIG, scope="cluster")
    (leader,) = [o for o in objects if o["kind"] == "Role"]
    assert leader["metadata"]["namespace"] == CONFIG.namespace
    assert granted([leader]) == declared({"own"})
    assert all(
        g[1] != "leases" for g in granted([o for o in objects if o["kind"] == "ClusterRole"])
    )


def test_a_grant_outside_the_table_would_be_caught() -> None:
    objects = render_operator_rbac(CONFIG, scope="cluster")
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    role["rules"][0]["verbs"].append("delete")
    assert granted(objects) != declared({"watched", "own", "cluster"})


def test_the_runtime_account_mounts_no_token() -> None:
    account = render_runtime_account(CONFIG, namespace="team-a")
    validate_strict(account)
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"] == {
        "name": "meshserve-runtime",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/managed-by": "meshserve-operator"},
    }
