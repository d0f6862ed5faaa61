"""One command, every contender side by side: ``python -m bench.runtime [options]``.

For each repeat, each model and each contender: start the server pinned to core 0 (cold
start = process start to the first 200 on its readiness URL), check one answer against the
model called in-process, then for each connection count run a short wrk warm-up and the
measured wrk run pinned to core 1. Repeats go round-robin over the contenders so machine
noise spreads evenly; the table shows medians and each req/s median's spread (max-min)/median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench.runtime import contenders as cont
from bench.runtime import report
from bench.runtime.models import BenchModel, build_models, sample_rows
from bench.runtime.payloads import answer_array, request_body, request_headers, request_path
from bench.runtime.process import Server, free_port
from bench.runtime.wrk import run_wrk, temp_folder, write_script

REPO = Path(__file__).resolve().parents[2]


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.runtime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ", ".join(c.name for c in cont.CONTENDERS)
    parser.add_argument("--only", default="", help=f"comma list of: {names}, ceiling "
                        "(a prefix such as 'modelplane' picks a family); default all")
    parser.add_argument("--models", default="seed,wide", help="seed, wide or both")
    parser.add_argument("--connections", default="1,64", help="wrk connection counts")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk before each")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; medians shown")
    parser.add_argument("--max-batch-size", type=int, default=64, help="for batching contenders")
    parser.add_argument("--max-latency-ms", type=float, default=2.0, help="batch wait")
    parser.add_argument("--ceiling-batches", default="1,64,128", help="in-process batch sizes")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of another commit (git worktree add): its runtime "
                        "runs as modelplane-v1-baseline, side by side with this tree's")
    parser.add_argument("--venvs", type=Path, default=REPO / ".bench", help="peers' venvs")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write every sample and the medians "
                        "(default .bench/results/run-<time>.json)")
    return parser.parse_args()


def _reference(model: BenchModel) -> np.ndarray:
    import tensorflow as tf

    serving = tf.saved_model.load(str(model.version_dir)).signatures["serving_default"]
    rows = np.asarray(sample_rows(model), dtype=np.float32)
    result: np.ndarray = serving(inputs=tf.constant(rows))["outputs"].numpy()
    return result


def _check_answer(url: str, body: bytes, contender: cont.Contender, expected: np.ndarray) -> None:
    headers = request_headers(contender.protocol, body)
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        got = answer_array(contender.protocol, json.loads(answer.read()))
    if not np.allclose(got, expected, atol=1e-5):
        raise RuntimeError(f"{contender.name} answered {got.tolist()}, expected "
                           f"{expected.tolist()}")


def _run_server(args: argparse.Namespace, setup: cont.Setup, contender: cont.Contender,
                model: BenchModel, expected: np.ndarray, repeat: int) -> list[dict[str, Any]]:
    port = free_port()
    launch = contender.launch(setup, model, port)
    base = f"http://127.0.0.1:{port}"
    log = setup.work / "logs" / f"{contender.name}-{model.name}-{repeat}.log"
    samples = []
    with contextlib.ExitStack() as stack:
        if launch.sidecar is not None:  # beside wrk on core 1, off the server's core
            sidecar = stack.enter_context(
                Server(launch.sidecar, {}, log.with_suffix(".sidecar.log"), cpu="1")
            )
            sidecar.wait_ready(launch.sidecar_ready)
        server = stack.enter_context(Server(launch.command, launch.env, log))
        scratch = stack.enter_context(temp_folder())
        cold = server.wait_ready(base + launch.ready_path)
        path = request_path(contender.protocol, model)
        body = request_body(contender.protocol, model)
        if contender.kind not in ("floor", "reference"):  # constant answers
            _check_answer(base + path, body, contender, expected)
        script = write_script(
            Path(scratch), path, body, request_headers(contender.protocol, body)
        )
        for connections in args.connection_list:
            if args.warmup > 0:
                run_wrk(base, script, connections, args.warmup)
            cpu_before = server.cpu_seconds()
            result = run_wrk(base, script, connections, args.duration)
            cpu = server.cpu_seconds() - cpu_before
            samples.append({
                "model": model.name, "connections": connections, "contender": contender.name,
                "kind": contender.kind, "repeat": repeat, "rps": result.rps,
                "p50_ms": result.p50_ms, "p90_ms": result.p90_ms, "p99_ms": result.p99_ms,
                "errors": result.errors, "requests": result.requests,
                # CPU per answered request hardly depends on what else shares the machine.
                "cpu_us_per_req": cpu / result.requests * 1e6 if result.requests else None,
                "peak_rss_mb": server.peak_rss / 2**20, "cold_start_s": cold,
            })
            print(f"  {model.name} c={connections:<3} {contender.name:<22} "
                  f"{result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                  f"p99 {result.p99_ms:7.2f} ms  err {result.errors}  "
                  f"cpu/req {cpu / max(1, result.requests) * 1e6:6.0f} us", flush=True)
    return samples


def _run_ceiling(args: argparse.Namespace, model: BenchModel, repeat: int) -> list[dict[str, Any]]:
    command = ["taskset", "-c", "0", sys.executable, "-m", "bench.runtime.ceiling",
               str(model.version_dir), str(model.features), "--batches", args.ceiling_batches,
               "--duration", str(max(1.0, args.duration / 3))]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=600)
    samples = []
    for line in done.stdout.splitlines():
        if not line.startswith("CEILING "):
            continue
        point = json.loads(line.removeprefix("CEILING "))
        batch = point["batch"]
        # Batch 1: calls/s is req/s. Larger batches: rows/s, the most a batcher could reach.
        label = "ceiling-b1 (calls/s)" if batch == 1 else f"ceiling-b{batch} (rows/s)"
        samples.append({
            "model": model.name, "connections": 0, "contender": label, "kind": "ceiling",
            "repeat": repeat, "rps": point["calls_per_s"] * batch, "p50_ms": point["p50_ms"],
            "p99_ms": point["p99_ms"], "errors": 0, "peak_rss_mb": None, "cold_start_s": None,
        })
        print(f"  {model.name} {label:<26} {point['calls_per_s'] * batch:9.0f}  "
              f"call p50 {point['p50_ms'] * 1000:7.0f} us", flush=True)
    return samples


def _git(*command: str) -> str:
    done = subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


def main() -> int:
    """Run the selected contenders, print the table, write the JSON."""
    args = _parse()
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    with_ceiling = not wanted or "ceiling" in wanted
    chosen = cont.select([w for w in wanted if w != "ceiling"]) if wanted else [
        c for c in cont.CONTENDERS if c.name != "modelplane-v1-baseline" or args.baseline]
    if wanted == ["ceiling"]:
        chosen = []
    args.connection_list = [int(c) for c in args.connections.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.venvs / "work"
    setup = cont.Setup(repo=REPO, work=work, venvs=args.venvs,
                       max_batch_size=args.max_batch_size, max_latency_ms=args.max_latency_ms,
                       baseline=args.baseline)
    models = build_models(args.venvs / "models")
    selected = [models[m.strip()] for m in args.models.split(",") if m.strip()]
    expected = {m.name: _reference(m) for m in selected}
    # What was measured: the runtime's tree is often being edited while the benchmark runs.
    measured = {"git_head": _git("rev-parse", "HEAD"),
                "runtime_changes": _git("status", "--porcelain", "--", "runtime")}
    samples: list[dict[str, Any]] = []
    failures: list[str] = []
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}", flush=True)
        for model in selected:
            for contender in chosen:
                try:
                    samples += _run_server(args, setup, contender, model, expected[model.name],
                                           repeat)
                except Exception as exc:  # one broken contender must not end the run
                    failures.append(f"{contender.name}/{model.name}: {exc}")
                    print(f"  {contender.name}/{model.name} FAILED: {exc}", flush=True)
            if with_ceiling:
                samples += _run_ceiling(args, model, repeat)
    rows = report.medians(samples)
    print()
    print(report.table(rows))
    for failure in failures:
        print("FAILED:", failure)
    out = args.json or args.venvs / "results" / f"run-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    options.update(measured)
    out.write_text(json.dumps({"options": options, "medians": rows, "samples": samples,
                               "failures": failures}, indent=1))
    print(f"\nJSON: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
