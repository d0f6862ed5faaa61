"""``--workers N``: N server processes sharing one listening socket, a model copy each.

For multi-core pods: one Python process saturates about one core, so N workers serve up to
N times the requests. The supervisor (this process) binds the socket once (so ``--port 0``
reports one port), points prometheus_client's multiprocess mode at a fresh temporary
folder (never the working directory) and starts the workers with ``spawn``: a fresh
interpreter each, since TensorFlow must not be forked. It logs the one ready line once
every worker is ready, publishes every process's pid for the resource metrics
(processes.py), forwards SIGTERM/SIGINT so each worker drains as a single server
would, marks exited workers dead (so the in-flight gauge forgets them), and removes the
folder when it exits. A worker that dies stops the others: the pod restarts as a whole.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any, Final

from modelplane_runtime.metrics import MULTIPROCESS_ENV
from modelplane_runtime.processes import SUPERVISOR, write_process_map
from modelplane_runtime.server.lifecycle import EXIT_STARTUP_FAILURE, EXIT_USAGE, announce_ready
from modelplane_runtime.settings import RuntimeSettings

logger = logging.getLogger("modelplane.workers")

EXIT_WORKER_FAILED: Final = 1
_POLL_S: Final = 0.2
_STOP_GRACE_S: Final = 15.0
"""Beyond the drain timeout, how long a worker may take to close its model and exit."""


RunServer = Callable[..., int]
"""process.run_server: ``(settings, sock, url, on_ready, *, announce) -> exit code``."""


def supervise(
    settings: RuntimeSettings,
    sock: socket.socket,
    url: str,
    on_ready: Callable[[str], None] | None,
    run: RunServer,
) -> int:
    """Run ``settings.workers`` workers on ``sock`` until SIGTERM/SIGINT; the exit code.

    ``run`` serves in each worker (a module-level function: spawned workers import it).
    Workers that would each claim a whole GPU are refused before any starts
    (dataplane/devices.py: ``gpu_sharing``).
    """
    from modelplane_runtime.dataplane.devices import check_workers

    sharing = check_workers(settings)
    if sharing is not None:
        if sharing.refuse:
            logger.error("%s", sharing.message)
            return EXIT_USAGE
        logger.warning("%s", sharing.message)
    folder = tempfile.mkdtemp(prefix="modelplane-metrics-")
    os.environ[MULTIPROCESS_ENV] = folder  # inherited by the spawned workers only
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(
            target=_worker, args=(settings, sock, index, ready, run),
            name=f"modelplane-worker-{index}",
        )
        for index in range(settings.workers)
    ]
    stopping = False

    def stop(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            logger.info("stopping %d workers", len(workers), extra={"event": "draining"})
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.exitcode is None:
                os.kill(worker.pid, signal.SIGTERM)

    originals = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        # Whichever worker answers a scrape reports every process (processes.py).
        write_process_map(folder, {
            SUPERVISOR: os.getpid(),
            **{str(i): w.pid for i, w in enumerate(workers) if w.pid is not None},
        })
        if not _wait_ready(workers, ready, lambda: stopping):
            if not stopping:
                logger.error("a worker did not start; stopping the others")
                stop(signal.SIGTERM, None)
                _join(workers, settings)
                return EXIT_STARTUP_FAILURE
        else:
            announce_ready(url, sock, workers=len(workers))
            if on_ready is not None:
                on_ready(url)
        failed = _watch(workers, lambda: stopping)
        if failed and not stopping:
            logger.error("worker %s exited with %s; stopping the others", *failed)
            stop(signal.SIGTERM, None)
        codes = _join(workers, settings)
        logging.getLogger("modelplane.lifecycle").info("stopped", extra={"event": "stopped"})
        return 0 if not failed and all(code == 0 for code in codes) else EXIT_WORKER_FAILED
    finally:
        for sig, handler in originals.items():
            signal.signal(sig, handler)
        for worker in workers:
            if worker.exitcode is None and worker.pid is not None:
                worker.kill()
                worker.join(5)
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(
    workers: Sequence[BaseProcess], ready: Any, stopping: Callable[[], bool]
) -> bool:
    """True once every worker reported ready; False if one died first (or we are stopping)."""
    waiting = set(range(len(workers)))
    while waiting:
        if stopping() or any(w.exitcode is not None for w in workers):
            return False
        try:
            waiting.discard(ready.get(timeout=_POLL_S))
        except queue.Empty:
            continue
    return True


def _watch(workers: Sequence[BaseProcess], stopping: Callable[[], bool]) -> tuple[str, int] | None:
    """Wait until we are told to stop, or a worker exits on its own (its name and code)."""
    while not stopping():
        for worker in workers:
            if worker.exitcode is not None:
                return worker.name, worker.exitcode
        time.sleep(_POLL_S)
    return None


def _join(workers: Sequence[BaseProcess], settings: RuntimeSettings) -> list[int | None]:
    from prometheus_client import multiprocess

    deadline = time.monotonic() + settings.drain_timeout_s + _STOP_GRACE_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.exitcode is None:
            logger.error("%s did not exit after its drain; killing it", worker.name)
            worker.kill()
            worker.join(5)
        if worker.pid is not None:
            multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                worker.pid, os.environ[MULTIPROCESS_ENV]
            )
    return [worker.exitcode for worker in workers]


def _worker(
    settings: RuntimeSettings, sock: socket.socket, index: int, ready: Any, run: RunServer
) -> None:
    """One worker process: serve on the shared socket; report readiness to the supervisor."""
    # Terminal signals go to the supervisor, which forwards one SIGTERM: a second signal
    # would make uvicorn skip the drain.
    os.setpgrp()
    from modelplane_runtime.logs import configure_logging

    configure_logging(settings.log_level)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def report(url: str) -> None:
        logger.info("worker %d ready", index, extra={"worker": index, "pid": os.getpid()})
        ready.put(index)

    sys.exit(run(settings, sock, "", report, announce=False))
