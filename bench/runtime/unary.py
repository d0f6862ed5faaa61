"""Unary gRPC side by side: ``python -m bench.runtime.unary [options]``.

Contenders, each a real server process pinned to core 0, loaded by h2load pinned to core 1
(bench/runtime/h2load.py) with 1 and 64 concurrent streams on one HTTP/2 connection:

- ``modelplane-grpc-v2``: the runtime's ``inference.GRPCInferenceService/ModelInfer``, the
  input in typed ``fp32_contents`` (the form every v2 server reads);
- ``modelplane-grpc-v2-raw``: the same with ``raw_input_contents`` (what tritonclient sends);
- ``modelplane-grpc-tfs``: TF Serving's ``PredictionService/Predict``, ``tensor_content``;
- ``kserve-grpc``: KServe 0.21's v2 gRPC server (servers/kserve_server.py), typed contents;
- ``mlserver-grpc``: MLServer 1.7.1's v2 gRPC server with adaptive batching
  (servers/mlserver_runtime.py), typed contents;
- ``modelplane-v1``: the same runtime over HTTP v1 JSON, loaded by wrk (one thread on
  core 1, 1 and 64 connections), for the gRPC/HTTP ratio in the same run;
- ``grpc-floor``: a bare grpc.aio server answering a constant (servers/grpc_floor.py): what
  grpcio itself costs per call, the ceiling of any grpcio-based server (``x floor``).

Before its load every contender's answer is checked against the SavedModel called
in-process (through grpcio), and after it the response bytes per call must be a real
answer's (h2load counts HTTP 200s, which gRPC errors are too). The table is
bench/runtime/report.py's (``x peer``: against the best of kserve-grpc and mlserver-grpc);
a summary prints the targets' ratios and h2load's own CPU share (near 1.0 would mean the
generator, not the server, was the limit).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.runtime import report
from bench.runtime.contenders import SERVERS, Launch, Setup
from bench.runtime.h2load import grpc_frame, h2load_available, run_h2load
from bench.runtime.models import INPUT_NAME, OUTPUT_NAME, BenchModel, build_models, sample_rows
from bench.runtime.payloads import request_body, request_headers, request_path
from bench.runtime.process import Server, free_port
from bench.runtime.wrk import run_wrk, temp_folder, write_script

REPO = Path(__file__).resolve().parents[2]
V2_INFER = "/inference.GRPCInferenceService/ModelInfer"
TFS_PREDICT = "/tensorflow.serving.PredictionService/Predict"
_QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def v2_message(model: BenchModel, raw: bool) -> bytes:
    """A serialized ModelInferRequest with one row (typed or raw FP32)."""
    from tritonclient.grpc import service_pb2

    row = np.asarray(sample_rows(model), np.float32)
    request = service_pb2.ModelInferRequest(model_name=model.name)
    tensor = request.inputs.add(name=INPUT_NAME, datatype="FP32", shape=list(row.shape))
    if raw:
        request.raw_input_contents.append(row.tobytes())
    else:
        tensor.contents.fp32_contents.extend(row.ravel().tolist())
    return request.SerializeToString()  # type: ignore[no-any-return]


def tfs_message(model: BenchModel) -> bytes:
    """A serialized PredictRequest with one row in ``tensor_content`` (tf.make_tensor_proto)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model.name
    request.inputs[INPUT_NAME].CopyFrom(
        tf.make_tensor_proto(np.asarray(sample_rows(model), np.float32))
    )
    return request.SerializeToString()  # type: ignore[no-any-return]


def v2_answer(raw: bytes) -> np.ndarray:
    """The first output of a ModelInferResponse (typed or raw)."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(raw)
    output = response.outputs[0]
    if response.raw_output_contents:
        values = np.frombuffer(response.raw_output_contents[0], np.float32)
    else:
        values = np.asarray(output.contents.fp32_contents, np.float32)
    return values.reshape(list(output.shape))


def tfs_answer(raw: bytes) -> np.ndarray:
    """The ``outputs`` tensor of a PredictResponse."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    response = predict_pb2.PredictResponse.FromString(raw)
    return tf.make_ndarray(response.outputs[OUTPUT_NAME])  # type: ignore[no-any-return]


@dataclass(frozen=True)
class RpcContender:
    """One row group of the table: how to start it, what to send, how to read the answer."""

    name: str
    kind: str
    method: str
    """The gRPC method path; "" for the HTTP v1 contender (loaded by wrk)."""
    message: Callable[[BenchModel], bytes]
    answer: Callable[[bytes], np.ndarray]
    launch: Callable[[Setup, BenchModel, int, int], Launch]


def _modelplane(setup: Setup, model: BenchModel, http: int, rpc: int) -> Launch:
    return Launch(
        [setup.runtime_python, "-m", "modelplane_runtime.cli", "serve", str(model.base),
         "--name", model.name, "--host", "127.0.0.1", "--port", str(http),
         "--grpc-port", str(rpc), "--max-batch-size", str(setup.max_batch_size),
         "--max-latency-ms", str(setup.max_latency_ms)],
        "/v2/health/ready", {**_QUIET_TF, "PYTHONPATH": str(setup.repo / "runtime")},
    )


def _floor(setup: Setup, model: BenchModel, http: int, rpc: int) -> Launch:
    return Launch([setup.runtime_python, str(SERVERS / "grpc_floor.py"), str(http), str(rpc)],
                  "/ready")


def _kserve(setup: Setup, model: BenchModel, http: int, rpc: int) -> Launch:
    return Launch(
        [setup.venv_bin("kserve", "python"), str(SERVERS / "kserve_server.py"),
         "--model_dir", str(model.version_dir), "--model_name", model.name,
         "--http_port", str(http), "--grpc_port", str(rpc), "--enable_grpc", "true"],
        f"/v1/models/{model.name}", dict(_QUIET_TF),
    )


def _mlserver(setup: Setup, model: BenchModel, http: int, rpc: int) -> Launch:
    folder = setup.work / f"mlserver-grpc-{model.name}"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {
        "name": model.name,
        "implementation": "mlserver_runtime.SavedModelRuntime",
        "parameters": {"uri": str(model.version_dir)},
        "max_batch_size": setup.max_batch_size,
        "max_batch_time": setup.max_latency_ms / 1000,
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))
    env = {**_QUIET_TF, "PYTHONPATH": str(SERVERS), "MLSERVER_HTTP_PORT": str(http),
           "MLSERVER_HOST": "127.0.0.1", "MLSERVER_GRPC_PORT": str(rpc),
           "MLSERVER_METRICS_PORT": str(free_port())}
    return Launch([setup.venv_bin("mlserver", "mlserver"), "start", str(folder)],
                  f"/v2/models/{model.name}/ready", env)


CONTENDERS: tuple[RpcContender, ...] = (
    RpcContender("modelplane-grpc-v2", "runtime", V2_INFER,
                 lambda m: v2_message(m, raw=False), v2_answer, _modelplane),
    RpcContender("modelplane-grpc-v2-raw", "runtime", V2_INFER,
                 lambda m: v2_message(m, raw=True), v2_answer, _modelplane),
    RpcContender("modelplane-grpc-tfs", "runtime", TFS_PREDICT, tfs_message, tfs_answer,
                 _modelplane),
    RpcContender("modelplane-v1", "runtime", "", lambda m: b"", v2_answer, _modelplane),
    RpcContender("kserve-grpc", "peer", V2_INFER, lambda m: v2_message(m, raw=False),
                 v2_answer, _kserve),
    RpcContender("mlserver-grpc", "peer", V2_INFER, lambda m: v2_message(m, raw=False),
                 v2_answer, _mlserver),
    RpcContender("grpc-floor", "floor", V2_INFER, lambda m: v2_message(m, raw=False),
                 v2_answer, _floor),
)


def _reference(model: BenchModel) -> np.ndarray:
    import tensorflow as tf

    serving = tf.saved_model.load(str(model.version_dir)).signatures["serving_default"]
    rows = np.asarray(sample_rows(model), dtype=np.float32)
    return serving(inputs=tf.constant(rows))[OUTPUT_NAME].numpy()  # type: ignore[no-any-return]


def _check(target: str, contender: RpcContender, message: bytes, expected: np.ndarray) -> int:
    """Call once through grpcio; the answer must be the model's. Returns the answer's size."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(contender.method)
        deadline = time.monotonic() + 60
        while True:  # some peers open their gRPC port after their HTTP readiness
            try:
                raw: bytes = call(message, timeout=30)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    got = contender.answer(raw)
    if contender.kind != "floor" and not np.allclose(got, expected, atol=1e-5):
        raise RuntimeError(f"{contender.name} answered {got.tolist()}, expected "
                           f"{expected.tolist()}")
    return len(raw) + 5


def _run(args: argparse.Namespace, setup: Setup, contender: RpcContender, model: BenchModel,
         expected: np.ndarray, repeat: int) -> list[dict[str, Any]]:
    http, rpc = free_port(), free_port()
    launch = contender.launch(setup, model, http, rpc)
    log = setup.work / "logs" / f"{contender.name}-{model.name}-{repeat}.log"
    samples = []
    with Server(launch.command, launch.env, log) as server, temp_folder() as scratch:
        cold = server.wait_ready(f"http://127.0.0.1:{http}{launch.ready_path}")
        folder = Path(scratch)
        if contender.method:
            message = contender.message(model)
            answer_size = _check(f"127.0.0.1:{rpc}", contender, message, expected)
            body = folder / "request.grpc"
            body.write_bytes(grpc_frame(message))
        else:
            http_body = request_body("v1", model)
            script = write_script(folder, request_path("v1", model), http_body,
                                  request_headers("v1", http_body))
        for streams in args.stream_list:
            cpu_before = server.cpu_seconds()
            if contender.method:
                url = f"http://127.0.0.1:{rpc}{contender.method}"
                if args.warmup > 0:
                    run_h2load(url, body, 1, streams, args.warmup, None)
                cpu_before = server.cpu_seconds()
                result = run_h2load(url, body, 1, streams, args.duration, folder / "h2.log")
                (folder / "h2.log").unlink(missing_ok=True)
                if result.data_per_request < answer_size:
                    raise RuntimeError(f"{contender.name}: {result.data_per_request:.0f} bytes "
                                       f"per answer, a real one has {answer_size}: errors")
                rps, p50, p99, errors, done = (result.rps, result.p50_ms, result.p99_ms,
                                               result.errors, result.requests)
                client_cpu: float | None = result.client_cpu
            else:
                base = f"http://127.0.0.1:{http}"
                if args.warmup > 0:
                    run_wrk(base, script, streams, args.warmup)
                cpu_before = server.cpu_seconds()
                wrk = run_wrk(base, script, streams, args.duration)
                rps, p50, p99, errors, done = (wrk.rps, wrk.p50_ms, wrk.p99_ms, wrk.errors,
                                               wrk.requests)
                client_cpu = None
            cpu = server.cpu_seconds() - cpu_before
            samples.append({
                "model": model.name, "connections": streams, "contender": contender.name,
                "kind": contender.kind, "repeat": repeat, "rps": rps, "p50_ms": p50,
                "p99_ms": p99, "errors": errors, "requests": done,
                "cpu_us_per_req": cpu / done * 1e6 if done else None,
                "peak_rss_mb": server.peak_rss / 2**20, "cold_start_s": cold,
                "client_cpu": client_cpu,
            })
            print(f"  {model.name} s={streams:<3} {contender.name:<24} {rps:8.0f} req/s  "
                  f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  err {errors}  cpu/req "
                  f"{cpu / max(1, done) * 1e6:6.0f} us  h2load cpu "
                  f"{'-' if client_cpu is None else f'{client_cpu:.2f}'}", flush=True)
    return samples


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    cases = sorted({(r["model"], r["connections"]) for r in rows})
    for model, streams in cases:
        case = {r["contender"]: r for r in rows if (r["model"], r["connections"]) == (model,
                                                                                     streams)}
        peers = [r for r in case.values() if r["kind"] == "peer" and r["rps"]]
        http = case.get("modelplane-v1")
        for name in ("modelplane-grpc-v2", "modelplane-grpc-v2-raw", "modelplane-grpc-tfs"):
            row = case.get(name)
            if row is None or not row["rps"]:
                continue
            best = max(peers, key=lambda r: r["rps"], default=None)
            parts = [f"{model} s={streams} {name}:"]
            if best is not None:
                parts.append(f"{row['rps'] / best['rps']:.2f}x {best['contender']}")
                worst_p99 = min(p["p99_ms"] for p in peers)
                parts.append(f"p99 {row['p99_ms']:.2f} ms vs lowest peer p99 {worst_p99:.2f}")
            if http is not None and http["rps"]:
                parts.append(f"{row['rps'] / http['rps']:.2f}x modelplane-v1 (HTTP)")
            lines.append("  ".join(parts))
    return lines


def main() -> int:
    """Run the contenders, print the table and the targets' ratios, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.runtime.unary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    names = ", ".join(c.name for c in CONTENDERS)
    parser.add_argument("--only", default="", help=f"comma list of: {names} (prefixes work)")
    parser.add_argument("--models", default="seed,wide")
    parser.add_argument("--streams", default="1,64", help="concurrent streams (wrk: connections)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=float, default=2.0)
    parser.add_argument("--venvs", type=Path, default=REPO / ".bench")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not h2load_available():
        raise SystemExit("h2load is missing: apt-get install -y nghttp2-client")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    chosen = [c for c in CONTENDERS
              if not wanted or any(c.name == w or c.name.startswith(w) for w in wanted)]
    args.stream_list = [int(s) for s in args.streams.split(",")]
    setup = Setup(repo=REPO, work=args.venvs / "work", venvs=args.venvs,
                  max_batch_size=args.max_batch_size, max_latency_ms=args.max_latency_ms)
    models = build_models(args.venvs / "models")
    selected = [models[m.strip()] for m in args.models.split(",") if m.strip()]
    expected = {m.name: _reference(m) for m in selected}
    samples: list[dict[str, Any]] = []
    failures: list[str] = []
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}", flush=True)
        for model in selected:
            for contender in chosen:
                try:
                    samples += _run(args, setup, contender, model, expected[model.name], repeat)
                except Exception as exc:  # one broken contender must not end the run
                    failures.append(f"{contender.name}/{model.name}: {exc}")
                    print(f"  {contender.name}/{model.name} FAILED: {exc}", flush=True)
    rows = report.medians(samples)
    for row in rows:
        shares = [s["client_cpu"] for s in samples if s.get("client_cpu") is not None
                  and (s["model"], s["connections"], s["contender"])
                  == (row["model"], row["connections"], row["contender"])]
        row["client_cpu"] = max(shares) if shares else None
    print()
    print(report.table(rows).replace(" conn ", " strm "))
    print()
    for line in _summary(rows):
        print(line)
    busiest = max((r["client_cpu"] for r in rows if r.get("client_cpu") is not None), default=0)
    print(f"h2load's busiest run used {busiest:.2f} of its core")
    for failure in failures:
        print("FAILED:", failure)
    out = args.json or args.venvs / "results" / f"unary-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out.write_text(json.dumps({"options": options, "medians": rows, "samples": samples,
                               "failures": failures}, indent=1))
    print(f"\nJSON: {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
