"""The Prometheus scrape endpoint: ``GET /metrics`` on a port of its own
(ModelMesh's is 2112), apart from the inference ports so that scrapes
never queue behind inference traffic and the port can be firewalled alone.
"""

from __future__ import annotations

import ssl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshserve._lifecycle import Service
from meshserve.metrics import CONTENT_TYPE, SupportsRender
from meshserve.security import rest_ssl_context
from meshserve.server._rest_server import RestServer
from meshserve.settings import Settings

__all__ = [
    "DEFAULT_METRICS_PORT",
    "MetricsServer",
    "create_metrics_app",
    "metrics_ssl_context",
    "start_metrics_server",
]

DEFAULT_METRICS_PORT = 2112
"""ModelMesh's metrics port (model-serving-config ``metrics.port``)."""

_PATH = "/metrics"


def create_metrics_app(metrics: SupportsRender) -> Starlette:
    """An ASGI app answering ``GET /metrics`` with ``metrics.render()``; any
    other path is 404."""

    async def scrape(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route(_PATH, scrape, methods=["GET"])])


def metrics_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The context of an https metrics port (``metrics.scheme``), None for
    http: the instance's certificate, reloaded as the other ports reload
    it. Scrapers are not asked for a certificate, whatever ``tls.clientAuth``
    says (ModelMesh does not ask either): the metrics hold no model data."""
    tls = settings.tls
    if settings.metrics.scheme != "https":
        return None
    if tls is None:  # the settings refuse this; a guard for direct callers
        raise ValueError("metrics.scheme https needs tls (the certificate to serve)")
    return rest_ssl_context(tls.model_copy(update={"client_auth": "none"}))


class MetricsServer(Service):
    """Serves ``metrics`` at ``http(s)://host:port/metrics`` between
    :meth:`start` and :meth:`stop` (or inside ``async with``)."""

    def __init__(
        self,
        metrics: SupportsRender,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``port`` 0 picks a free port; :attr:`port` then tells which.
        ``ssl_context``: serve https with it."""
        # A scrape is one small response: no grace period worth waiting for.
        self._server = RestServer(
            app=create_metrics_app(metrics),
            host=host,
            port=port,
            shutdown_grace_seconds=1,
            ssl_context=ssl_context,
        )

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        return self._server.port

    async def start(self) -> None:
        """Bind and start serving; returns once scrapes are accepted."""
        await self._server.start()

    async def stop(self) -> None:
        """Stop serving. Safe to call more than once."""
        await self._server.stop()


async def start_metrics_server(
    metrics: SupportsRender, *, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> MetricsServer:
    """Start serving ``metrics`` on ``host:port`` (https with ``ssl_context``);
    stop it with ``await server.stop()``."""
    server = MetricsServer(metrics, host=host, port=port, ssl_context=ssl_context)
    await server.start()
    return server
