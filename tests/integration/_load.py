"""Steady client load on a mesh, every request's outcome kept, for fault tests.

A fault test starts a :class:`Load` (client threads, each sending one request
at a time through a real tritonclient), injects its fault, and then asserts
on the records: which requests failed, to which instance they were sent,
and how long they took. Loops are bounded in count and time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tritonclient.utils import InferenceServerException

__all__ = ["Load", "Sender", "Sent"]


class Sender(Protocol):
    """What sends one request: a :class:`~tests.integration._mesh.Mesh`, or
    anything else that answers ``infer`` the same way."""

    def infer(self, index: int, model: str, rows: int = 2, *, timeout: float = 30) -> object:
        """Send one request for ``model`` to instance ``index``; raise on failure."""
        ...


Target = Callable[[int], int | None]
"""Request number -> the mesh instance index to send it to (None: skip)."""


@dataclass(frozen=True)
class Sent:
    """One request and what became of it."""

    index: int
    """The mesh instance it was sent to."""
    model: str
    started: float
    """time.monotonic() when it was sent."""
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __str__(self) -> str:
        outcome = "ok" if self.ok else f"failed: {self.error}"
        took = f"{self.seconds:.2f} s"
        return f"{self.model} via {self.index} at {self.started:.2f} ({took}) {outcome}"


class Load:
    """``clients`` threads sending requests for ``models`` round robin.

    ``instances`` lists the instance indexes to spread requests over; pass
    ``target`` instead to choose per request (for example "the terminating
    instance for 2 s, then the others"). ``deadline_s`` is each request's
    client deadline."""

    def __init__(
        self,
        mesh: Sender,
        models: Sequence[str],
        instances: Sequence[int] = (),
        *,
        target: Target | None = None,
        clients: int = 1,
        deadline_s: float = 30.0,
        pause_s: float = 0.01,
        max_seconds: float = 180.0,
        max_requests: int = 50_000,
    ) -> None:
        if target is None and not instances:
            raise ValueError("give instances or target")
        self.mesh = mesh
        self.models = list(models)
        self._target: Target = target or (lambda n: instances[n % len(instances)])
        self._deadline_s = deadline_s
        self._pause_s = pause_s
        self._max_seconds = max_seconds
        self._max_requests = max_requests
        self._sent: list[Sent] = []
        self._lock = threading.Lock()
        self._count = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count - 1

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            n = self._next()
            if n >= self._max_requests:
                return
            index = self._target(n)
            if index is None:
                time.sleep(self._pause_s)
                continue
            model = self.models[n % len(self.models)]
            started = time.monotonic()
            error: str | None = None
            try:
                self.mesh.infer(index, model, timeout=self._deadline_s)
            except (InferenceServerException, KeyError, OSError) as exc:
                error = str(exc)[:300]
            sent = Sent(index, model, started, time.monotonic() - started, error)
            with self._lock:
                self._sent.append(sent)
            time.sleep(self._pause_s)

    @property
    def sent(self) -> list[Sent]:
        with self._lock:
            return list(self._sent)

    @property
    def ok(self) -> int:
        return sum(1 for s in self.sent if s.ok)

    @property
    def failures(self) -> list[Sent]:
        return [s for s in self.sent if not s.ok]

    def since(self, moment: float) -> list[Sent]:
        """The requests sent at or after ``moment`` (time.monotonic())."""
        return [s for s in self.sent if s.started >= moment]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self._deadline_s + 30)
