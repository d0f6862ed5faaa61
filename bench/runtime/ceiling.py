"""The in-process ceiling: the SavedModel's serving function called in a loop, no HTTP.

Run as its own process pinned to the server core (``taskset -c 0``), one batch size after
another; prints one JSON line per batch size. Usage:
``python -m bench.runtime.ceiling MODEL_DIR FEATURES --batches 1,128 --duration 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def measure(model_dir: str, features: int, batch: int, duration_s: float) -> dict[str, float]:
    """Calls per second, rows per second and call latency percentiles at one batch size."""
    import tensorflow as tf

    serving = tf.saved_model.load(model_dir).signatures["serving_default"]
    rows = np.random.default_rng(3).uniform(-2, 2, size=(batch, features)).astype(np.float32)
    tensor = tf.constant(rows)
    for _ in range(20):
        serving(inputs=tensor)  # trace and warm the kernels
    latencies: list[float] = []
    end = time.perf_counter() + duration_s
    while (start := time.perf_counter()) < end:
        serving(inputs=tensor)["outputs"].numpy()
        latencies.append(time.perf_counter() - start)
    total = sum(latencies)
    latencies.sort()
    return {
        "batch": batch,
        "calls_per_s": len(latencies) / total,
        "rows_per_s": len(latencies) * batch / total,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


def main() -> None:
    """Print one JSON line per batch size."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("features", type=int)
    parser.add_argument("--batches", default="1,128")
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    for batch in (int(b) for b in args.batches.split(",")):
        print("CEILING " + json.dumps(measure(args.model_dir, args.features, batch,
                                               args.duration)), flush=True)


if __name__ == "__main__":
    main()
