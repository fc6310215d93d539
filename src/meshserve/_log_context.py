"""Who a log line is about, without passing it around.

The request path sets the fields once (:func:`start_request` when a call
comes in, :func:`set_target` once its model is resolved) in context
variables: each gRPC call and each REST request runs in its own asyncio
task, so a call's fields stay its own, and tasks or threads it starts
inherit them. The instance id is the process's (:func:`set_instance`).
The log formatters (``_log_format``) read them all with :func:`fields`.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import re

__all__ = ["REQUEST_ID_HEADER", "fields", "set_instance", "set_target", "start_request"]

REQUEST_ID_HEADER = "x-request-id"
"""A client's own request id (HTTP header or gRPC metadata), used when well formed."""

# Short, printable and without spaces or quotes: it goes into log lines verbatim.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")

_model_id: contextvars.ContextVar[str] = contextvars.ContextVar("model_id", default="")
_vmodel_id: contextvars.ContextVar[str] = contextvars.ContextVar("vmodel_id", default="")
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class _Process:
    instance = ""
    id_prefix = ""
    """Random, made at the first request id needed: with ``_ids``, request
    ids unique across processes without a uuid4 (a getrandom call and an
    object) per request."""


_ids = itertools.count()


def set_instance(instance_id: str) -> None:
    """This process serves ``instance_id`` (every line names it)."""
    _Process.instance = instance_id


def start_request(client_id: str | None = None) -> str:
    """A request starts: its id is the client's ``client_id`` when well
    formed, else a new one. Returns it."""
    if client_id is None or not _WELL_FORMED.fullmatch(client_id):
        client_id = _new_id()
    _request_id.set(client_id)
    _model_id.set("")
    _vmodel_id.set("")
    return client_id


def _new_id() -> str:
    """32 hex digits: 64 random bits of this process, then a counter."""
    if not _Process.id_prefix:
        _Process.id_prefix = os.urandom(8).hex()
    return f"{_Process.id_prefix}{next(_ids) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def set_target(model_id: str, vmodel_id: str | None = None) -> None:
    """The current request was resolved to ``model_id`` (through ``vmodel_id``)."""
    _model_id.set(model_id)
    _vmodel_id.set(vmodel_id or "")


def fields() -> dict[str, str]:
    """The fields set for the current context (unset ones left out)."""
    values = {
        "model_id": _model_id.get(),
        "vmodel_id": _vmodel_id.get(),
        "instance": _Process.instance,
        "request_id": _request_id.get(),
    }
    return {name: value for name, value in values.items() if value}
