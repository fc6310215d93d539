"""How client commands print answers: JSON with the protos' field names, or
an aligned table."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import click
import orjson

__all__ = ["Table", "age", "emit", "output_option", "print_json", "proto_json", "size"]

_Command = TypeVar("_Command", bound=Callable[..., None])


class ProtoMessage(Protocol):
    """The part of ``google.protobuf.message.Message`` that proto_json reads
    (protobuf ships no type stubs here)."""

    DESCRIPTOR: Any

    def HasField(self, field_name: str) -> bool: ...


def output_option(command: _Command) -> _Command:
    """Add ``-o json|table`` (passed as ``output``)."""
    return click.option(
        "-o",
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="json uses the field names of the mmesh / admin protos.",
    )(command)


@dataclass(frozen=True, slots=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        lines = [self.headers, *self.rows]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        )


def print_json(data: Any, *, indent: bool = True) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 if indent else 0).decode())


def emit(output: str, *, data: Any, table: Callable[[], Table]) -> None:
    """Print ``data`` as JSON, or the table built from it."""
    if output == "json":
        print_json(data)
    else:
        click.echo(table().render())


def proto_json(message: ProtoMessage) -> dict[str, Any]:
    """Every field of ``message`` under its proto name, defaults included;
    enums by name, 64-bit integers as numbers (not the proto3 JSON strings)
    and unset message fields as null."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            out[field.name] = [_value(field, item) for item in value]
        elif field.type == field.TYPE_MESSAGE and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: Any, value: Any) -> Any:
    if field.type == field.TYPE_MESSAGE:
        return proto_json(value)
    if field.type == field.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    return value


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n_bytes: int) -> str:
    """1536 -> '1.5KiB'; 0 (unknown or unloaded) -> '-'."""
    if n_bytes <= 0:
        return "-"
    value = float(n_bytes)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{n_bytes}B" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def age(epoch_ms: int, *, now_s: float | None = None) -> str:
    """How long ago a time in milliseconds since the epoch was: '42s', '3m',
    '5h', '2d'; 0 (never) -> '-'."""
    if epoch_ms <= 0:
        return "-"
    seconds = max(0, int((now_s if now_s is not None else time.time()) - epoch_ms / 1000))
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds // span}{unit}"
    return f"{seconds}s"
