"""Choosing the runtime for a model format."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from meshserve.resources import (
    ClusterServingRuntime,
    FailureReason,
    FormatRef,
    ServingRuntime,
    load_documents,
    parse_resource,
    select_runtime,
)

DATA = pathlib.Path(__file__).parents[1] / "data" / "resources"


def _builtins() -> list[ClusterServingRuntime]:
    runtimes = load_documents((DATA / "runtimes.yaml").read_text())
    cluster = [rt for rt in runtimes if isinstance(rt, ClusterServingRuntime)]
    assert len(cluster) == len(runtimes) == 3
    return cluster


def _runtime(
    name: str,
    formats: list[dict[str, Any]],
    *,
    namespace: str = "default",
    created: str | None = None,
    **spec: Any,
) -> ServingRuntime:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if created is not None:
        metadata["creationTimestamp"] = created
    resource = parse_resource(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": metadata,
            "spec": {"multiModel": True, "supportedModelFormats": formats, **spec},
        }
    )
    assert isinstance(resource, ServingRuntime)
    return resource


def _select(
    name: str,
    version: str | None = None,
    *,
    runtime_name: str | None = None,
    protocol: str | None = None,
    runtimes: list[ServingRuntime] | None = None,
    cluster: list[ClusterServingRuntime] | None = None,
) -> Any:
    return select_runtime(
        model_format=FormatRef(name, version),
        runtime_name=runtime_name,
        protocol_version=protocol,
        namespace="default",
        runtimes=runtimes or [],
        cluster_runtimes=_builtins() if cluster is None else cluster,
    )


@pytest.mark.parametrize(
    ("fmt", "version", "runtime"),
    [
        ("sklearn", None, "mlserver-1.x"),
        ("sklearn", "0", "mlserver-1.x"),
        ("tensorflow", "2", "triton-2.x"),
        ("onnx", None, "triton-2.x"),  # ovms lists onnx without autoSelect
        ("openvino_ir", "opset1", "ovms-1.x"),
    ],
)
def test_autoselect_by_format_and_version(fmt: str, version: str | None, runtime: str) -> None:
    selection = _select(fmt, version)
    assert selection.ok
    assert selection.runtime.name == runtime
    assert selection.reason is None


@pytest.mark.parametrize(("fmt", "version"), [("sklearn", "1"), ("pmml", None)])
def test_no_supporting_runtime(fmt: str, version: str | None) -> None:
    selection = _select(fmt, version)
    assert not selection.ok
    assert selection.reason is FailureReason.NO_SUPPORTING_RUNTIME
    assert str(selection.reason) == "NoSupportingRuntime"
    assert fmt in selection.message


def test_named_runtime_must_exist_be_enabled_and_multi_model() -> None:
    assert _select("onnx", runtime_name="ovms-1.x").runtime.name == "ovms-1.x"
    missing = _select("onnx", runtime_name="nope")
    assert missing.reason is FailureReason.RUNTIME_NOT_RECOGNIZED
    disabled = _select(
        "onnx",
        runtime_name="local",
        runtimes=[_runtime("local", [{"name": "onnx"}], disabled=True)],
    )
    assert disabled.reason is FailureReason.RUNTIME_NOT_RECOGNIZED
    assert "disabled" in disabled.message
    single = _select(
        "onnx",
        runtime_name="local",
        runtimes=[_runtime("local", [{"name": "onnx"}], multiModel=False)],
    )
    assert single.reason is FailureReason.RUNTIME_NOT_RECOGNIZED
    assert "not multiModel" in single.message


def test_named_runtime_must_support_the_format() -> None:
    selection = _select("sklearn", runtime_name="triton-2.x")
    assert selection.reason is FailureReason.NO_SUPPORTING_RUNTIME
    assert "does not support" in selection.message


def test_namespace_runtime_shadows_a_cluster_runtime_of_the_same_name() -> None:
    local = _runtime("mlserver-1.x", [{"name": "sklearn"}], disabled=True)
    selection = _select("sklearn", runtime_name="mlserver-1.x", runtimes=[local])
    assert selection.reason is FailureReason.RUNTIME_NOT_RECOGNIZED


def test_namespace_runtimes_come_before_cluster_runtimes() -> None:
    local = _runtime("mine", [{"name": "sklearn", "autoSelect": True}])
    other_ns = _runtime("theirs", [{"name": "sklearn", "autoSelect": True}], namespace="x")
    selection = _select("sklearn", runtimes=[other_ns, local])
    assert [rt.name for rt in selection.candidates] == ["mine", "mlserver-1.x"]


def test_priority_then_protocol_then_age_then_name() -> None:
    fmt = [{"name": "sklearn", "autoSelect": True}]
    high = _runtime("high", [{"name": "sklearn", "autoSelect": True, "priority": 5}])
    low = _runtime("low", [{"name": "sklearn", "autoSelect": True, "priority": 1}])
    newer = _runtime("b-newer", fmt, created="2024-05-01T00:00:00Z")
    older = _runtime("a-older", fmt, created="2023-05-01T00:00:00Z")
    v1 = _runtime("z-v1", fmt, protocolVersions=["v1"])
    selection = _select("sklearn", runtimes=[older, newer, low, v1, high], cluster=[])
    assert [rt.name for rt in selection.candidates] == ["high", "low", "z-v1", "b-newer", "a-older"]


def test_disabled_and_non_autoselect_runtimes_are_not_auto_selected() -> None:
    off = _runtime("off", [{"name": "sklearn", "autoSelect": True}], disabled=True)
    manual = _runtime("manual", [{"name": "sklearn"}])
    selection = _select("sklearn", runtimes=[off, manual], cluster=[])
    assert selection.reason is FailureReason.NO_SUPPORTING_RUNTIME


@pytest.mark.parametrize(("protocol", "ok"), [("grpc-v2", True), ("v2", True), ("grpc-v1", False)])
def test_protocol_version_must_be_spoken(protocol: str, ok: bool) -> None:
    selection = _select("sklearn", protocol=protocol)
    assert selection.ok is ok


def test_failure_reasons_use_modelmesh_serving_names() -> None:
    assert {reason.value for reason in FailureReason} == {
        "ModelLoadFailed",
        "RuntimeUnhealthy",
        "NoSupportingRuntime",
        "RuntimeNotRecognized",
        "InvalidPredictorSpec",
    }
