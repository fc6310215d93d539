"""The container image and the Kubernetes manifests, checked offline: the
Dockerfile runs as a numeric non-root user; every manifest is valid against
Kubernetes' schemas (strict: unknown fields fail); every container is locked
down; and the settings the pods set are real settings with the values the
ports, probes and volumes assume."""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes_validate
import pytest
import yaml

from meshserve.settings import Settings, load_settings_with_sources
from tests._examples import ROOT

KUBERNETES_VERSION = "1.32"
MANIFESTS = ROOT / "deploy" / "kubernetes"
UID = 10001

# --- Dockerfile ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    argument: str


def _instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, argument = line.partition(" ")
            found.append(Instruction(keyword.upper(), argument.strip()))
    return found


def _final_stage() -> list[Instruction]:
    instructions = _instructions((ROOT / "Dockerfile").read_text())
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def _is_root(user: str) -> bool:
    name, _, group = user.partition(":")
    return name in ("root", "0") or group in ("root", "0")


def test_the_image_runs_as_a_numeric_non_root_user_to_the_end() -> None:
    users = [ins.argument for ins in _final_stage() if ins.keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    # Kubernetes' runAsNonRoot can only check a numeric USER.
    assert re.fullmatch(r"\d+:\d+", users[-1]), users[-1]
    assert users[-1] == f"{UID}:{UID}"
    first_non_root = next(i for i, user in enumerate(users) if not _is_root(user))
    assert not any(_is_root(user) for user in users[first_non_root:]), users


def test_the_image_is_multi_stage_on_python_3_11_slim() -> None:
    instructions = _instructions((ROOT / "Dockerfile").read_text())
    (arg,) = [ins.argument for ins in instructions if ins.keyword == "ARG"]
    assert arg == "PYTHON_IMAGE=python:3.11-slim"
    bases = [ins.argument.split()[0] for ins in instructions if ins.keyword == "FROM"]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    # operator: the same image runs `meshserve operator` (kopf).
    assert any("[formats,storage,etcd,operator]" in ins.argument for ins in instructions)
    # lightgbm links to the system's libgomp.so.1, which python:3.11-slim lacks.
    assert any("libgomp1" in ins.argument for ins in _final_stage() if ins.keyword == "RUN")


def test_the_image_starts_an_instance_without_a_shell_on_the_default_ports() -> None:
    stage = _final_stage()
    (entrypoint,) = [ins.argument for ins in stage if ins.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["meshserve", "instance"]  # exec form: no /bin/sh
    assert not [ins for ins in stage if ins.keyword in ("CMD", "HEALTHCHECK")]
    (expose,) = [ins.argument for ins in stage if ins.keyword == "EXPOSE"]
    defaults = Settings()
    assert {int(port) for port in expose.split()} == {
        defaults.server.grpc_port,
        defaults.server.rest_port,
        defaults.metrics.port,
        _container_ports()["internal"],
    }


def test_the_build_context_leaves_everything_but_the_sources_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    assert {p for p in patterns if p.startswith("!")} == {"!pyproject.toml", "!README.md", "!src/"}


# --- Kubernetes manifests ---------------------------------------------------------


def _manifest_files() -> list[pathlib.Path]:
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents() -> Iterator[dict[str, Any]]:
    for path in _manifest_files():
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        d
        for d in _documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    return found


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment")["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    (container,) = _pod_spec()["containers"]
    assert isinstance(container, dict)
    return container


def _container_ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in _container()["ports"]}


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization  # a base: overlays choose it
    assert sorted(kustomization["resources"]) == [p.name for p in _manifest_files()]


@pytest.mark.parametrize(
    "document", list(_documents()), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_every_manifest_is_valid_in_strict_mode(document: dict[str, Any]) -> None:
    assert "namespace" not in document["metadata"]
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_an_unknown_field_would_fail_validation() -> None:
    # The check above is only worth something if strict mode refuses typos.
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_container_is_locked_down() -> None:
    pod = _pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    containers = pod["containers"] + pod.get("initContainers", [])
    for container in containers:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["runAsUser"] == UID, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert context.get("privileged", False) is False, container["name"]
        limits = container["resources"]["limits"]
        assert "memory" in limits and "memory" in container["resources"]["requests"]


def test_the_only_writable_paths_are_empty_dirs() -> None:
    volumes = {v["name"]: v for v in _pod_spec()["volumes"]}
    writable = {
        m["mountPath"]: volumes[m["name"]]
        for m in _container()["volumeMounts"]
        if not m.get("readOnly", False)
    }
    assert set(writable) == {"/var/lib/meshserve", "/tmp"}
    assert all("emptyDir" in volume for volume in writable.values())
    assert all("sizeLimit" in volume["emptyDir"] for volume in writable.values())


def test_no_role_grants_anything() -> None:
    assert _one("Role")["rules"] == []
    binding = _one("RoleBinding")
    account = _one("ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    assert account["automountServiceAccountToken"] is False
    assert _pod_spec()["serviceAccountName"] == account["metadata"]["name"]


def test_probes_and_services_use_the_instance_ports() -> None:
    container = _container()
    ports = _container_ports()
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    public = _one("Service", "modelmesh-serving")["spec"]["ports"]
    assert {(p["port"], ports[p["targetPort"]]) for p in public} == {(8033, 8033), (8008, 8008)}
    internal = _one("Service", "meshserve-internal")["spec"]
    assert internal["clusterIP"] == "None"
    assert {ports[p["targetPort"]] for p in internal["ports"]} == {ports["internal"], 2112}


def test_the_network_policy_opens_each_port_to_its_callers_only() -> None:
    policy = _one("NetworkPolicy")["spec"]
    instance_labels = _one("Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["podSelector"]["matchLabels"] == instance_labels
    assert policy["policyTypes"] == ["Ingress"]
    rules = {
        frozenset(p["port"] for p in rule["ports"]): rule["from"] for rule in policy["ingress"]
    }
    ports = _container_ports()
    assert set(rules) == {
        frozenset({ports["internal"]}),
        frozenset({ports["grpc"], ports["http"]}),
        frozenset({ports["metrics"]}),
    }
    assert rules[frozenset({ports["internal"]})] == [
        {"podSelector": {"matchLabels": instance_labels}}
    ]
    # Nothing is open to every pod: each rule names the pods it lets in.
    for sources in rules.values():
        assert all(source["podSelector"]["matchLabels"] for source in sources)


def _pod_environment() -> dict[str, str]:
    """The container's MESHSERVE_* variables as a pod would see them, with
    sample values where Kubernetes fills them in and every optional Secret
    present."""
    samples = {"metadata.name": "meshserve-instance-7d9f-abcde", "status.podIP": "10.1.2.3"}
    config_maps = {
        d["metadata"]["name"]: d["data"] for d in _documents() if d["kind"] == "ConfigMap"
    }
    env = {}
    for variable in _container()["env"]:
        source = variable.get("valueFrom", {})
        if "value" in variable:
            value = variable["value"]
        elif "fieldRef" in source:
            value = samples[source["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            value = config_maps[ref["name"]][ref["key"]]
        else:
            assert source["secretKeyRef"]["optional"] is True, variable["name"]
            value = "0" * 64  # a Secret the operator creates
        env[variable["name"]] = value
    return env


def test_the_pod_environment_and_config_make_the_settings_the_manifests_assume(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _pod_environment()
    assert all(name.startswith("MESHSERVE_") for name in env)
    for name in [n for n in os.environ if n.startswith("MESHSERVE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "config.yaml"
    serving_config = _one("ConfigMap", "model-serving-config")["data"]["config.yaml"]
    config.write_text(serving_config)
    assert _container()["args"] == ["--config", "/etc/meshserve/model-serving-config/config.yaml"]

    settings, sources = load_settings_with_sources(config_file=config)

    # Every variable set is a real setting (a misspelt one would be ignored).
    from_env = {source.origin for source in sources.values() if source.kind == "env"}
    assert set(env) <= from_env, set(env) - from_env
    ports = _container_ports()
    assert settings.server.host == "0.0.0.0"
    assert settings.server.grpc_port == ports["grpc"]
    assert settings.server.rest_port == ports["http"]
    assert settings.server.rest_enabled is True
    assert settings.metrics.host == "0.0.0.0"
    assert settings.metrics.port == ports["metrics"]
    assert settings.mesh.internal_port == ports["internal"]
    assert settings.mesh.internal_host == "10.1.2.3"
    assert settings.mesh.instance_id == "meshserve-instance-7d9f-abcde"
    assert settings.store.url == _one("ConfigMap", "meshserve-etcd")["data"]["url"]
    assert settings.store.url.startswith("etcd://")
    mounts = {m["name"]: m["mountPath"] for m in _container()["volumeMounts"]}
    assert str(settings.data_dir) == mounts["data"]
    assert str(settings.storage.config_path) == mounts["storage-config"]
    # podsPerRuntime and the Deployment's replicas agree (ModelMesh's default).
    assert settings.control.pods_per_runtime == _one("Deployment")["spec"]["replicas"] == 2
    assert yaml.safe_load(serving_config)["podsPerRuntime"] == 2
    # The pulled models fit the data volume.
    data_volume = next(v for v in _pod_spec()["volumes"] if v["name"] == "data")
    size_limit = int(data_volume["emptyDir"]["sizeLimit"].removesuffix("Gi")) * 1024**3
    assert settings.storage.cache_max_bytes + settings.storage.max_model_bytes < size_limit
