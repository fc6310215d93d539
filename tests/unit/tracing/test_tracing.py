"""meshserve.tracing: free when off, honest about what it cannot export."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meshserve import tracing
from tests._otlp import otlp_receiver


def test_with_tracing_off_no_sdk_is_imported_and_no_span_is_built() -> None:
    # (The API alone may be: the JSON log formatter reads the current span through it.)
    # A fresh interpreter: this one may have imported the SDK for other tests.
    code = """
import sys
import meshserve.server, meshserve.mesh, meshserve.runtime, meshserve.protocol.peer
from meshserve import tracing
assert tracing.span("x", attributes={"a": 1}) is tracing.NULL_SPAN
parent = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
assert tracing.server_span("x", carrier={"traceparent": parent}) is tracing.NULL_SPAN
with tracing.span("x") as span:
    span.set_attribute("k", "v")
assert tracing.outgoing() == () and tracing.traceparent() == ""
assert not tracing.enabled()
loaded = sorted(
    name for name in sys.modules if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))
)
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_exporter_meshserve_does_not_have_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER: zipkin"):
        tracing.configure(service_name="t", environ={"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="over gRPC"):
        tracing.configure(
            service_name="t", environ={"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        )
    assert not tracing.enabled()


def test_the_standard_switch_off_wins() -> None:
    assert tracing.configure(service_name="t", environ={"OTEL_SDK_DISABLED": "true"}) is None
    assert not tracing.enabled()


def test_spans_nest_and_the_context_goes_out_and_comes_back_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        with tracing.traced(enabled=True, service_name="unit", instance_id="i-1"):
            assert tracing.enabled()
            with tracing.span("outer") as outer:
                outer.set_attribute("meshserve.model_id", "m")
                headers = dict(tracing.outgoing())
                parent = tracing.traceparent()
            assert headers["traceparent"] == parent
            with tracing.server_span("inner", carrier=headers.items()):
                pass
        assert not tracing.enabled()  # off again, what was batched sent
        spans = {span.name: span for span in receiver.spans()}
    assert spans["inner"].trace_id == spans["outer"].trace_id
    assert spans["inner"].parent_span_id == spans["outer"].span_id
    assert spans["outer"].attributes == {"meshserve.model_id": "m"}
    assert spans["outer"].resource["service.name"] == "unit"
    assert spans["outer"].resource["service.instance.id"] == "i-1"
