"""``python -m bench.scale_to_zero``: scale from zero, measured (issue 14).

Two numbers, each next to its reference in the same run:

1. The first request to a model at zero, from sent to answered, next to the runtime's own
   start-to-ready in that same wake-up (``modelplane serve`` of the demo model from
   process start to ``/v2/health/ready``). Their difference is the platform's cost: the
   balancer noticing, the wake Lease, the operator's watch and scale, the Deployment
   update seen by the kubelet stand-in, the EndpointSlice, the balancer's discovery. The
   runtime's start-to-ready alone (no platform at all) is measured first, as a baseline.
2. The balancer's resident memory while it holds ``--held`` requests (1,000) for a model
   at zero, against its memory idle; then the model wakes and every held request must be
   answered 200.

Everything runs on this machine: the emulated API server (tests/fixtures/apiserver), the
real operator and balancer, real runtimes; operator, balancer and runtime pinned to core 0,
the load generator (this process) to core 1. Results: ``bench/scale_to_zero/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.operator.process import Proc, apply_crd, start, start_emulator
from bench.scale_to_zero.cluster import NAME, NS, Kubelet, free_port, pinned, start_runtime
from tests.fixtures.polling import eventually

RESULTS = Path(__file__).resolve().parent / "results"
LOADGEN_CORE = 1
BODY = orjson.dumps({"instances": [[0.1 * i for i in range(8)]]})


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _model_deployment(idle_s: int) -> dict[str, Any]:
    return {"apiVersion": "modelplane.io/v1alpha1", "kind": "ModelDeployment",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {"model": {"uri": "demo://seed-mlp"},
                     "autoscaling": {"minReplicas": 0, "maxReplicas": 1,
                                     "idleSeconds": idle_s}}}


def _status(api: httpx.Client) -> dict[str, Any]:
    md = api.get(f"/apis/modelplane.io/v1alpha1/namespaces/{NS}/modeldeployments/{NAME}")
    found: dict[str, Any] = md.json().get("status") or {}
    return found


def _asleep(api: httpx.Client, kubelet: Kubelet) -> bool:
    if kubelet.failure is not None:
        raise RuntimeError(f"the kubelet stand-in failed: {kubelet.failure!r}")
    return bool((_status(api).get("scaling") or {}).get("scaledToZeroAt")) and (
        kubelet.runtime is None)


async def _hold(port: int, count: int) -> list[tuple[asyncio.StreamReader,
                                                     asyncio.StreamWriter]]:
    """``count`` connections, each with one prediction sent (answers read later)."""
    head = (f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nhost: bench\r\n"
            f"content-type: application/json\r\ncontent-length: {len(BODY)}\r\n\r\n").encode()
    streams = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + BODY)
        streams.append((reader, writer))
    return streams


async def _answers(streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
                   timeout_s: float) -> list[int]:
    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
        writer.close()
        return int(line.split()[1]) if line else 0
    return list(await asyncio.gather(*(one(r, w) for r, w in streams)))


def _waiting(port: int) -> float:
    from tests.fixtures.runtime_server import metric_value

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return metric_value(text, "modelplane_balancer_requests_waiting")


def run(runs: int, held: int, idle_s: int, workdir: Path) -> dict[str, Any]:
    """Every measurement; the result document."""
    model_dir = workdir / "demo"
    subprocess.run([sys.executable, "-m", "modelplane_runtime.cli", "fetch",
                    "demo://seed-mlp", str(model_dir)], check=True, capture_output=True)
    baseline = []
    for i in range(runs):
        proc, seconds = start_runtime(model_dir, free_port("127.0.0.2"),
                                      workdir / f"baseline-{i}.log")
        proc.stop(grace_s=60)
        baseline.append(seconds)

    emulator, url, kubeconfig = start_emulator(workdir)
    procs: list[Proc] = [emulator]
    kubelet = Kubelet(url, model_dir, workdir)
    try:
        apply_crd(kubeconfig)
        env = {"KUBECONFIG": str(kubeconfig)}
        lb_port = free_port("127.0.0.1")
        procs.append(start(pinned([sys.executable, "-m", "modelplane_balancer", "--host",
                                   "127.0.0.1", "--port", str(lb_port), "--model", NAME,
                                   "--namespace", NS]), workdir / "balancer.log",
                           {**env, "MODELPLANE_BALANCER_POD_NAME": f"{NAME}-balancer-0"}))
        balancer = procs[-1]
        procs.append(start(pinned([sys.executable, "-m", "modelplane_runtime.cli", "operator",
                                   "--namespace", NS, "--standalone"]), workdir / "operator.log",
                           {**env, "MODELPLANE_OPERATOR_HTTP_PORT": "0",
                            "MODELPLANE_OPERATOR_SCRAPE_INTERVAL_S": "1",
                            "MODELPLANE_OPERATOR_SCRAPE_PORT": str(kubelet.port),
                            "MODELPLANE_OPERATOR_BALANCER_SCRAPE_PORT": str(lb_port)}))
        api = httpx.Client(base_url=url, timeout=10)
        api.post(f"/apis/modelplane.io/v1alpha1/namespaces/{NS}/modeldeployments",
                 json=_model_deployment(idle_s)).raise_for_status()
        kubelet.start()
        deployment = eventually(lambda: (d := api.get(
            f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-balancer")).status_code == 200
                                and d.json(), timeout=60, what="the balancer Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        api.post(f"/api/v1/namespaces/{NS}/pods", json={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{NAME}-balancer-0", "namespace": NS, "labels": labels},
            "spec": {"containers": [{"name": "balancer", "image": "stand-in"}]}})
        api.patch(f"/api/v1/namespaces/{NS}/pods/{NAME}-balancer-0/status",
                  headers={"Content-Type": "application/merge-patch+json"},
                  json={"status": {"phase": "Running", "podIP": "127.0.0.1",
                                   "conditions": [{"type": "Ready", "status": "True"}]}})

        wakes = []
        client = httpx.Client(timeout=180)
        for _ in range(runs):
            eventually(lambda: _asleep(api, kubelet), timeout=idle_s + 180, interval=0.2,
                       what="the model at zero")
            sent = time.monotonic()
            answer = client.post(f"http://127.0.0.1:{lb_port}/v1/models/{NAME}:predict",
                                 content=BODY, headers={"content-type": "application/json"})
            answered = time.monotonic()
            if answer.status_code != 200:
                raise RuntimeError(f"the first request failed: {answer.text}")
            seen, ready = kubelet.starts[-1]
            cold = eventually(lambda: _status(api).get("lastColdStartSeconds"), timeout=30,
                              what="status.lastColdStartSeconds")
            wakes.append({"first_request_s": answered - sent, "runtime_start_s": ready - seen,
                          "status_cold_start_s": cold})

        eventually(lambda: _asleep(api, kubelet), timeout=idle_s + 180, interval=0.2,
                   what="the model at zero")
        kubelet.paused.set()  # no replica comes until every request is held
        idle_rss = _rss_mib(balancer.pid)
        loop = asyncio.new_event_loop()
        streams = loop.run_until_complete(_hold(lb_port, held))
        eventually(lambda: _waiting(lb_port) >= held, timeout=60, what="every request held")
        time.sleep(1.0)
        holding_rss = _rss_mib(balancer.pid)
        kubelet.paused.clear()
        codes = loop.run_until_complete(_answers(streams, 180))
        loop.close()
        memory = {"held": held, "idle_rss_mib": round(idle_rss, 1),
                  "holding_rss_mib": round(holding_rss, 1),
                  "kib_per_held_request": round((holding_rss - idle_rss) * 1024 / held, 1),
                  "answered_200": codes.count(200)}
        return {"baseline_runtime_start_s": baseline, "wakes": wakes, "memory": memory}
    finally:
        kubelet.stop()
        for proc in reversed(procs):
            if proc.alive():
                proc.stop(grace_s=30)


def report(result: dict[str, Any]) -> str:
    """The results as text: medians and the platform's cost."""
    wakes = result["wakes"]
    first = statistics.median(w["first_request_s"] for w in wakes)
    start_same = statistics.median(w["runtime_start_s"] for w in wakes)
    baseline = statistics.median(result["baseline_runtime_start_s"])
    memory = result["memory"]
    return "\n".join([
        f"runtime start-to-ready alone (median of {len(result['baseline_runtime_start_s'])}): "
        f"{baseline:.2f} s",
        f"first request at zero -> answer (median of {len(wakes)}): {first:.2f} s",
        f"runtime start-to-ready in those wake-ups: {start_same:.2f} s",
        f"platform cost (first request - runtime start, same run): {first - start_same:.2f} s"
        f" ({first / start_same:.2f}x the runtime's own start)",
        f"status.lastColdStartSeconds: {[w['status_cold_start_s'] for w in wakes]}",
        f"balancer RSS idle {memory['idle_rss_mib']} MiB, holding {memory['held']} requests "
        f"{memory['holding_rss_mib']} MiB ({memory['kib_per_held_request']} KiB per held "
        f"request); answered 200 after the wake-up: {memory['answered_200']}/{memory['held']}",
    ])


def main() -> int:
    """Run, print, save."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="wake-ups measured")
    parser.add_argument("--held", type=int, default=1000, help="requests held for memory")
    parser.add_argument("--idle", type=int, default=5, help="idleSeconds of the model")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOADGEN_CORE})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    with tempfile.TemporaryDirectory(prefix="bench-s2z-") as folder:
        result = run(args.runs, args.held, args.idle, Path(folder))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "load_before": os.getloadavg()}
    text = report(result)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H%M")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{stamp}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
