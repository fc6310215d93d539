"""The processors: a logger, and a remote endpoint that gets CloudEvents.

The remote's body is ModelMesh's (``RemotePayloadProcessor``): JSON with
``id``, ``modelid``, ``vmodelid``, ``method``, ``kind`` (``request`` or
``response``), ``status`` and ``data`` (the serialized v2 message, base64).
It is sent as a CloudEvent in HTTP binary mode: ``ce-specversion: 1.0``,
``ce-id`` (the inference's id and the kind), ``ce-source`` (the instance),
``ce-type`` ``org.kubeflow.serving.inference.request`` or ``...response``
(the types KServe's inference logger sends, so consumers written for it
route these too) and the ``ce-modelid`` / ``ce-vmodelid`` extensions.
Nothing of the client's request metadata is sent: no credential leaves
with a payload. The POST goes through ``_http.py``, not httpx: it runs on
the instance's event loop, twice per inference.
"""

from __future__ import annotations

import base64
import logging
from typing import Protocol

import orjson

from meshserve.payloads._http import HttpPoster
from meshserve.payloads._payload import Payload

__all__ = ["CLOUDEVENT_TYPE_PREFIX", "LoggerProcessor", "Processor", "RemoteProcessor"]

log = logging.getLogger("meshserve.payloads")

CLOUDEVENT_TYPE_PREFIX = "org.kubeflow.serving.inference."

_LOGGED_BYTES = 4096
"""At most this much of a payload's data goes into a log line (base64): a
16 MiB tensor would make a line no log pipeline keeps."""


class Processor(Protocol):
    """Handles one payload at a time; raises when it could not."""

    async def process(self, payload: Payload) -> None: ...

    async def close(self) -> None: ...


class LoggerProcessor:
    """``logger://``: one INFO line per payload on ``meshserve.payloads``."""

    async def process(self, payload: Payload) -> None:
        data = payload.body()
        shown = base64.b64encode(data[:_LOGGED_BYTES]).decode()
        log.info(
            "payload %s id=%s modelId=%s vModelId=%s method=%s status=%s bytes=%d data=%s%s",
            payload.kind.value,
            payload.id,
            payload.model_id,
            payload.vmodel_id or "",
            payload.method,
            payload.status,
            len(data),
            shown,
            "..." if len(data) > _LOGGED_BYTES else "",
        )

    async def close(self) -> None:
        pass


class RemoteProcessor:
    """``http(s)://...``: POSTs each payload there as a CloudEvent."""

    def __init__(self, *, url: str, timeout_s: float, source: str) -> None:
        self._source = source
        self._poster = HttpPoster(url, timeout_s=timeout_s)

    async def process(self, payload: Payload) -> None:
        kind = payload.kind.value
        body = orjson.dumps(
            {
                "id": payload.id,
                "modelid": payload.model_id,
                "vmodelid": payload.vmodel_id or "",
                "method": payload.method,
                "kind": kind,
                "status": payload.status,
                "data": base64.b64encode(payload.body()).decode(),
            }
        )
        headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": f"{payload.id}-{kind}",
            "ce-source": self._source,
            "ce-type": CLOUDEVENT_TYPE_PREFIX + kind,
            "ce-modelid": payload.model_id,
        }
        if payload.vmodel_id:
            headers["ce-vmodelid"] = payload.vmodel_id
        await self._poster.post(body, headers=headers)

    async def close(self) -> None:
        self._poster.close()
