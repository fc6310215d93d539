"""deploy/kubernetes, rendered offline as `kubectl apply -k` would apply it.

Every overlay is rendered with the machine's `kubectl kustomize` (kustomize
v5, part of every machine image here; no API server is involved) and every
object is validated strictly against a current Kubernetes. The tests fail
when a pod loosens the security posture, when the RBAC grants anything but
OPERATOR_API_USE, when a flow of the NetworkPolicy table has no rule, when a
generated file is stale, or when a CRD drifts from upstream's names and
printer columns."""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from meshserve.errors import UnsupportedRuntimeError
from meshserve.operator._render import OPERATOR_LABELS, ClusterConfig, render_runtime
from meshserve.resources import ClusterServingRuntime, load_documents
from meshserve.settings import Settings, StoreSettings
from meshserve.store._etcd_connection import with_etcd_connection
from tests._examples import ROOT
from tests._kubernetes import declared, granted, pod_specs, security_problems, validate_strict

MANIFESTS = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir())
NAMESPACE = "modelmesh-serving"
INSTANCES = {"modelmesh-service": "modelmesh-serving"}
ETCD = {"app.kubernetes.io/name": "etcd"}


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render the overlays"
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def _objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in _render(overlay) if d["kind"] == kind]


def _one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in _objects(overlay, kind) if d["metadata"]["name"] == name]
    return found


def test_the_overlays_are_the_documented_ones() -> None:
    assert OVERLAYS == ["cluster-scope", "dev", "namespace-scope", "tls"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_is_valid_in_strict_mode(overlay: str) -> None:
    for document in _render(overlay):
        validate_strict(document)
        if document["kind"] not in (
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ):
            assert document["metadata"]["namespace"] == NAMESPACE, document["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down_and_only_the_operator_holds_a_token(overlay: str) -> None:
    workloads = pod_specs(_render(overlay))
    assert workloads
    for name, pod in workloads:
        problems = security_problems(pod)
        if name == "meshserve-operator":
            # It calls the API server, under its own account.
            assert pod["serviceAccountName"] == "meshserve-operator"
            problems.remove("the pod mounts a service-account token")
        assert problems == [], name


def test_the_operator_runs_meshserve_operator_with_one_active_replica_by_lease() -> None:
    for overlay in OVERLAYS:
        deployment = _one(overlay, "Deployment", "meshserve-operator")
        assert deployment["spec"]["replicas"] == 2  # one active, one waiting on the Lease
        assert deployment["spec"]["template"]["metadata"]["labels"] == OPERATOR_LABELS
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["meshserve", "operator"]
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_NAMESPACE"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.namespace"}
        }
        assert env["MESHSERVE_IMAGE"]["value"] == container["image"]
        clusterwide = container.get("args", []) == ["--clusterwide"]
        assert clusterwide == (overlay in ("cluster-scope", "tls")), overlay


@pytest.mark.parametrize(
    ("overlay", "scope"),
    [
        ("cluster-scope", {"watched", "own", "cluster"}),
        ("namespace-scope", {"watched", "own"}),
        ("dev", {"watched", "own"}),
    ],
)
def test_rbac_grants_exactly_the_calls_the_operator_declares(overlay: str, scope: set[str]) -> None:
    objects = _render(overlay)
    assert granted(objects) == declared(scope)
    bindings = [d for d in objects if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "meshserve-operator", "namespace": NAMESPACE}
        ]
    leader = _one(overlay, "Role", "meshserve-operator-leader")
    assert {grant[1] for grant in granted([leader])} == {"leases"}
    assert not [d for d in objects if d["kind"] == "ClusterRole"] or overlay == "cluster-scope"


def test_the_runtime_account_has_no_roles_and_no_token() -> None:
    for overlay in OVERLAYS:
        account = _one(overlay, "ServiceAccount", "meshserve-runtime")
        assert account["automountServiceAccountToken"] is False
        subjects = [s["name"] for d in _render(overlay) if "subjects" in d for s in d["subjects"]]
        assert "meshserve-runtime" not in subjects


# --- network policies ---------------------------------------------------------------

# The flow table of docs/kubernetes.md: (pods the policy selects, direction, port).
FLOWS = [
    (INSTANCES, "ingress", 8033),  # clients, gRPC
    (INSTANCES, "ingress", 8008),  # clients, REST
    (INSTANCES, "ingress", 2112),  # metrics, from the monitoring namespace
    (INSTANCES, "ingress", 8080),  # instance <-> instance
    (INSTANCES, "egress", 8080),
    (INSTANCES, "ingress", 11881),  # instance <-> instance, the data port
    (INSTANCES, "egress", 11881),
    (INSTANCES, "egress", 2379),  # instances -> etcd
    (INSTANCES, "egress", 443),  # instances -> object storage
    (INSTANCES, "egress", 53),
    (OPERATOR_LABELS, "egress", 443),  # operator -> API server
    (OPERATOR_LABELS, "egress", 6443),
    (OPERATOR_LABELS, "egress", 2379),  # operator -> etcd
    (OPERATOR_LABELS, "egress", 53),
]


def _rules(policies: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    return {
        (
            json.dumps(policy["spec"]["podSelector"]["matchLabels"], sort_keys=True),
            direction,
            port["port"],
        )
        for policy in policies
        for direction in ("ingress", "egress")
        for rule in policy["spec"].get(direction, [])
        for port in rule["ports"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_flow_has_a_rule_and_no_rule_is_not_a_flow(overlay: str) -> None:
    policies = _objects(overlay, "NetworkPolicy")
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"], policy["metadata"]["name"]
    wanted = {
        (json.dumps(labels, sort_keys=True), direction, port) for labels, direction, port in FLOWS
    }
    if overlay == "dev":
        wanted.add((json.dumps(ETCD, sort_keys=True), "ingress", 2379))
    assert _rules(policies) == wanted


def test_a_missing_flow_would_be_caught() -> None:
    policies = json.loads(json.dumps(_objects("namespace-scope", "NetworkPolicy")))
    instances = next(p for p in policies if p["spec"]["podSelector"]["matchLabels"] == INSTANCES)
    instances["spec"]["egress"] = [
        r for r in instances["spec"]["egress"] if r["ports"][0]["port"] != 2379
    ]
    wanted = {(json.dumps(labels, sort_keys=True), d, p) for labels, d, p in FLOWS}
    assert _rules(policies) != wanted


def test_the_dev_etcd_is_reached_by_the_operator_and_instances_and_named_by_the_secret(
    tmp_path: pathlib.Path,
) -> None:
    secret = _one("dev", "Secret", "model-serving-etcd")
    connection = tmp_path / "etcd_connection"
    connection.write_text(secret["stringData"]["etcd_connection"])
    store = with_etcd_connection(StoreSettings(etcd_connection_file=connection), data_dir=tmp_path)
    service = _one("dev", "Service", "etcd")
    assert (
        store.url == f"etcd://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    )
    policy = _one("dev", "NetworkPolicy", "etcd")["spec"]
    sources = [s["podSelector"]["matchLabels"] for rule in policy["ingress"] for s in rule["from"]]
    assert sorted(sources, key=str) == sorted([OPERATOR_LABELS, INSTANCES], key=str)
    assert policy["egress"] == []


# --- config, TLS, generated files ----------------------------------------------------


def _cluster_config(overlay: str) -> ClusterConfig:
    """The overlay's model-serving-config; its instance settings (written
    out explicitly, at their defaults) checked and set aside."""
    config_map = _one(overlay, "ConfigMap", "model-serving-config")
    config = ClusterConfig.from_config_yaml(
        yaml.safe_load(config_map["data"]["config.yaml"]), namespace=NAMESPACE, image="m:1"
    )
    defaults = Settings()
    assert dict(config.instance_env) == {
        "MESHSERVE_SERVER__GRPC_MAX_MESSAGE_SIZE_BYTES": str(
            defaults.server.grpc_max_message_size_bytes
        ),
        "MESHSERVE_SERVER__GRPC_PORT": str(defaults.server.grpc_port),
        "MESHSERVE_SERVER__REST_ENABLED": "true",
        "MESHSERVE_SERVER__REST_PORT": str(defaults.server.rest_port),
        "MESHSERVE_METRICS__ENABLED": "true",
        "MESHSERVE_METRICS__PORT": str(defaults.metrics.port),
        "MESHSERVE_STORE__SERVICE_NAME": defaults.store.service_name,
    }
    return dataclasses.replace(config, instance_env=())


def test_the_shipped_config_is_model_mesh_servings_defaults() -> None:
    assert _cluster_config("namespace-scope") == ClusterConfig(namespace=NAMESPACE, image="m:1")


def test_the_tls_overlay_turns_tls_on_for_the_runtime_pods() -> None:
    config = _cluster_config("tls")
    assert config.tls_secret_name == "meshserve-tls"
    assert config == ClusterConfig(
        namespace=NAMESPACE,
        image="m:1",
        tls_secret_name="meshserve-tls",
        tls_client_auth="optional",
    )
    # ModelMesh Serving's own runtimes: mlserver runs (over TLS), the
    # adapters meshserve does not implement are refused by name.
    runtimes = load_documents((ROOT / "tests/unit/data/resources/runtimes.yaml").read_text())
    rendered = []
    for runtime in runtimes:
        assert isinstance(runtime, ClusterServingRuntime)
        adapter = runtime.spec.built_in_adapter
        assert adapter is not None
        if adapter.server_type != "mlserver":
            with pytest.raises(UnsupportedRuntimeError, match=str(adapter.server_type)):
                render_runtime(runtime, config=config, replicas=1)
            continue
        rendered += render_runtime(runtime, config=config, replicas=1, namespace="team-a")
    assert rendered
    for document in rendered:
        validate_strict(document)
        env = {e["name"] for e in document["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert {"MESHSERVE_TLS__CERT_FILE", "MESHSERVE_TLS__CA_FILE"} <= env


def test_the_generated_files_are_what_the_render_functions_say() -> None:
    result = subprocess.run(
        [str(ROOT / ".venv/bin/python"), str(ROOT / "scripts/render-k8s-manifests"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"run scripts/render-k8s-manifests: {result.stdout}{result.stderr}"
    )


# --- CRDs -------------------------------------------------------------------------------

UPSTREAM = {
    # plural: (kind, scope, version, short names, printer columns)
    "servingruntimes": (
        "ServingRuntime",
        "Namespaced",
        "v1alpha1",
        None,
        ["Disabled", "ModelType", "Containers", "Age"],
    ),
    "clusterservingruntimes": (
        "ClusterServingRuntime",
        "Cluster",
        "v1alpha1",
        None,
        ["Disabled", "ModelType", "Containers", "Age"],
    ),
    "inferenceservices": (
        "InferenceService",
        "Namespaced",
        "v1beta1",
        ["isvc"],
        ["URL", "Ready", "Prev", "Latest", "PrevRolledoutRevision", "LatestReadyRevision", "Age"],
    ),
    "predictors": (
        "Predictor",
        "Namespaced",
        "v1alpha1",
        None,
        ["Type", "Available", "ActiveModel", "TargetModel", "Transition", "Age"],
    ),
}


def _crds() -> dict[str, dict[str, Any]]:
    return {
        d["spec"]["names"]["plural"]: d
        for d in _objects("namespace-scope", "CustomResourceDefinition")
    }


def test_the_crds_have_upstreams_names_scopes_versions_and_printer_columns() -> None:
    crds = _crds()
    assert set(crds) == set(UPSTREAM)
    for plural, (kind, scope, version, short, columns) in UPSTREAM.items():
        spec = crds[plural]["spec"]
        assert crds[plural]["metadata"]["name"] == f"{plural}.serving.kserve.io"
        assert (spec["group"], spec["names"]["kind"], spec["scope"]) == (
            "serving.kserve.io",
            kind,
            scope,
        )
        assert spec["names"].get("shortNames") == short
        (served,) = spec["versions"]
        assert (served["name"], served["served"], served["storage"]) == (version, True, True)
        assert [c["name"] for c in served["additionalPrinterColumns"]] == columns
        assert served["subresources"] == {"status": {}}


def _examples() -> list[dict[str, Any]]:
    paths = [
        *(ROOT / "examples" / "resources").glob("*.yaml"),
        *(ROOT / "tests/unit/data/resources").glob("*.yaml"),
    ]
    documents = [d for path in paths for d in yaml.safe_load_all(path.read_text()) if d]
    items = [i for d in documents for i in (d.get("items") or [d])]
    return [d for d in items if str(d.get("apiVersion", "")).startswith("serving.kserve.io/")]


def test_upstream_shaped_resources_are_accepted_by_the_crds() -> None:
    crds = {crd["spec"]["names"]["kind"]: crd for crd in _crds().values()}
    examples = _examples()
    kinds = {d["kind"] for d in examples}
    assert kinds >= {"ClusterServingRuntime", "InferenceService", "Predictor"}
    for document in examples:
        (version,) = crds[document["kind"]]["spec"]["versions"]
        assert document["apiVersion"].endswith("/" + version["name"])
        jsonschema.validate(document, version["schema"]["openAPIV3Schema"])


def test_the_crds_refuse_what_upstreams_refuse() -> None:
    (version,) = _crds()["predictors"]["spec"]["versions"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"spec": {"path": "x"}}, version["schema"]["openAPIV3Schema"]
        )  # no modelType
