"""An HTTP server for an ASGI app, run by uvicorn inside the current event loop.

uvicorn normally owns the process (its loop, its signal handlers, its
logging config); here it is one task among the instance's others. The
socket is bound here, so a port in use is an ``OSError`` from ``start()``
rather than uvicorn's ``sys.exit``, and port 0 tells the real port at once.
Connections are bounded in time and number per client (``_rest_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from meshserve._lifecycle import Service
from meshserve.server._ports import listening_socket
from meshserve.server._rest_connections import ConnectionLimits, guarded_protocol

__all__ = ["RestServer"]

_log = logging.getLogger("meshserve.server.rest")


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class RestServer(Service):
    """Serves ``app`` on ``host:port`` from ``start()`` (or entering
    ``async with``) until ``stop()`` (or leaving it); ``port`` is then the
    bound port."""

    def __init__(
        self,
        *,
        app: ASGIApp,
        host: str,
        port: int,
        access_log: bool = False,
        shutdown_grace_seconds: int = 5,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        """``port`` 0 picks a free port. ``shutdown_grace_seconds`` is how
        long ``stop()`` lets requests in flight finish before cancelling them.
        ``limits`` bounds the connections (None: the defaults).
        """
        self._app = app
        self._host = host
        self._requested_port = port
        self._access_log = access_log
        self._grace = shutdown_grace_seconds
        self._reuse_port = reuse_port
        self._ssl_context = ssl_context
        self._limits = limits or ConnectionLimits()
        self._state = _State.NEW
        self._port: int | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._port is None:
            raise RuntimeError("the REST server has not started")
        return self._port

    async def start(self) -> None:
        """Bind and start serving; returns once connections are accepted."""
        if self._state is not _State.NEW:
            raise RuntimeError(f"the REST server is {self._state.value}; it starts once")
        sock = listening_socket(self._host, self._requested_port, reuse_port=self._reuse_port)
        config = uvicorn.Config(
            self._app,
            host=self._host,
            port=sock.getsockname()[1],
            lifespan="off",
            log_config=None,  # leave the process's logging alone
            access_log=self._access_log,
            interface="asgi3",
            http=guarded_protocol(self._limits),
            timeout_keep_alive=self._limits.idle_timeout_s,
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=self._grace,
            ssl_context_factory=self._ssl_factory() if self._ssl_context is not None else None,
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(
            server.serve(sockets=[sock]), name=f"rest-server {self._host}:{config.port}"
        )
        started = asyncio.create_task(server.started_event.wait())
        try:
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled while starting: leave nothing running
            started.cancel()
            task.cancel()
            sock.close()
            raise
        if not started.done():
            started.cancel()
            sock.close()
            task.result()  # raises what stopped uvicorn
            raise RuntimeError("the REST server stopped while starting")
        self._server, self._task, self._port = server, task, config.port
        self._state = _State.RUNNING
        task.add_done_callback(self._on_exit)

    def _ssl_factory(
        self,
    ) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
        context = self._ssl_context
        assert context is not None
        # The context reloads its certificate itself (meshserve.security).
        return lambda _config, _default: context

    async def stop_accepting(self) -> None:
        """Close the listening socket; connections already open are served
        until :meth:`stop`."""
        if self._state is not _State.RUNNING or self._server is None:
            return
        for listener in self._server.servers:
            listener.close()

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (within the grace
        period), close connections. Safe to call more than once."""
        if self._state is not _State.RUNNING or self._server is None or self._task is None:
            return
        self._state = _State.STOPPING
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._state = _State.STOPPED

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        if self._state is _State.RUNNING and not task.cancelled():
            self._state = _State.STOPPED
            _log.error(
                "REST server on %s:%s stopped on its own",
                self._host,
                self._port,
                exc_info=task.exception(),
            )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn's server, minus what belongs to the process owner."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process owner handles SIGINT/SIGTERM and stops this server.
        yield
