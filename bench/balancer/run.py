"""The balancer beside nginx, in one run: throughput, hop cost, and the slow replica.

    python -m bench.balancer                          # all three, 3 repeats (~12 min)
    python -m bench.balancer --only throughput --repeats 1 --seconds 5

- throughput: closed loop, wrk (64 connections) -> proxy -> an instant backend (nginx
  ``return 200``). Proxy pinned to core 0; backend and wrk to core 1. req/s, CPU per
  request, RSS; the ratio is the balancer's req/s over nginx's (one worker).
- hop: open loop at ``--hop-rate`` req/s to the same instant backend, direct and through
  each proxy; the added p99 is the p99 through the proxy minus the p99 direct.
- slow-replica: 4 simulated replicas, 4 slots each, exponential service times with mean
  5 ms (one replica 20 ms), open-loop Poisson at 70 % of fleet capacity; nginx
  round-robin / least_conn / random two least_conn / weighted, the balancer's strategies,
  and the informed client (no proxy; knows each replica's in-flight count and speed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.runtime.process import free_port, tree_cpu_seconds, tree_rss_bytes

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".bench" / "balancer"
PROXY_CPU, LOAD_CPU = "0", "1"

_NGINX = """worker_processes 1;
daemon off;
error_log {work}/error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    {body}
}}
"""
_BACKEND = """server {{ listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{{"predictions": [[0.5]]}}'; }} }}"""
_PROXY = """upstream replicas {{ {policy} {servers} keepalive 64; }}
    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://replicas;
        proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""


def _wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def _process(command: list[str], cpu: str, log: str, env: dict[str, str] | None = None,
             ) -> Iterator[subprocess.Popen[bytes]]:
    WORK.mkdir(parents=True, exist_ok=True)
    with (WORK / log).open("wb") as out:
        process = subprocess.Popen(["taskset", "-c", cpu, *command], stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _nginx(name: str, body: str, cpu: str) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "nginx.conf").write_text(_NGINX.format(work=work, body=body))
    return _process(["nginx", "-p", str(work), "-c", str(work / "nginx.conf")], cpu,
                    f"{name}.log")


def _nginx_proxy(name: str, port: int, backends: list[str], policy: str = "",
                 weights: list[int] | None = None) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    servers = " ".join(
        f"server {b}{f' weight={w}' if weights else ''};"
        for b, w in zip(backends, weights or [1] * len(backends), strict=True))
    return _nginx(name, _PROXY.format(policy=policy, servers=servers, port=port), PROXY_CPU)


def _balancer(port: int, backends: list[str], strategy: str,
              weights: list[int] | None = None) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "modelplane_balancer", "--host", "127.0.0.1", "--port",
               str(port), "--model", "bench", "--backends", ",".join(backends), "--strategy",
               strategy, "--log-level", "warning"]
    if weights:
        command += ["--weights", ",".join(map(str, weights))]
    return _process(command, PROXY_CPU, f"balancer-{strategy}.log")


def _wrk(port: int, seconds: float, connections: int = 64) -> dict[str, float]:
    done = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}",
                           f"-d{int(seconds)}s", "--latency", f"http://127.0.0.1:{port}/work"],
                          capture_output=True, text=True, check=True, timeout=seconds + 60)
    out = done.stdout
    rps = float(out.split("Requests/sec:")[1].split()[0])
    errors = 0
    if "Non-2xx" in out:
        errors += int(out.split("Non-2xx or 3xx responses:")[1].split()[0])
    if "Socket errors" in out:
        errors += sum(int(x.split()[-1]) for x in
                      out.split("Socket errors:")[1].split("\n")[0].split(","))
    p99 = out.split("99%")[1].split()[0]
    # wrk's units (stats.c): us, ms, s, then m and h for long waits.
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
    unit = next((u for u in units if p99.endswith(u)), None)
    if unit is None:
        raise RuntimeError(f"cannot read wrk's p99 {p99!r} in:\n{out}")
    p99_ms = float(p99.removesuffix(unit)) * units[unit]
    return {"rps": rps, "p99_ms": p99_ms, "errors": errors}


def _loadgen(args: list[str]) -> dict[str, float]:
    done = subprocess.run(["taskset", "-c", LOAD_CPU, sys.executable, "-m",
                           "bench.balancer.loadgen", *args], capture_output=True, text=True,
                          check=True, timeout=600)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def throughput(seconds: float) -> list[dict[str, object]]:
    """Closed loop at 64 connections through each proxy to an instant backend."""
    rows: list[dict[str, object]] = []
    backend_port, proxy_port = free_port(), free_port()
    backend = f"127.0.0.1:{backend_port}"
    with _nginx("backend", _BACKEND.format(port=backend_port), LOAD_CPU):
        _wait_port(backend_port)
        for name in ("nginx", "modelplane-balancer"):
            launcher = (_nginx_proxy("nginx-proxy", proxy_port, [backend]) if name == "nginx"
                        else _balancer(proxy_port, [backend], "latency-aware"))
            with launcher as process:
                _wait_port(proxy_port)
                _wrk(proxy_port, 1)  # warm-up
                cpu0 = tree_cpu_seconds(process.pid)
                result = _wrk(proxy_port, seconds)
                cpu = tree_cpu_seconds(process.pid) - cpu0
                rss = tree_rss_bytes(process.pid)
            rows.append({"scenario": "throughput", "contender": name, **result,
                         "cpu_us": cpu / max(1, result["rps"] * seconds) * 1e6,
                         "rss_mb": rss / 2**20})
    return rows


def hop(seconds: float, rate: float) -> list[dict[str, object]]:
    """Open loop at ``rate``: direct, through nginx, through the balancer."""
    rows: list[dict[str, object]] = []
    backend_port, proxy_port = free_port(), free_port()
    backend = f"127.0.0.1:{backend_port}"
    with _nginx("backend", _BACKEND.format(port=backend_port), LOAD_CPU):
        _wait_port(backend_port)
        direct = _loadgen(["--target", backend, "--rate", str(rate), "--seconds", str(seconds)])
        rows.append({"scenario": "hop", "contender": "direct", **direct})
        for name in ("nginx", "modelplane-balancer"):
            launcher = (_nginx_proxy("nginx-proxy", proxy_port, [backend]) if name == "nginx"
                        else _balancer(proxy_port, [backend], "latency-aware"))
            with launcher:
                _wait_port(proxy_port)
                result = _loadgen(["--target", f"127.0.0.1:{proxy_port}", "--rate", str(rate),
                                   "--seconds", str(seconds)])
            rows.append({"scenario": "hop", "contender": name, **result,
                         "added_p99_ms": result["p99_ms"] - direct["p99_ms"]})
    return rows


SLOTS, FAST_MS, SLOW_MS = 4, 5.0, 20.0


def slow_replica(seconds: float, load: float) -> list[dict[str, object]]:
    """4 replicas (one 4x slower), 4 slots each, Poisson at ``load`` of capacity."""
    rows: list[dict[str, object]] = []
    means = [FAST_MS, FAST_MS, FAST_MS, SLOW_MS]
    capacity = sum(SLOTS / (m / 1000) for m in means)
    rate = capacity * load
    port_file = WORK / "replicas.json"
    port_file.unlink(missing_ok=True)
    specs = []
    for i, mean in enumerate(means):
        specs += ["--replica", f"0:{mean}:{SLOTS}:r{i}"]
    command = [sys.executable, "-m", "tests.integration.balancer.replicas", "--dist", "exp",
               "--port-file", str(port_file), *specs]
    with _process(command, LOAD_CPU, "replicas.log"):
        deadline = time.monotonic() + 30
        while not port_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        ports = json.loads(port_file.read_text())
        backends = [f"127.0.0.1:{p}" for p in ports]
        weights = [round(SLOW_MS / m) for m in means]  # proportional to capacity
        proxy_port = free_port()
        contenders: list[tuple[str, contextlib.AbstractContextManager[object]]] = [
            ("nginx round-robin", _nginx_proxy("n-rr", proxy_port, backends)),
            ("nginx least_conn", _nginx_proxy("n-lc", proxy_port, backends, "least_conn;")),
            ("nginx random two least_conn",
             _nginx_proxy("n-p2c", proxy_port, backends, "random two least_conn;")),
            ("nginx weighted", _nginx_proxy("n-w", proxy_port, backends, "", weights)),
            ("balancer round-robin", _balancer(proxy_port, backends, "round-robin")),
            ("balancer least-request", _balancer(proxy_port, backends, "least-request")),
            ("balancer power-of-two", _balancer(proxy_port, backends, "power-of-two")),
            ("balancer latency-aware", _balancer(proxy_port, backends, "latency-aware")),
        ]
        informed = ",".join(f"{b}:{m}:{SLOTS}" for b, m in zip(backends, means, strict=True))
        result = _loadgen(["--informed", informed, "--rate", str(rate), "--seconds",
                           str(seconds)])
        rows.append({"scenario": "slow-replica", "contender": "informed client", **result})
        for name, launcher in contenders:
            with launcher:
                _wait_port(proxy_port)
                result = _loadgen(["--target", f"127.0.0.1:{proxy_port}", "--rate",
                                   str(rate), "--seconds", str(seconds)])
            rows.append({"scenario": "slow-replica", "contender": name, "rate": rate, **result})
    return rows


def medians(samples: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per (scenario, contender): the median of every numeric column over repeats."""
    grouped: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in samples:
        grouped.setdefault((str(row["scenario"]), str(row["contender"])), []).append(row)
    out = []
    for (scenario, contender), rows in grouped.items():
        merged: dict[str, object] = {"scenario": scenario, "contender": contender,
                                     "repeats": len(rows)}
        for key, value in rows[0].items():
            if isinstance(value, int | float) and key != "repeats":
                merged[key] = statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]
        out.append(merged)
    return out


def report(rows: list[dict[str, object]]) -> str:
    """The table and the ratios the issue sets targets for."""
    by = {(r["scenario"], r["contender"]): r for r in rows}
    lines = []
    for r in rows:
        cells = [f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                 if k not in ("scenario", "contender")]
        lines.append(f"{r['scenario']:>13} | {r['contender']:<28} | " + " ".join(cells))

    def get(scenario: str, contender: str, key: str) -> float | None:
        row = by.get((scenario, contender))
        return float(row[key]) if row and key in row else None  # type: ignore[arg-type]

    ratios = []
    mb, ng = get("throughput", "modelplane-balancer", "rps"), get("throughput", "nginx", "rps")
    if mb and ng:
        ratios.append(f"throughput: balancer / nginx = {mb / ng:.2f} (target >= 0.2)")
    ma, na = (get("hop", "modelplane-balancer", "added_p99_ms"),
              get("hop", "nginx", "added_p99_ms"))
    if ma is not None and na is not None:
        ratios.append(f"hop: added p99 balancer {ma:.2f} ms vs nginx {na:.2f} ms "
                      f"(target <= nginx + 1 ms)")
    la = get("slow-replica", "balancer latency-aware", "p99_ms")
    lc = get("slow-replica", "nginx least_conn", "p99_ms")
    inf = get("slow-replica", "informed client", "p99_ms")
    lr = get("slow-replica", "balancer least-request", "p99_ms")
    if la and lc and inf:
        ratios.append(f"slow replica: latency-aware p99 / nginx least_conn p99 = {la / lc:.2f} "
                      f"(target <= 0.6); / informed client p99 = {la / inf:.2f} (target <= 1.2)")
    if lr and lc:
        ratios.append(f"slow replica: least-request p99 / nginx least_conn p99 = {lr / lc:.2f} "
                      "(target <= 1.0)")
    return "\n".join([*lines, "", *ratios])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="throughput,hop,slow-replica")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hop-rate", type=float, default=2000)
    parser.add_argument("--load", type=float, default=0.7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    samples: list[dict[str, object]] = []
    target = args.json or WORK / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)

    def keep(rows: list[dict[str, object]], repeat: int) -> None:
        # Every sample is on disk as soon as it is taken: a later failure loses nothing.
        for row in rows:
            print(json.dumps({**row, "repeat": repeat}), flush=True)
        samples.extend({**r, "repeat": repeat} for r in rows)
        target.write_text(json.dumps({"argv": sys.argv, "samples": samples}, indent=1))

    for repeat in range(args.repeats):
        if "throughput" in chosen:
            keep(throughput(args.seconds), repeat)
        if "hop" in chosen:
            keep(hop(args.seconds, args.hop_rate), repeat)
        if "slow-replica" in chosen:
            keep(slow_replica(args.seconds, args.load), repeat)
    rows = medians(samples)
    text = report(rows)
    print(text)
    target.write_text(json.dumps({"argv": sys.argv, "samples": samples, "medians": rows},
                                 indent=1))
    print(f"\nsamples: {target}")
