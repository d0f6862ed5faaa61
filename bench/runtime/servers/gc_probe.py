"""Run ``modelplane`` with every garbage-collector pause recorded (a diagnostic).

Prints, at exit, the count, total and longest pause per generation, counting only pauses
after start-up (``BENCH_GC_SKIP_S`` seconds, default 15). With ``BENCH_GC_FREEZE=1`` it
imports TensorFlow and the runtime first and calls ``gc.freeze()``, so the collector stops
re-scanning those objects: a what-if for the runtime's p99 under load. Usage:
``python gc_probe.py serve MODEL_DIR ...`` (the ``modelplane`` arguments).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
from typing import Any

_skip_until = time.perf_counter() + float(os.environ.get("BENCH_GC_SKIP_S", "15"))
_pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
_started = 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _started
    if phase == "start":
        _started = time.perf_counter()
    elif _started > _skip_until:
        _pauses[info["generation"]].append(time.perf_counter() - _started)


def _report() -> None:
    for generation, pauses in _pauses.items():
        if pauses:
            print(f"GC gen{generation}: {len(pauses)} pauses, total {sum(pauses) * 1000:.0f} ms,"
                  f" max {max(pauses) * 1000:.1f} ms", file=sys.stderr, flush=True)


gc.callbacks.append(_on_gc)
atexit.register(_report)

if __name__ == "__main__":
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        import tensorflow  # noqa: F401

        gc.collect()
        gc.freeze()
    from modelplane_runtime.cli import main

    sys.exit(main(sys.argv[1:]))
