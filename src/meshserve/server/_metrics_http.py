"""The Prometheus scrape endpoint: ``GET /metrics`` on a port of its own
(ModelMesh's is 2112), apart from the inference ports so that scrapes
never queue behind inference traffic and the port can be firewalled alone.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshserve._lifecycle import Service
from meshserve.metrics import CONTENT_TYPE, SupportsRender
from meshserve.server._rest_server import RestServer

__all__ = ["DEFAULT_METRICS_PORT", "MetricsServer", "create_metrics_app", "start_metrics_server"]

DEFAULT_METRICS_PORT = 2112
"""ModelMesh's metrics port (model-serving-config ``metrics.port``)."""

_PATH = "/metrics"


def create_metrics_app(metrics: SupportsRender) -> Starlette:
    """An ASGI app answering ``GET /metrics`` with ``metrics.render()``; any
    other path is 404."""

    async def scrape(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route(_PATH, scrape, methods=["GET"])])


class MetricsServer(Service):
    """Serves ``metrics`` at ``http://host:port/metrics`` between
    :meth:`start` and :meth:`stop` (or inside ``async with``)."""

    def __init__(self, metrics: SupportsRender, *, host: str, port: int) -> None:
        """``port`` 0 picks a free port; :attr:`port` then tells which."""
        # A scrape is one small response: no grace period worth waiting for.
        self._server = RestServer(
            app=create_metrics_app(metrics), host=host, port=port, shutdown_grace_seconds=1
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


async def start_metrics_server(metrics: SupportsRender, *, host: str, port: int) -> MetricsServer:
    """Start serving ``metrics`` on ``host:port``; stop it with ``await server.stop()``."""
    server = MetricsServer(metrics, host=host, port=port)
    await server.start()
    return server
