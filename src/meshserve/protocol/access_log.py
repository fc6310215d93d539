"""The access log: one line per inference request, gRPC and REST alike
(model-serving-config ``enableAccessLogging``, setting
``server.accessLogging``), to the logger ``meshserve.access`` at INFO::

    grpc ModelInfer model="m" vmodel="v" code=OK latency_ms=3.1 peer="ipv4:127.0.0.1:5071" \
        instance="a1"
    rest ModelInfer model="m" vmodel="" code=404 latency_ms=0.4 peer="127.0.0.1:5072" \
        instance="a1"
    grpc ModelInfer model="m" vmodel="v" code=OK latency_ms=2.0 peer="ipv4:127.0.0.1:5073" \
        instance="a2" forwarded=1

(one line each, cut here to fit).
``code`` is the gRPC status name over gRPC and the HTTP status over REST.
``forwarded=N`` marks a request another instance forwarded here (the N-th
hop), so a client's request that was forwarded is two lines, one per
instance. Client-chosen values (model names, the peer) are JSON strings:
escaped and bounded, so that a name cannot forge a line. Credentials and
payloads are never logged. With ``log.format: json`` the line is an event
whose fields hold the same values (``protocol``, ``method``, ``model_id``,
``vmodel_id``, ``code``, ``latency_ms``, ``peer``, ``instance``,
``forwarded``), beside the request's id.

Off, the front ends hold no :class:`AccessLog` at all, so nothing is timed or
formatted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from meshserve._log_format import EXTRA_FIELDS as LOG_FIELDS
from meshserve.errors import MeshServeError
from meshserve.protocol.routing import RoutingHeaders
from meshserve.protocol.status import grpc_code

__all__ = ["ACCESS_LOGGER", "AccessEntry", "AccessLog", "grpc_status_name"]

ACCESS_LOGGER = "meshserve.access"
"""The logger the access lines go to."""

# A model name may be up to what a request can carry; a log line need not.
_FIELD_CHARS = 256


class AccessLog:
    """Writes the access lines of one instance."""

    def __init__(
        self,
        *,
        instance_id: str,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._instance_id = instance_id
        self._instance = _field(instance_id)
        self._log = logger or logging.getLogger(ACCESS_LOGGER)
        self._clock = clock

    def start(self, protocol: str, method: str, *, peer: str) -> AccessEntry:
        """A request began: its line is written by :meth:`AccessEntry.done`."""
        return AccessEntry(self, protocol=protocol, method=method, peer=peer, started=self._clock())

    def _write(self, entry: AccessEntry, code: str | int) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        latency_ms = round((self._clock() - entry.started) * 1000, 1)
        # The same values as fields of the JSON event (log.format json).
        fields: dict[str, object] = {
            "protocol": entry.protocol,
            "method": entry.method,
            "model_id": entry.model_id[:_FIELD_CHARS],
            "vmodel_id": entry.vmodel_id[:_FIELD_CHARS],
            "code": code,
            "latency_ms": latency_ms,
            "peer": entry.peer[:_FIELD_CHARS],
            "instance": self._instance_id,
        }
        if entry.hops:
            fields["forwarded"] = entry.hops
        self._log.info(
            "%s %s model=%s vmodel=%s code=%s latency_ms=%.1f peer=%s instance=%s%s",
            entry.protocol,
            entry.method,
            _field(entry.model_id),
            _field(entry.vmodel_id),
            code,
            latency_ms,
            _field(entry.peer),
            self._instance,
            f" forwarded={entry.hops}" if entry.hops else "",
            extra={LOG_FIELDS: fields},
        )


class AccessEntry:
    """One request's line, filled in as the request is understood."""

    __slots__ = ("_log", "hops", "method", "model_id", "peer", "protocol", "started", "vmodel_id")

    def __init__(
        self, log: AccessLog, *, protocol: str, method: str, peer: str, started: float
    ) -> None:
        self._log = log
        self.protocol = protocol
        self.method = method
        self.peer = peer
        self.started = started
        self.model_id = ""
        self.vmodel_id = ""
        self.hops = 0

    def target(self, model_id: str, headers: RoutingHeaders) -> None:
        """The model the request was resolved to, and how it came."""
        self.model_id = model_id
        self.vmodel_id = headers.vmodel_id or ""
        self.hops = headers.hops

    def done(self, code: str | int) -> None:
        """The request answered ``code``: write its line."""
        self._log._write(self, code)


def grpc_status_name(exc: BaseException) -> str:
    """The gRPC status a call that raised ``exc`` answers with, by name."""
    if isinstance(exc, MeshServeError):
        name: str = grpc_code(exc).name
        return name
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return "INTERNAL"


def _field(value: str) -> str:
    if len(value) > _FIELD_CHARS:
        value = value[:_FIELD_CHARS] + "..."
    return json.dumps(value)
