"""ModelMesh's payload processors: each inference request and response
handed to loggers or remote HTTP endpoints, off the request path.

Configured by the space-separated URIs of ``payloads.processors``
(model-serving-config: ``payloadProcessors``). The router offers each
payload; each processor has a bounded queue drained by its own task, and a
payload that finds it full is dropped and counted
(``meshserve_payloads_dropped_total``): inference never waits for a
processor.

- ``_payload.py``: :class:`Payload`, what a processor sees.
- ``settings/_payload_uris.py`` (re-exported): the URIs parsed
  (``logger://``, ``http(s)://``, the model and method filters), checked
  when the settings load.
- ``_http.py``: the minimal HTTP/1.1 client the remote processor POSTs with.
- ``_processors.py``: the logger and the remote (CloudEvents over HTTP POST).
- ``_dispatch.py``: :class:`PayloadProcessors`, the queues and their tasks.
"""

from meshserve.payloads._dispatch import NO_PAYLOADS, PayloadProcessors, PayloadSink
from meshserve.payloads._payload import Payload, PayloadKind
from meshserve.settings import ProcessorSpec, parse_processors

__all__ = [
    "NO_PAYLOADS",
    "Payload",
    "PayloadKind",
    "PayloadProcessors",
    "PayloadSink",
    "ProcessorSpec",
    "parse_processors",
]
