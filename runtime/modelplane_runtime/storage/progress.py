"""Download progress as a JSON log line every few seconds: bytes, files, rate and ETA.

A large model takes minutes to fetch, and an init container that prints nothing meanwhile
looks hung (a common complaint about storage initializers). The lines go through the
runtime's JSON logging (logs.py), so ``kubectl logs <pod> -c <init container>`` shows::

    {"message": "fetch progress", "event": "fetch_progress", "uri": "s3://b/m",
     "bytes": 52428800, "total_bytes": 209715200, "files": 1, "total_files": 3,
     "percent": 25.0, "bytes_per_second": 41943040, "eta_seconds": 3.8, ...}

The rate is measured over the last interval (what the link does now), the ETA from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("modelplane.storage")


@dataclass(frozen=True)
class Snapshot:
    """Progress at one moment."""

    bytes: int
    total_bytes: int
    files: int
    total_files: int
    elapsed_s: float
    bytes_per_second: float
    eta_s: float | None

    def fields(self, uri: str) -> dict[str, Any]:
        """The log line's fields."""
        percent = 100.0 * self.bytes / self.total_bytes if self.total_bytes else 100.0
        return {
            "event": "fetch_progress",
            "uri": uri,
            "bytes": self.bytes,
            "total_bytes": self.total_bytes,
            "files": self.files,
            "total_files": self.total_files,
            "percent": round(percent, 1),
            "bytes_per_second": round(self.bytes_per_second),
            "eta_seconds": None if self.eta_s is None else round(self.eta_s, 1),
            "elapsed_seconds": round(self.elapsed_s, 1),
        }


class Progress:
    """Counts bytes and files from many threads; reports from its own."""

    def __init__(
        self,
        uri: str,
        total_bytes: int,
        total_files: int,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._bytes = 0
        self._files = 0
        self._started = clock()
        self._last = (self._started, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, count: int) -> None:
        """``count`` more bytes arrived (a retry may take some back with ``add(-n)``)."""
        with self._lock:
            self._bytes += count

    def restart(self) -> None:
        """Forget the bytes counted so far (a download starting over from zero)."""
        with self._lock:
            self._bytes = 0
            self._last = (self._clock(), 0)

    def file_done(self) -> None:
        """One more file is complete and checked."""
        with self._lock:
            self._files += 1

    def snapshot(self) -> Snapshot:
        """Progress now; the rate is over the time since the previous snapshot."""
        now = self._clock()
        with self._lock:
            done, files = self._bytes, self._files
            since, before = self._last
            self._last = (now, done)
        window = now - since
        rate = (done - before) / window if window > 0 else 0.0
        if window <= 0 and now > self._started:
            rate = done / (now - self._started)
        remaining = max(self.total_bytes - done, 0)
        eta = remaining / rate if rate > 0 else (0.0 if remaining == 0 else None)
        return Snapshot(done, self.total_bytes, files, self.total_files, now - self._started,
                        rate, eta)

    def report(self) -> None:
        """Log one progress line."""
        snap = self.snapshot()
        log.info("fetch progress", extra=snap.fields(self.uri))

    def __enter__(self) -> Progress:
        self._thread = threading.Thread(target=self._run, name="fetch-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report()
