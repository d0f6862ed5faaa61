"""Profile one contender under wrk load with py-spy (and optionally pyinstrument).

py-spy samples every thread of the server from outside (no code change, TF threads seen)
and writes collapsed stacks; this module folds them into a small text summary: share of
busy samples per layer of the request path (HTTP parsing, JSON, validation, batching, TF,
metrics, logging...), plus the top functions by self and inclusive time. pyinstrument runs
the server inside its own profiler (main thread, i.e. the event loop) and writes its text
report when the server exits on SIGTERM.

Usage: ``python -m bench.runtime.profile --contender modelplane-v1 --model seed
--connections 64 --duration 15 --out bench/results``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.runtime import contenders as cont
from bench.runtime.models import build_models
from bench.runtime.payloads import request_body, request_headers, request_path
from bench.runtime.process import Server, free_port, thread_cpu_seconds
from bench.runtime.wrk import run_wrk, temp_folder, write_script

REPO = Path(__file__).resolve().parents[2]

# Checked from the leaf upwards: a sample belongs to the innermost layer it is in.
LAYERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("TF call", r"tensorflow|keras|/tf_|eager"),
        ("numpy", r"numpy/"),
        ("JSON encode/decode", r"orjson|json/|\bloads\b|\bdumps\b|jsonable_encoder"),
        ("pydantic validation", r"pydantic"),
        ("metrics (prometheus)", r"prometheus_client"),
        ("logging", r"logging/|modelplane_runtime/logs\.py"),
        ("modelplane batching", r"modelplane_runtime/dataplane/batching\.py"),
        ("modelplane codecs/validation", r"modelplane_runtime/(codecs/\w+|dataplane/validation|"
                                         r"dataplane/processing|signature)\.py"),
        ("modelplane dataplane/model", r"modelplane_runtime/(dataplane/(plane|model|repository)|"
                                       r"serving)\.py"),
        ("modelplane HTTP layer (routes, middleware)", r"modelplane_runtime/(http/\w+|"
                                                       r"http/direct/\w+|rules|errors)\.py"),
        ("FastAPI/Starlette routing", r"fastapi/|starlette/"),
        ("uvicorn HTTP protocol (httptools)", r"uvicorn/|httptools"),
        ("asyncio/uvloop scheduling", r"asyncio/|uvloop|concurrent/futures|threading\.py"),
    )
)


# py-spy's own idle detection does not work in this container (threads parked in
# Condition.wait are reported as running), so samples whose innermost frame is a wait are
# counted as idle here. A bare ``Runner.run`` leaf is uvloop's C loop: polling (idle) or its
# C transport code, which cannot be told apart without native frames.
_IDLE_LEAF = re.compile(r"^(Condition\.wait|Queue\.get|Event\.wait|_worker|select|"
                        r"Runner\.run|run_forever|run_until_complete|Thread\.join|"
                        r"SimpleQueue\.get|_wait_for_tstate_lock) ")


def summarise(collapsed: Path, cpu_us_per_request: float, top: int = 25) -> str:
    """Fold py-spy's collapsed stacks into layer shares and top functions.

    Each layer's share of the busy samples is also shown as a share of the server's measured
    CPU time per request (samples alone over-count: a thread holding the GIL while the OS
    runs someone else on the core is still sampled).
    """
    layers: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or _IDLE_LEAF.match(frames[-1]):
            idle += count
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        layer = next((name for frame in reversed(frames) for name, rx in LAYERS
                      if rx.search(frame)), "other")
        layers[layer] += count
    out = [f"busy samples: {total} (idle/waiting samples left out: {idle})", "",
           "share of busy samples by layer (innermost wins):"]
    out += [f"  {100 * n / total:5.1f}%  {cpu_us_per_request * n / total:6.0f} us/req  {name}"
            for name, n in layers.most_common()]
    out += ["", f"top {top} functions by self time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    out += ["", f"top {top} functions by inclusive time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(out) + "\n"


def main() -> int:
    """Start the contender, load it with wrk, sample it, write the summaries."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contender", default="modelplane-v1")
    parser.add_argument("--model", default="seed")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true",
                        help="count only samples holding the GIL (Python-bound time)")
    parser.add_argument("--pyinstrument", action="store_true",
                        help="also run the server under pyinstrument (modelplane only)")
    parser.add_argument("--venvs", type=Path, default=REPO / ".bench")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()

    contender = cont.select([args.contender])[0]
    model = build_models(args.venvs / "models")[args.model]
    setup = cont.Setup(repo=REPO, work=args.venvs / "work", venvs=args.venvs)
    port = free_port()
    launch = contender.launch(setup, model, port)
    tag = f"{contender.name}-{model.name}-c{args.connections}{'-gil' if args.gil else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.venvs / "work" / f"pyspy-{tag}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    tools = args.venvs / "tools" / "bin"
    command = list(launch.command)
    pyinstrument_report = args.out / f"pyinstrument-{tag}.txt"
    if args.pyinstrument:
        # `python -m X` becomes `pyinstrument -r text -o FILE -m X`, same interpreter's path.
        module_at = command.index("-m")
        command = [str(tools / "pyinstrument"), "-r", "text", "-o",
                   str(pyinstrument_report), *command[module_at:]]
    base = f"http://127.0.0.1:{port}"
    log = args.venvs / "work" / "logs" / f"profile-{tag}.log"
    with Server(command, launch.env, log) as srv, temp_folder() as scratch:
        srv.wait_ready(base + launch.ready_path, timeout_s=300)
        body = request_body(contender.protocol, model)
        script = write_script(Path(scratch), request_path(contender.protocol, model), body,
                              request_headers(contender.protocol, body))
        run_wrk(base, script, args.connections, 2)  # warm-up
        load = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, json, dataclasses; from pathlib import Path; "
             "from bench.runtime.wrk import run_wrk; "
             "r = run_wrk(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]));"
             "print(json.dumps(dataclasses.asdict(r)))",
             base, str(script), str(args.connections), str(args.duration + 3)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        time.sleep(1)  # let the load reach steady state before sampling
        before, started = thread_cpu_seconds(srv.pid), time.perf_counter()
        subprocess.run(
            ["taskset", "-c", "1", str(tools / "py-spy"), "record", "--pid", str(srv.pid),
             "--subprocesses", "--duration", str(int(args.duration)), "--rate", str(args.rate),
             "--format", "raw", "--nonblocking", "--output", str(raw),
             *(["--gil"] if args.gil else [])],
            check=True, capture_output=True, timeout=args.duration + 60,
        )
        after, window = thread_cpu_seconds(srv.pid), time.perf_counter() - started
        result = json.loads(load.communicate(timeout=args.duration + 60)[0])
    requests = result["rps"] * window
    threads = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    thread_lines = [f"  {cpu / requests * 1e6:6.0f} us/req  {name}"
                    for cpu, name in threads[:5] if cpu > 0]
    cpu_per_request = sum(cpu for cpu, _ in threads) / requests * 1e6
    summary = summarise(raw, cpu_per_request)
    header = (
        f"py-spy{' --gil' if args.gil else ''} profile of {contender.name} "
        f"({contender.description}), model {model.name}, wrk -c{args.connections} on core 1 "
        f"for {args.duration:.0f}s, server on core 0, {args.rate} Hz\n"
        f"wrk during sampling: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}\n"
        f"CPU per request: {cpu_per_request:.0f} us; by server thread (from /proc, over the "
        "sampling window):\n" + "\n".join(thread_lines) + "\n\n"
    )
    target = args.out / f"pyspy-{tag}.txt"
    target.write_text(header + summary)
    print(header + summary)
    if args.pyinstrument:
        print(f"pyinstrument report: {pyinstrument_report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
