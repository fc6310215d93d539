"""A real HTTP endpoint for payload processors, on loopback: it keeps every
POST it receives (headers and JSON body) and can be told to hold requests,
as a slow endpoint would."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["EventSink", "ReceivedEvent", "event_sink"]


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    path: str
    headers: dict[str, str]
    """Lowercased names."""
    body: dict[str, Any]


class EventSink:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[ReceivedEvent] = []
        self.release = threading.Event()
        """Cleared: every request waits until it is set (a stuck endpoint)."""
        self.release.set()
        self.url = ""

    def add(self, event: ReceivedEvent) -> None:
        with self._lock:
            self._events.append(event)

    def events(self) -> list[ReceivedEvent]:
        with self._lock:
            return list(self._events)

    def wait_for(
        self, found: Callable[[list[ReceivedEvent]], bool], *, timeout_s: float = 30.0
    ) -> list[ReceivedEvent]:
        deadline = time.monotonic() + timeout_s
        while True:
            events = self.events()
            if found(events):
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"events not received in {timeout_s} s; got {events}")
            time.sleep(0.05)


@contextlib.contextmanager
def event_sink() -> Iterator[EventSink]:
    """A sink on a free loopback port (``sink.url``) until the block ends."""
    sink = EventSink()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            sink.release.wait(60)
            sink.add(
                ReceivedEvent(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(body),
                )
            )
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="event-sink", daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    try:
        yield sink
    finally:
        sink.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
