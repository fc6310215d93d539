"""A ServingRuntime's Deployment and HPA as the operator renders them:
valid objects, locked-down pods, the SPI wired inside the pod, rollouts
only when the runtime or the config changes, upstream's HPA annotations,
and the refusal of adapters meshserve does not implement."""

from __future__ import annotations

import copy
import os
from typing import Any

import kubernetes_validate
import pytest

from meshserve.controller import BUILTIN_RUNTIME, PICKLE_RUNTIME
from meshserve.errors import InvalidResourceError, UnsupportedRuntimeError
from meshserve.operator._render import (
    AUTOSCALER_CLASS_ANNOTATION,
    INSTANCE_CONTAINER,
    MAX_SCALE_ANNOTATION,
    METRICS_ANNOTATION,
    MIN_SCALE_ANNOTATION,
    RUNTIME_HASH_ANNOTATION,
    TARGET_UTILIZATION_ANNOTATION,
    UNSUPPORTED_ADAPTERS,
    ClusterConfig,
    render_runtime,
)
from meshserve.resources import ClusterServingRuntime, ServingRuntime, parse_resource
from meshserve.settings import load_settings_with_sources
from tests._kubernetes import pod_specs, security_problems, validate_strict

CONFIG = ClusterConfig(namespace="modelmesh-serving", image="registry.example/meshserve:1.0")


def _runtime(
    spec: dict[str, Any], *, annotations: dict[str, str] | None = None, name: str = "rt"
) -> Any:
    document = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name, "namespace": "models", "annotations": annotations or {}},
        "spec": {"multiModel": True, **spec},
    }
    return parse_resource(document)


def mlserver_runtime(**extra: Any) -> ServingRuntime:
    """Upstream's mlserver-1.x, trimmed."""
    runtime = _runtime(
        {
            "supportedModelFormats": [{"name": "sklearn", "version": "0", "autoSelect": True}],
            "protocolVersions": ["grpc-v2"],
            "grpcEndpoint": "port:8085",
            "grpcDataEndpoint": "port:8001",
            "containers": [
                {
                    "name": "mlserver",
                    "image": "seldonio/mlserver:1.3.2",
                    "env": [
                        {"name": "MLSERVER_MODELS_DIR", "value": "/models/_mlserver_models/"},
                        {"name": "MLSERVER_GRPC_PORT", "value": "8001"},
                        {"name": "MLSERVER_HTTP_PORT", "value": "8002"},
                        {"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"},
                    ],
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                        "limits": {"memory": "1Gi"},
                    },
                    # A runtime cannot loosen the pod's lock-down.
                    "securityContext": {"runAsUser": 1000, "privileged": True},
                }
            ],
            "builtInAdapter": {"serverType": "mlserver", "memBufferBytes": 134217728},
        },
        **extra,
    )
    assert isinstance(runtime, ServingRuntime)
    return runtime


def custom_runtime(command: list[str] | None = None, **extra: Any) -> ServingRuntime:
    runtime = _runtime(
        {
            "supportedModelFormats": [{"name": "custom", "autoSelect": True}],
            "containers": [
                {
                    "name": "server",
                    "image": "example/custom-runtime:2",
                    "command": command or ["serve", "--listen", "$(MESHSERVE_RUNTIME_LISTEN)"],
                }
            ],
        },
        **extra,
    )
    assert isinstance(runtime, ServingRuntime)
    return runtime


def _deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment


def _containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


ALL_RUNTIMES = {
    "mlserver": mlserver_runtime,
    "custom": custom_runtime,
    "hpa": lambda: mlserver_runtime(annotations={AUTOSCALER_CLASS_ANNOTATION: "hpa"}),
}


@pytest.mark.parametrize("make", ALL_RUNTIMES.values(), ids=ALL_RUNTIMES.keys())
@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        ClusterConfig(
            namespace="mm", image="m:1", tls_secret_name="mm-tls", tls_client_auth="require"
        ),
    ],
    ids=["plain", "tls"],
)
def test_every_rendered_object_is_valid_and_every_pod_locked_down(
    make: Any, config: ClusterConfig
) -> None:
    objects = render_runtime(make(), config=config, replicas=2)
    for document in objects:
        validate_strict(document)
    for name, pod in pod_specs(objects):
        assert security_problems(pod) == [], name


def test_the_checks_fail_on_a_container_that_keeps_capabilities_or_root_or_a_token() -> None:
    deployment = _deployment(render_runtime(mlserver_runtime(), config=CONFIG, replicas=1))
    pod = deployment["spec"]["template"]["spec"]
    loose = copy.deepcopy(pod)
    loose["containers"][1]["securityContext"]["capabilities"] = {"drop": []}
    loose["containers"][2]["securityContext"]["readOnlyRootFilesystem"] = False
    loose["containers"][0]["securityContext"]["runAsNonRoot"] = False
    loose["automountServiceAccountToken"] = True
    problems = security_problems(loose)
    assert len(problems) == 4, problems
    # Strict validation refuses a misspelt field too.
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = (
        True
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strict(deployment)


def test_the_deployment_has_modelmesh_servings_name_labels_and_replicas() -> None:
    deployment = _deployment(render_runtime(mlserver_runtime(), config=CONFIG, replicas=3))
    assert deployment["metadata"]["name"] == "modelmesh-serving-rt"
    assert deployment["metadata"]["namespace"] == "models"
    assert deployment["spec"]["replicas"] == 3
    selector = {"modelmesh-service": "modelmesh-serving", "name": "modelmesh-serving-rt"}
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "meshserve-runtime"
    assert pod["automountServiceAccountToken"] is False


def test_a_cluster_runtime_goes_to_the_namespace_asked_for() -> None:
    document = mlserver_runtime().to_document()
    document["kind"] = "ClusterServingRuntime"
    del document["metadata"]["namespace"]
    runtime = parse_resource(document)
    assert isinstance(runtime, ClusterServingRuntime)
    assert (
        _deployment(render_runtime(runtime, config=CONFIG, replicas=1, namespace="team-a"))[
            "metadata"
        ]["namespace"]
        == "team-a"
    )
    assert (
        _deployment(render_runtime(runtime, config=CONFIG, replicas=1))["metadata"]["namespace"]
        == "modelmesh-serving"
    )


def test_mlserver_runs_behind_meshserves_adapter_on_loopback_and_a_shared_socket() -> None:
    containers = _containers(
        _deployment(render_runtime(mlserver_runtime(), config=CONFIG, replicas=1))
    )
    assert list(containers) == [INSTANCE_CONTAINER, "mlserver-adapter", "mlserver"]
    adapter = containers["mlserver-adapter"]
    assert adapter["image"] == CONFIG.image
    args = adapter["command"] + adapter["args"]
    assert args[:3] == ["meshserve", "adapter", "mlserver"]
    option = dict(zip(args[3::2], args[4::2], strict=False))
    assert option["--listen"] == "unix:/var/run/meshserve/runtime.sock"
    assert option["--mlserver-grpc"] == "127.0.0.1:8001"
    assert option["--models-dir"] == "/models/_mlserver_models"
    # ModelMesh's capacity: the memory request minus memBufferBytes.
    assert option["--capacity-bytes"] == str(1024**3 - 134217728)
    mm = _env(containers[INSTANCE_CONTAINER])
    assert mm["MESHSERVE_RUNTIME__HOST"] == "external"
    assert mm["MESHSERVE_RUNTIME__EXTERNAL_ADDRESS"] == option["--listen"]
    assert mm["MESHSERVE_RUNTIME__EXTERNAL_DATA_ADDRESS"] == "127.0.0.1:8001"
    assert mm["MESHSERVE_MESH__RUNTIME_NAME"] == "rt"
    assert _env(containers["mlserver"])["MLSERVER_HOST"] == "127.0.0.1"
    # The runtime chose its user; nothing else of its securityContext stays.
    assert containers["mlserver"]["securityContext"]["runAsUser"] == 1000
    assert containers["mlserver"]["securityContext"]["privileged"] is False
    mounts = {c: {m["mountPath"] for m in containers[c]["volumeMounts"]} for c in containers}
    assert "/models" in mounts["mlserver"] & mounts["mlserver-adapter"] & mounts[INSTANCE_CONTAINER]
    assert "/var/run/meshserve" in mounts["mlserver-adapter"] & mounts[INSTANCE_CONTAINER]


def test_secrets_are_mounted_into_the_instance_alone() -> None:
    config = ClusterConfig(namespace="mm", image="m:1", tls_secret_name="mm-tls")
    deployment = _deployment(render_runtime(mlserver_runtime(), config=config, replicas=1))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["storage-config"]["secret"]["secretName"] == "storage-config"
    assert volumes["etcd-config"]["secret"]["secretName"] == "model-serving-etcd"
    assert volumes["etcd-config"]["secret"]["items"] == [
        {"key": "etcd_connection", "path": "etcd_connection"}
    ]
    assert volumes["tls"]["secret"]["secretName"] == "mm-tls"
    secret_volumes = {name for name, v in volumes.items() if "secret" in v}
    for name, container in _containers(deployment).items():
        mounted = {m["name"] for m in container["volumeMounts"]} & secret_volumes
        assert mounted == (secret_volumes if name == INSTANCE_CONTAINER else set()), name


def test_a_custom_runtime_gets_the_pool_variables_its_command_refers_to() -> None:
    containers = _containers(
        _deployment(render_runtime(custom_runtime(), config=CONFIG, replicas=1))
    )
    server = containers["server"]
    assert _env(server)["MESHSERVE_RUNTIME_LISTEN"] == "unix:/var/run/meshserve/runtime.sock"
    assert _env(containers[INSTANCE_CONTAINER])["MESHSERVE_RUNTIME__EXTERNAL_ADDRESS"] == (
        "unix:/var/run/meshserve/runtime.sock"
    )
    on_port = custom_runtime()
    on_port = _runtime({**on_port.to_document()["spec"], "grpcEndpoint": "port:9000"})
    mm = _containers(_deployment(render_runtime(on_port, config=CONFIG, replicas=1)))[
        INSTANCE_CONTAINER
    ]
    assert _env(mm)["MESHSERVE_RUNTIME__EXTERNAL_ADDRESS"] == "127.0.0.1:9000"


@pytest.mark.parametrize("name", [BUILTIN_RUNTIME, PICKLE_RUNTIME])
def test_meshserves_own_runtimes_run_inside_the_instance(name: str) -> None:
    runtime = _runtime(
        {"supportedModelFormats": [{"name": "sklearn", "autoSelect": True}]}, name=name
    )
    objects = render_runtime(runtime, config=CONFIG, replicas=2)
    deployment = _deployment(objects)
    validate_strict(deployment)
    assert list(_containers(deployment)) == [INSTANCE_CONTAINER]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    host = _env(_containers(deployment)[INSTANCE_CONTAINER])["MESHSERVE_RUNTIME__HOST"]
    assert host == ("inprocess" if name == BUILTIN_RUNTIME else "process")


@pytest.mark.parametrize("server_type", UNSUPPORTED_ADAPTERS)
def test_adapters_meshserve_does_not_implement_are_refused_by_name(server_type: str) -> None:
    runtime = _runtime(
        {
            "containers": [{"name": "server", "image": f"example/{server_type}:1"}],
            "builtInAdapter": {"serverType": server_type},
        }
    )
    with pytest.raises(UnsupportedRuntimeError, match=server_type) as caught:
        render_runtime(runtime, config=CONFIG, replicas=1)
    assert caught.value.field == "spec.builtInAdapter.serverType"
    assert isinstance(caught.value, InvalidResourceError)  # a permanent, resource-level error


def test_a_runtime_with_nothing_to_run_is_refused() -> None:
    with pytest.raises(UnsupportedRuntimeError, match="needs containers"):
        render_runtime(_runtime({}), config=CONFIG, replicas=1)


# --- rollouts ----------------------------------------------------------------------


def _template(runtime: Any, config: ClusterConfig = CONFIG, replicas: int = 2) -> dict[str, Any]:
    template: dict[str, Any] = _deployment(
        render_runtime(runtime, config=config, replicas=replicas)
    )["spec"]["template"]
    return template


def test_the_pod_template_changes_with_the_runtime_spec_and_the_config() -> None:
    before = _template(custom_runtime())
    changed = _template(
        custom_runtime(["serve", "--listen", "$(MESHSERVE_RUNTIME_LISTEN)", "--fast"])
    )
    assert changed != before
    hash_key = RUNTIME_HASH_ANNOTATION
    assert (
        changed["metadata"]["annotations"][hash_key] != before["metadata"]["annotations"][hash_key]
    )
    reconfigured = _template(
        custom_runtime(), ClusterConfig(namespace=CONFIG.namespace, image="m:2")
    )
    assert (
        reconfigured["metadata"]["annotations"][hash_key]
        != before["metadata"]["annotations"][hash_key]
    )


def test_the_pod_template_stays_the_same_otherwise() -> None:
    before = _template(custom_runtime())
    # Rendered again, scaled, re-read with new metadata (resourceVersion,
    # generation, annotations that are not the pod's): no rollout.
    document = custom_runtime().to_document()
    document["metadata"] |= {"resourceVersion": "999", "generation": 7}
    document["metadata"]["annotations"] = {MIN_SCALE_ANNOTATION: "1"}
    document["spec"]["replicas"] = 5
    assert _template(parse_resource(document), replicas=4) == before
    assert _template(custom_runtime()) == before


# --- autoscaling -------------------------------------------------------------------


def test_an_hpa_is_rendered_from_upstreams_annotations() -> None:
    runtime = mlserver_runtime(
        annotations={
            AUTOSCALER_CLASS_ANNOTATION: "hpa",
            MIN_SCALE_ANNOTATION: "2",
            MAX_SCALE_ANNOTATION: "6",
            METRICS_ANNOTATION: "memory",
            TARGET_UTILIZATION_ANNOTATION: "70",
        }
    )
    objects = render_runtime(runtime, config=CONFIG, replicas=2)
    deployment, hpa = objects
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert hpa["kind"] == "HorizontalPodAutoscaler" and hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"] == {
        "name": "memory",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }


def test_hpa_defaults_are_upstreams_and_scale_to_zero_drops_it() -> None:
    runtime = mlserver_runtime(annotations={AUTOSCALER_CLASS_ANNOTATION: "hpa"})
    _, hpa = render_runtime(runtime, config=CONFIG, replicas=1)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 1)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    (deployment,) = render_runtime(runtime, config=CONFIG, replicas=0)
    assert deployment["spec"]["replicas"] == 0
    assert render_runtime(mlserver_runtime(), config=CONFIG, replicas=2)[1:] == []


@pytest.mark.parametrize(
    ("key", "value"),
    [(MIN_SCALE_ANNOTATION, "0"), (MAX_SCALE_ANNOTATION, "many"), (METRICS_ANNOTATION, "rps")],
)
def test_a_malformed_autoscaling_annotation_names_itself(key: str, value: str) -> None:
    runtime = mlserver_runtime(annotations={AUTOSCALER_CLASS_ANNOTATION: "hpa", key: value})
    with pytest.raises(InvalidResourceError, match=value) as caught:
        render_runtime(runtime, config=CONFIG, replicas=1)
    assert key in caught.value.field


# --- the instance's settings -----------------------------------------------------


@pytest.mark.parametrize(
    "tls", [{}, {"tls": {"secretName": "mm-tls", "clientAuth": "require"}}], ids=["plain", "tls"]
)
def test_the_instance_environment_makes_real_settings(
    tls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ClusterConfig.from_config_yaml(
        {"grpcMaxMessageSizeBytes": 1048576, "metrics": {"perModel": True}, **tls},
        namespace="mm",
        image="m:1",
    )
    mm = _containers(_deployment(render_runtime(mlserver_runtime(), config=config, replicas=1)))[
        INSTANCE_CONTAINER
    ]
    samples = {"metadata.name": "modelmesh-serving-rt-abc", "status.podIP": "10.1.2.3"}
    for name in [n for n in os.environ if n.startswith("MESHSERVE_")]:
        monkeypatch.delenv(name)
    env = {}
    for variable in mm["env"]:
        source = variable.get("valueFrom", {})
        if "fieldRef" in source:
            env[variable["name"]] = samples[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            env[variable["name"]] = "0" * 64
        else:
            env[variable["name"]] = variable["value"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, sources = load_settings_with_sources(config_file=None)
    from_env = {source.origin for source in sources.values() if source.kind == "env"}
    assert set(env) <= from_env, set(env) - from_env
    assert settings.server.host == "0.0.0.0"
    assert settings.server.grpc_max_message_size_bytes == 1048576
    assert settings.metrics.per_model is True
    assert settings.mesh.instance_id == "modelmesh-serving-rt-abc"
    assert settings.mesh.internal_host == "10.1.2.3"
    assert settings.mesh.labels == ("mt:sklearn", "mt:sklearn:0")
    assert settings.control.controller_enabled is False
    assert str(settings.store.etcd_connection_file) == "/etc/meshserve/etcd/etcd_connection"
    if tls:
        assert settings.tls is not None
        assert str(settings.tls.cert_file) == "/etc/meshserve/tls/tls.crt"
        assert str(settings.tls.ca_file) == "/etc/meshserve/tls/ca.crt"
        assert settings.tls.client_auth == "require"
    else:
        assert settings.tls is None
    ports = {p["name"]: p["containerPort"] for p in mm["ports"]}
    assert (settings.server.grpc_port, settings.server.rest_port) == (ports["grpc"], ports["http"])
    assert (settings.mesh.internal_port, settings.metrics.port) == (
        ports["internal"],
        ports["metrics"],
    )
    # The data port the instance binds is the one the pod declares (and the
    # NetworkPolicy opens between instances).
    assert settings.mesh.data_plane and settings.mesh.data_port == ports["data"] == 11881
