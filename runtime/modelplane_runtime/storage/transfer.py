"""Concurrent, resumable, bounded-memory downloads of listed objects into files.

Every object is cut into parts of ``part_size_bytes`` (one part for a small file), and a
pool of ``concurrency`` threads downloads parts of all the files at once: a folder of many
small files and one large variables file both keep the link busy, as s3transfer and gsutil
do. Each part streams into its file with ``pwrite`` at its offset, a chunk at a time, so
memory stays at about ``concurrency`` chunks whatever the model's size. The file's space is
reserved first (``posix_fallocate``), so a volume that is too small fails at once instead
of after minutes.

A transient failure (a dropped connection, a timeout, a 5xx, throttling) retries the part
from the byte where it stopped, after a doubling, jittered backoff; ``retries`` counts
consecutive attempts that brought no new byte, so a link that drops every few hundred
megabytes still finishes while one that delivers nothing gives up. Once every part of a
file is in, its size and checksum are checked (integrity.py). The first permanent error
stops the other threads and is raised; the caller (staging.py) then removes the half-built
folder, so nothing partial is ever left behind.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from modelplane_runtime.storage.errors import StorageError
from modelplane_runtime.storage.integrity import verify
from modelplane_runtime.storage.progress import Progress
from modelplane_runtime.storage.remote import (
    RemoteObject,
    Store,
    TransientError,
    backoff,
    gave_up,
)
from modelplane_runtime.storage.settings import StorageSettings

log = logging.getLogger("modelplane.storage")

_MAX_ATTEMPTS_PER_RETRY: Final = 10
"""Attempts of one part, per allowed retry, even when each brings new bytes."""


class Cancelled(StorageError):
    """Another part failed; this one stops where it is."""

    def __init__(self) -> None:
        super().__init__("cancelled")


@dataclass(frozen=True)
class Job:
    """Download ``obj`` to ``path`` (a file that must not exist yet)."""

    obj: RemoteObject
    path: Path
    shown: str
    """The object's URI, for messages."""


@dataclass
class _File:
    job: Job
    parts_left: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    fd: int | None = None
    failed: OSError | None = None

    def open(self) -> int:
        with self.lock:
            if self.failed is not None:
                raise self.failed  # every part of the file reports the same cause
            if self.fd is None:
                try:
                    self.fd = self._create()
                except OSError as exc:
                    self.failed = exc
                    raise
            return self.fd

    def _create(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.job.path, flags, 0o644)
        try:
            os.fchmod(fd, 0o644)  # exact mode whatever the umask: the runtime reads it
            if self.job.obj.size:
                os.posix_fallocate(fd, 0, self.job.obj.size)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                return fd  # a filesystem without fallocate: space is found as it is written
            os.close(fd)
            raise
        return fd

    def part_done(self) -> bool:
        """Count one finished part; True for the last one (the file is then closed)."""
        with self.lock:
            self.parts_left -= 1
            if self.parts_left or self.fd is None:
                return self.parts_left == 0
            os.close(self.fd)
            self.fd = None
            return True

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


class Downloader:
    """Downloads jobs from one store with the settings' concurrency, retries and checks."""

    def __init__(
        self,
        store: Store,
        settings: StorageSettings,
        progress: Progress,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.progress = progress
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait

    def run(self, jobs: Sequence[Job]) -> None:
        """Download every job; raises the first permanent error (others are cancelled)."""
        files = [_File(job, max(1, -(-job.obj.size // self.settings.part_size_bytes)))
                 for job in jobs]
        try:
            with ThreadPoolExecutor(self.settings.concurrency, "fetch") as pool:
                futures: list[Future[None]] = []
                for state in files:
                    size, step = state.job.obj.size, self.settings.part_size_bytes
                    if size == 0:
                        futures.append(pool.submit(self._part, state, 0, 0))
                    for start in range(0, size, step):
                        futures.append(pool.submit(self._part, state, start,
                                                   min(start + step, size)))
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    self._stop.set()
                    for future in futures:
                        future.cancel()
                    errors = [f.exception() for f in failed]
                    first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
                    assert first is not None
                    raise first
        finally:
            for state in files:
                state.close()

    def _part(self, state: _File, start: int, end: int) -> None:
        job = state.job
        fd = state.open()
        position = start
        stalled = attempts = 0

        def write(chunk: bytes) -> None:
            nonlocal position
            if self._stop.is_set():
                raise Cancelled()
            if position + len(chunk) > end:
                raise StorageError(f"{job.shown}: the store sent more bytes than were asked for")
            view = memoryview(chunk)
            while view:
                written = os.pwrite(fd, view, position)
                position += written
                view = view[written:]
            self.progress.add(len(chunk))

        while position < end:
            before = position
            attempts += 1
            try:
                self.store.read(job.obj, position, end, write)
                if position < end:
                    raise TransientError(
                        f"reading {job.shown}: the response ended {end - position} bytes early"
                    )
            except TransientError as exc:
                stalled = 1 if position > before else stalled + 1
                retries = self.settings.retries
                if stalled > retries or attempts >= (retries + 1) * _MAX_ATTEMPTS_PER_RETRY:
                    raise StorageError(f"{exc.message} ({gave_up(attempts)})") from None
                delay = backoff(self.settings, stalled)
                log.warning("%s; retrying from byte %d in %.1fs", exc.message, position, delay,
                            extra={"event": "fetch_retry", "attempt": attempts,
                                   "resume_at": position})
                self._sleep(delay)
                if self._stop.is_set():
                    raise Cancelled() from None
        if state.part_done():
            checked = verify(job.path, self.store.verifiable(job.obj), job.shown,
                             checksums=self.settings.verify_checksums)
            self.progress.file_done()
            log.debug("downloaded %s (%d bytes, %s checked)", job.shown, job.obj.size,
                      checked or "size")


def prepare_parent(path: Path) -> None:
    """``mkdir -p`` with the modes the runtime needs (0755 whatever the umask)."""
    missing = []
    current = path.parent
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o755)
        os.chmod(folder, 0o755)
