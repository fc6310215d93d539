"""The access log's lines: fields, quoting of client-chosen values, and
nothing formatted when the logger is off."""

from __future__ import annotations

import logging

import pytest

from meshserve.errors import ModelNotFoundError
from meshserve.protocol.access_log import ACCESS_LOGGER, AccessLog, grpc_status_name
from meshserve.protocol.routing import RoutingHeaders


class _Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_a_line_has_every_field(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    log = AccessLog(instance_id="i-1", clock=clock)
    entry = log.start("grpc", "ModelInfer", peer="ipv4:127.0.0.1:5000")
    entry.target("m", RoutingHeaders(vmodel_id="v", hops=1))
    clock.now += 0.0125
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        entry.done("OK")
    (record,) = caplog.records
    assert record.name == "meshserve.access"
    assert record.getMessage() == (
        'grpc ModelInfer model="m" vmodel="v" code=OK latency_ms=12.5 '
        'peer="ipv4:127.0.0.1:5000" instance="i-1" forwarded=1'
    )


def test_client_values_cannot_forge_a_line(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog(instance_id="i-1")
    entry = log.start("rest", "ModelInfer", peer="127.0.0.1:1")
    entry.target('x" code=OK\nrest ModelInfer model="y' + "z" * 1000, RoutingHeaders())
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        entry.done(404)
    message = caplog.records[0].getMessage()
    assert "\n" not in message
    assert 'model="x\\" code=OK\\nrest' in message
    assert len(message) < 500  # the name is cut
    assert "code=404" in message


def test_nothing_is_written_when_the_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    log = AccessLog(instance_id="i-1")
    with caplog.at_level(logging.WARNING, logger=ACCESS_LOGGER):
        log.start("grpc", "ModelInfer", peer="p").done("OK")
    assert caplog.records == []


def test_status_names() -> None:
    assert grpc_status_name(ModelNotFoundError("no")) == "NOT_FOUND"
    assert grpc_status_name(RuntimeError("boom")) == "INTERNAL"
