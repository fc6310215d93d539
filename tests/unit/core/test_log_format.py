"""Log records as readable lines or JSON events, with the fields the
request path sets in context variables (``_log_context``) and the trace ids
of the current OpenTelemetry span."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from meshserve import _log_context
from meshserve._log_format import (
    EXTRA_FIELDS,
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
    writes_json,
)


def _record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("meshserve.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, args or ("world",), None, extra=extra
    )


def _in_request(work: object, *, request_id: str | None = "r-1") -> object:
    """``work()`` in a fresh context where a request resolved to m via v."""

    def run() -> object:
        _log_context.start_request(request_id)
        _log_context.set_target("m", "v")
        assert callable(work)
        return work()

    return contextvars.copy_context().run(run)


@pytest.fixture(autouse=True)
def instance() -> Iterator[None]:
    _log_context.set_instance("inst-1")
    yield
    _log_context.set_instance("")


def test_a_json_event_has_every_field() -> None:
    event = json.loads(str(_in_request(lambda: JsonFormatter().format(_record()))))
    assert event == {
        "time": event["time"],
        "level": "WARNING",
        "logger": "meshserve.test",
        "message": "hello world",
        "model_id": "m",
        "vmodel_id": "v",
        "instance": "inst-1",
        "request_id": "r-1",
    }
    assert event["time"].endswith("+00:00")


def test_outside_a_request_only_the_instance_is_added() -> None:
    event = json.loads(JsonFormatter().format(_record()))
    assert set(event) == {"time", "level", "logger", "message", "instance"}


def test_the_current_spans_ids_are_added() -> None:
    context = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        event = json.loads(JsonFormatter().format(_record()))
    assert event["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert event["span_id"] == "00f067aa0ba902b7"


def test_extra_fields_are_added_but_never_replace_the_events_own() -> None:
    record = _record(**{EXTRA_FIELDS: {"code": "OK", "latency_ms": 1.5, "message": "forged"}})
    event = json.loads(JsonFormatter().format(record))
    assert (event["code"], event["latency_ms"], event["message"]) == ("OK", 1.5, "hello world")


def test_a_client_value_cannot_break_the_line() -> None:
    line = JsonFormatter().format(_record("model %s", 'a"\n{"level": "ERROR"}'))
    assert "\n" not in line
    assert json.loads(line)["level"] == "WARNING"


def test_an_exception_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logger = logging.getLogger("meshserve.test")
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            exc_info=sys.exc_info(),
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.mark.parametrize("given", ["has space", 'quote"', "x" * 129, ""])
def test_a_malformed_client_request_id_is_replaced(given: str) -> None:
    request_id = contextvars.copy_context().run(_log_context.start_request, given)
    assert request_id != given
    assert len(request_id) == 32


def test_new_request_ids_differ() -> None:
    made = {contextvars.copy_context().run(_log_context.start_request) for _ in range(1000)}
    assert len(made) == 1000
    assert all(len(request_id) == 32 and int(request_id, 16) >= 0 for request_id in made)


async def test_concurrent_requests_keep_their_own_fields() -> None:
    async def request(name: str) -> dict[str, str]:
        _log_context.start_request(f"id-{name}")
        _log_context.set_target(name)
        await asyncio.sleep(0.01)  # the other request runs meanwhile
        return _log_context.fields()

    first, second = await asyncio.gather(
        asyncio.create_task(request("a")), asyncio.create_task(request("b"))
    )
    assert (first["model_id"], first["request_id"]) == ("a", "id-a")
    assert (second["model_id"], second["request_id"]) == ("b", "id-b")
    assert "vmodel_id" not in first
    assert "request_id" not in _log_context.fields()


def test_a_console_line_ends_with_the_requests_fields() -> None:
    line = str(_in_request(lambda: ConsoleFormatter().format(_record())))
    assert line.endswith(
        "WARNING meshserve.test: hello world [model_id=m vmodel_id=v request_id=r-1]"
    )
    assert ConsoleFormatter().format(_record()).endswith("meshserve.test: hello world")


def test_a_console_line_with_fields_of_its_own_keeps_its_form() -> None:
    """The access log names the model, vmodel and peer itself, in
    ModelMesh's form: no bracketed repeat after it."""
    record = _record(fields={"model_id": "m", "code": "OK"})
    line = str(_in_request(lambda: ConsoleFormatter().format(record)))
    assert line.endswith("meshserve.test: hello world")


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored after the test."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield root
    root.handlers = saved
    root.setLevel(level)


def test_auto_is_json_off_a_terminal_and_console_on_one(root: logging.Logger) -> None:
    piped = logging.StreamHandler(io.StringIO())
    root.handlers = [piped]
    configure_logging("auto")
    assert isinstance(piped.formatter, JsonFormatter)
    assert writes_json()
    primary, secondary = os.openpty()
    with open(secondary, "w") as terminal:
        on_terminal = logging.StreamHandler(terminal)
        root.handlers = [on_terminal]
        configure_logging("auto")
        assert isinstance(on_terminal.formatter, ConsoleFormatter)
        assert not writes_json()
    os.close(primary)


def test_with_no_handler_one_is_added_for_the_stream(root: logging.Logger) -> None:
    out = io.StringIO()
    root.handlers = []
    configure_logging("json", stream=out)
    logging.getLogger("meshserve.x").warning("to the stream")
    assert json.loads(out.getvalue())["message"] == "to the stream"


def test_configuring_the_format_leaves_the_levels_alone(root: logging.Logger) -> None:
    out = io.StringIO()
    root.handlers = [logging.StreamHandler(out)]
    root.setLevel(logging.INFO)
    configure_logging("json")
    assert root.level == logging.INFO
    # What the logger_level config key does at run time.
    meshserve = logging.getLogger("meshserve")
    meshserve.setLevel(logging.DEBUG)
    try:
        logging.getLogger("meshserve.x").debug("now visible")
    finally:
        meshserve.setLevel(logging.NOTSET)
    assert json.loads(out.getvalue())["message"] == "now visible"
