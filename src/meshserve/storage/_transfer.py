"""A pull in progress: the byte budget, per-file digests, progress events.

Runs in worker threads; events reach the caller's callback through the event
loop (``call_soon_threadsafe``), so callbacks never run on a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import pathlib
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from meshserve.errors import ArtifactRejectedError

__all__ = ["ProgressCallback", "PullProgress", "Transfer", "TransferCancelledError"]

log = logging.getLogger("meshserve.storage")

MIB = 1024**2


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One progress event of a pull."""

    model_id: str
    location: str
    """Storage key and path (never a credential)."""
    bytes_done: int
    bytes_total: int | None
    """None when the store did not report sizes."""
    seconds: float
    done: bool


ProgressCallback = Callable[[PullProgress], None]


class TransferCancelledError(Exception):
    """The pull was abandoned while a worker thread was still writing."""


class Transfer:
    """Counts what a pull writes, refuses it past ``max_bytes``, and emits a
    progress event each time another ``progress_bytes`` arrive (pulls larger
    than ``progress_bytes`` only)."""

    def __init__(
        self,
        *,
        model_id: str,
        location: str,
        max_bytes: int,
        progress_bytes: int,
        bytes_total: int | None,
        loop: asyncio.AbstractEventLoop,
        callback: ProgressCallback | None,
    ) -> None:
        self._model_id = model_id
        self._location = location
        self._max_bytes = max_bytes
        self._progress_bytes = progress_bytes
        self.bytes_total = bytes_total
        self._loop = loop
        self._callback = callback
        self._lock = threading.Lock()
        self._done = 0
        self._next_event = progress_bytes
        self._last_reported = 0
        self._started = time.monotonic()
        self.cancelled = threading.Event()
        """Set when the pull is abandoned: the worker stops at its next write."""
        self.digests: dict[str, str] = {}
        """sha256 per file written, by path relative to the model directory."""

    @property
    def bytes_done(self) -> int:
        return self._done

    def reset(self) -> None:
        """Start over (a retry rewrites every file)."""
        with self._lock:
            self._done = 0
            self._next_event = self._progress_bytes
            self._last_reported = 0
            self.digests.clear()

    def open(self, path: pathlib.Path, *, rel: str) -> _FileSink:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _FileSink(self, path.open("wb"), rel=rel)

    def add(self, count: int) -> None:
        if self.cancelled.is_set():
            raise TransferCancelledError()
        with self._lock:
            self._done += count
            done = self._done
            if done > self._max_bytes:
                raise ArtifactRejectedError(
                    f"at least {done} bytes, more than the {self._max_bytes} a model may "
                    "have; refused"
                )
            due = done >= self._next_event
            if due:
                while self._next_event <= done:
                    self._next_event += self._progress_bytes
                self._last_reported = done
        if due:
            self._emit(done, finished=False)

    def finish(self) -> None:
        """The closing event, if the pull was large enough to report on."""
        with self._lock:
            done = self._done
            report = done > self._progress_bytes and done != self._last_reported
        if report:
            self._emit(done, finished=True)

    def _emit(self, done: int, *, finished: bool) -> None:
        event = PullProgress(
            model_id=self._model_id,
            location=self._location,
            bytes_done=done,
            bytes_total=self.bytes_total,
            seconds=time.monotonic() - self._started,
            done=finished or (self.bytes_total is not None and done >= self.bytes_total),
        )
        total = f" of {_mib(self.bytes_total)}" if self.bytes_total else ""
        log.info(
            "pulling model %s from %s: %s%s in %.1f s",
            self._model_id,
            self._location,
            _mib(done),
            total,
            event.seconds,
        )
        if self._callback is not None:
            self._loop.call_soon_threadsafe(self._callback, event)


class _FileSink:
    """One file of a transfer; closes and records its sha256 on exit."""

    def __init__(self, transfer: Transfer, file: BinaryIO, *, rel: str) -> None:
        self._transfer = transfer
        self._file = file
        self._rel = rel
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        # Count before writing: a file over the budget never reaches the disk.
        self._transfer.add(len(data))
        self._hash.update(data)
        self._file.write(data)
        return len(data)

    def __enter__(self) -> _FileSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._file.close()
        if exc_type is None:
            self._transfer.digests[self._rel] = self._hash.hexdigest()


def _mib(count: int) -> str:
    return f"{count / MIB:.1f} MiB"
