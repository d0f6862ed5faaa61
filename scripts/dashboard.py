"""Write the Grafana dashboard of the chart from the runtime's and the balancer's metric names.

The dashboard's queries name metrics only through ``modelplane_runtime.contract`` and
``modelplane_balancer.contract``, so a renamed metric changes the dashboard too; a test
fails when the committed JSON drifts.

    python scripts/dashboard.py          # rewrite charts/modelplane/dashboards/modelplane.json
    python scripts/dashboard.py --check  # exit 1 when the committed file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "runtime"))
sys.path.insert(0, str(ROOT / "balancer"))

from modelplane_balancer import contract as balancer  # noqa: E402
from modelplane_runtime import contract  # noqa: E402

TARGET = ROOT / "charts" / "modelplane" / "dashboards" / "modelplane.json"

# Series carry `namespace` and `pod` (added by Prometheus for a PodMonitor) and
# `modeldeployment` (the chart's PodMonitor relabels it from the pod's instance label).
SEL = 'namespace=~"$namespace", modeldeployment=~"$modeldeployment"'
BY = "namespace, modeldeployment"
NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


def _rate(metric: str, extra: str = "") -> str:
    return f"rate({metric}{{{SEL}{extra}}}[{RATE}])"


def _quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {BY}) ({_rate(histogram + '_bucket')}))"


def _panel(
    pid: int, title: str, unit: str, targets: list[tuple[str, str]], x: int, y: int, desc: str
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "calcs": ["lastNotNull", "max"]}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _share(counter: str, code: str) -> str:
    matching = _rate(counter, f', code=~"{code}"')
    return f"sum by ({BY}) ({matching}) / sum by ({BY}) ({_rate(counter)})"


Spec = tuple[str, str, list[tuple[str, str]], str]
"""(title, unit, [(query, legend)], description) of one panel."""


def _traffic() -> list[Spec]:
    req, lat = contract.METRIC_REQUESTS, contract.METRIC_REQUEST_LATENCY
    inf, batch = contract.METRIC_INFERENCE_LATENCY, contract.METRIC_BATCH_SIZE
    md = "{{namespace}}/{{modeldeployment}}"
    return [
        ("Requests per second", "reqps",
         [(f"sum by ({BY}) ({_rate(req)})", md)],
         "Requests served per second, all protocols and status codes."),
        ("Request latency", "s",
         [(_quantile(q, lat), f"p{int(q * 100)} {md}") for q in (0.5, 0.9, 0.99)],
         "Whole-request latency percentiles from the runtime's histogram."),
        ("Errors", "percentunit",
         [(_share(req, "5..|" + "|".join(contract.GRPC_SERVER_ERROR_CODES)), f"5xx {md}"),
          (_share(req, "4..|" + "|".join(contract.GRPC_CLIENT_ERROR_CODES)), f"4xx {md}")],
         "Share of requests answered with a server (5xx, or a server-side gRPC code) or "
         "client (4xx, or a client-side gRPC code) error."),
        ("In-flight requests", "short",
         [(f"sum by ({BY}) ({contract.METRIC_IN_FLIGHT}{{{SEL}}})", md)],
         "Requests being served right now, across replicas."),
        ("Batch size", "short",
         [(f"sum by ({BY}) ({_rate(batch + '_sum')}) / sum by ({BY}) ({_rate(batch + '_count')})",
           f"mean {md}"),
          (_quantile(0.99, batch), f"p99 {md}")],
         "Rows per model call after dynamic batching."),
        ("Replicas serving", "short",
         [(f"count by ({BY}) (count by ({BY}, pod) ({contract.METRIC_IN_FLIGHT}{{{SEL}}}))", md)],
         "Runtime pods exposing metrics, per ModelDeployment."),
        ("Inference latency", "s",
         [(_quantile(q, inf), f"p{int(q * 100)} {md}") for q in (0.5, 0.99)],
         "Model-call latency per batch (excludes queueing and HTTP)."),
        ("Model load time", "s",
         [(f"max by ({BY}, version) ({contract.METRIC_MODEL_LOAD}{{{SEL}}})",
           f"{md} v{{{{version}}}}")],
         "Seconds the last load of each model version took."),
        ("Model versions", "short",
         [(f"max by ({BY}, version, state) ({contract.METRIC_MODEL_VERSION_STATE}{{{SEL}}}) == 1",
           f"{md} v{{{{version}}}} {{{{state}}}}")],
         "The state of each listed version (AVAILABLE, LOADING, UNLOADING, END = failed)."),
        ("Repository polls and load failures", "short",
         [(f"sum by ({BY}) ({_rate(contract.METRIC_REPOSITORY_POLLS)})", f"polls/s {md}"),
          (f"sum by ({BY}) (increase({contract.METRIC_MODEL_LOAD_FAILURES}{{{SEL}}}[1h]))",
           f"failed loads (1h) {md}")],
         "With --poll-seconds: looks at the repository per second (flat zero: polling "
         "stopped) and versions that failed to load."),
    ]


# Process series carry `worker` ("0".."N-1", "supervisor"): a replica is the sum over them.
POD = f"{BY}, pod"


def _resources() -> list[Spec]:
    cpu, rss = contract.METRIC_PROCESS_CPU, contract.METRIC_PROCESS_RESIDENT_MEMORY
    pod = "{{pod}}"
    worker = "{{pod}} worker {{worker}}"
    return [
        ("CPU per replica", "short",
         [(f"sum by ({POD}) ({_rate(cpu)})", pod)],
         "CPU cores busy per runtime pod (all its processes: workers and supervisor)."),
        ("Memory per replica", "bytes",
         [(f"sum by ({POD}) ({rss}{{{SEL}}})", pod)],
         "Resident memory (RSS) per runtime pod, all its processes together."),
        ("Memory per worker", "bytes",
         [(f"max by ({POD}, worker) ({rss}{{{SEL}}})", f"RSS {worker}"),
          (f"max by ({POD}, worker) ({contract.METRIC_PROCESS_VIRTUAL_MEMORY}{{{SEL}}})",
           f"virtual {worker}")],
         "Resident and virtual memory of each runtime process (each worker holds a model copy)."),
        ("Open file descriptors", "short",
         [(f"max by ({POD}, worker) ({contract.METRIC_PROCESS_OPEN_FDS}{{{SEL}}})", worker),
          (f"min by ({POD}) ({contract.METRIC_PROCESS_MAX_FDS}{{{SEL}}})", f"limit {pod}")],
         "File descriptors open per runtime process (connections among them), and the limit."),
        ("Process uptime", "s",
         [(f"time() - max by ({POD}, worker) ({contract.METRIC_PROCESS_START_TIME}{{{SEL}}})",
           worker)],
         "Seconds since each runtime process started: a drop is a restart."),
        ("Model size on disk", "bytes",
         [(f"max by ({BY}, version) ({contract.METRIC_MODEL_SIZE}{{{SEL}}})",
           "{{namespace}}/{{modeldeployment}} v{{version}}")],
         "Bytes on disk of each loaded model version."),
    ]


def _gpus() -> list[Spec]:
    gpu = "{{pod}} GPU {{gpu}}"
    by_gpu = f"{POD}, gpu"
    return [
        ("GPU utilisation per replica", "percentunit",
         [(f"max by ({by_gpu}) ({contract.METRIC_GPU_UTILIZATION}{{{SEL}}})", gpu)],
         "Share of time a kernel ran on each GPU a runtime pod sees (NVML)."),
        ("GPU memory per replica", "bytes",
         [(f"max by ({by_gpu}) ({contract.METRIC_GPU_MEMORY_USED}{{{SEL}}})", f"used {gpu}"),
          (f"max by ({by_gpu}) ({contract.METRIC_GPU_MEMORY_TOTAL}{{{SEL}}})", f"total {gpu}")],
         "Device memory in use (every process on the GPU) and in total, per GPU and pod."),
        ("GPU power", "watt",
         [(f"max by ({by_gpu}) ({contract.METRIC_GPU_POWER}{{{SEL}}})", gpu)],
         "Board power draw of each GPU."),
        ("GPU temperature", "celsius",
         [(f"max by ({by_gpu}) ({contract.METRIC_GPU_TEMPERATURE}{{{SEL}}})", gpu)],
         "GPU core temperature."),
    ]


# The balancer's series: `replica` is the replica's host:port as the balancer dialled it,
# `replica=""` the requests the balancer answered itself (suspended, no replica, queue full).
REPLICA = f'{SEL}, replica!=""'


def _balancer() -> list[Spec]:
    req, lat = balancer.METRIC_REQUESTS, balancer.METRIC_LATENCY
    per_replica = f"{BY}, replica"
    replica = "{{modeldeployment}} {{replica}}"
    served = f"rate({req}{{{REPLICA}}}[{RATE}])"
    return [
        ("Share of traffic per replica (balancer)", "percentunit",
         [(f"sum by ({per_replica}) ({served}) / ignoring(replica) group_left "
           f"sum by ({BY}) ({served})", replica)],
         "Each replica's part of the requests the balancers sent, as they counted them."),
        ("Replica latency as the balancer sees it", "s",
         [(f"histogram_quantile(0.99, sum by (le, {per_replica}) "
           f"(rate({lat}_bucket{{{REPLICA}}}[{RATE}])))", f"p99 {replica}"),
          (f"max by ({per_replica}) ({balancer.METRIC_LATENCY_EWMA}{{{REPLICA}}})",
           f"peak EWMA {replica}")],
         "p99 from picking a replica to the end of its answer, and the peak-EWMA latency "
         "the latency-aware strategy weighs."),
        ("Balancer answers", "reqps",
         [(f"sum by ({BY}, code) (rate({req}{{{SEL}, replica=\"\"}}[{RATE}]))",
           "{{modeldeployment}} {{code}}"),
          (f"sum by ({BY}) ({_rate(balancer.METRIC_RETRIES)})", "retries {{modeldeployment}}"),
          (f"sum by ({BY}) ({_rate(balancer.METRIC_EJECTIONS)})",
           "ejections {{modeldeployment}}")],
         "Requests the balancer answered itself (503: no replica, suspended, queue full), "
         "retries on another replica, and outlier ejections."),
        ("Held and in-flight requests (balancer)", "short",
         [(f"sum by ({BY}) ({balancer.METRIC_WAITING}{{{SEL}}})", "held {{modeldeployment}}"),
          (f"sum by ({per_replica}) ({balancer.METRIC_IN_FLIGHT}{{{REPLICA}}})",
           f"in flight {replica}")],
         "Requests held while no replica can take them (a model waking from zero), and "
         "requests on each replica now."),
    ]


SECTIONS: list[tuple[str, Callable[[], list[Spec]]]] = [
    ("Traffic", _traffic),
    ("Resources", _resources),
    ("GPUs (only where NVML sees one)", _gpus),
    ("Balancer (routing.balancer)", _balancer),
]


def panels() -> list[dict[str, Any]]:
    """The dashboard's panels: a row per section, two panels side by side under it."""
    result: list[dict[str, Any]] = []
    y = 0
    for title, specs in SECTIONS:
        result.append({
            "id": len(result) + 1, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": [],
        })
        y += 1
        for i, (name, unit, targets, desc) in enumerate(specs()):
            result.append(
                _panel(len(result) + 1, name, unit, targets, (i % 2) * 12, y + (i // 2) * 8, desc)
            )
        y += (len(specs()) + 1) // 2 * 8
    return result


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name, "label": label, "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query, "refresh": 2, "includeAll": True, "multi": True,
        "allValue": ".*", "current": {"text": "All", "value": "$__all"}, "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    """The whole dashboard as a JSON-ready dict."""
    return {
        "uid": "modelplane",
        "title": "Modelplane",
        "description": (
            "TensorFlow models served by Modelplane: load, latency, errors, batching, "
            "replicas, and each replica's CPU, memory and GPUs."
        ),
        "tags": ["modelplane", "tensorflow", "inference"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}},
            _variable("namespace", "Namespace",
                      f"label_values({contract.METRIC_REQUESTS}, namespace)"),
            _variable("modeldeployment", "ModelDeployment",
                      f"label_values({contract.METRIC_REQUESTS}{{{NS}}}, modeldeployment)"),
        ]},
        "panels": panels(),
    }


def render() -> str:
    """The dashboard file's exact text."""
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    """Write the dashboard, or with --check report whether the committed one is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not TARGET.is_file() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/dashboard.py")
            return 1
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
