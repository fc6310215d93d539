"""Checks shared by the tests of rendered and installed Kubernetes objects:
strict schema validation against a current Kubernetes, and the security
posture every pod must keep."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kubernetes_validate

from meshserve.operator._render import OPERATOR_API_USE

KUBERNETES_VERSION = "1.37"
"""The newest Kubernetes whose schemas kubernetes-validate ships."""


def validate_strict(document: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError for any unknown field or
    wrong type (strict mode refuses fields the schema does not have)."""
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def pod_specs(documents: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every workload among ``documents``."""
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in documents
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet")
    ]


def security_problems(pod: dict[str, Any]) -> list[str]:
    """Every way ``pod`` falls short of the posture (empty: none)."""
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the pod mounts a service-account token")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("the pod shares a host namespace")
    pod_context = pod.get("securityContext", {})
    if pod_context.get("runAsNonRoot") is not True:
        problems.append("the pod does not require a non-root user")
    if pod_context.get("seccompProfile") != {"type": "RuntimeDefault"}:
        problems.append("the pod's seccomp profile is not RuntimeDefault")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        name = container["name"]
        context = container.get("securityContext", {})
        wanted = {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for key, value in wanted.items():
            if context.get(key) != value:
                problems.append(f"container {name}: securityContext.{key} is not {value}")
        if context.get("privileged", False) is not False:
            problems.append(f"container {name} is privileged")
        if context.get("runAsUser") == 0:
            problems.append(f"container {name} runs as root")
    return problems


def granted(objects: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) every Role and ClusterRole grants."""
    return {
        (group, resource, verb)
        for role in objects
        if role["kind"] in ("Role", "ClusterRole")
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def declared(where: set[str]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of OPERATOR_API_USE rows used ``where``."""
    return {
        (use.api_group, use.resource, verb)
        for use in OPERATOR_API_USE
        if use.where in where
        for verb in use.verbs
    }
