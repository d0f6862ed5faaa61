"""Every contender: how to start it on a port for one model, and where it answers.

Kinds: ``runtime`` (Modelplane), ``peer`` (KServe, MLServer, naive FastAPI; "best peer" is
the fastest of these), ``floor`` (bare ASGI app), ``reference`` (nginx answering the same
constant: the machine's HTTP limit, with no Python at all). The in-process ceiling is not a
server; see ceiling.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.runtime.models import BenchModel
from bench.runtime.payloads import Protocol
from bench.runtime.process import free_port

Kind = Literal["runtime", "peer", "floor", "reference"]
SERVERS = Path(__file__).resolve().parent / "servers"


@dataclass(frozen=True)
class Setup:
    """Where things are and how batching contenders are tuned, for one benchmark run."""

    repo: Path
    work: Path
    venvs: Path
    max_batch_size: int = 64
    max_latency_ms: float = 2.0
    runtime_python: str = sys.executable
    baseline: Path | None = None
    """A checkout of another commit (``--baseline``): its runtime runs as a contender too."""

    def venv_bin(self, venv: str, tool: str) -> str:
        """A tool inside one of the peers' virtual environments."""
        return str(self.venvs / venv / "bin" / tool)


@dataclass(frozen=True)
class Launch:
    """A started contender's command line, extra environment and readiness URL path."""

    command: list[str]
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    sidecar: list[str] | None = None
    """A helper process started first, off the server's core (the traced contender's OTLP
    sink), ready when ``sidecar_ready`` answers 200."""
    sidecar_ready: str = ""


@dataclass(frozen=True)
class Contender:
    """One row group of the table."""

    name: str
    kind: Kind
    protocol: Protocol
    launch: Callable[[Setup, BenchModel, int], Launch]
    description: str


_QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def _modelplane(
    batch: bool,
    direct: bool = True,
    baseline: bool = False,
    traced: bool = False,
    sampled: float | None = None,
    grpc: bool = True,
) -> Callable[[Setup, BenchModel, int], Launch]:
    def launch(setup: Setup, model: BenchModel, port: int) -> Launch:
        size = setup.max_batch_size if batch else 1
        tree = setup.repo
        if baseline:
            if setup.baseline is None:
                raise SystemExit("modelplane-v1-baseline needs --baseline PATH (a checkout)")
            tree = setup.baseline
        env = {**_QUIET_TF, "PYTHONPATH": str(tree / "runtime")}
        if not direct:
            env["MODELPLANE_HTTP_DIRECT"] = "false"
        if not grpc:
            env["MODELPLANE_GRPC_PORT"] = "0"
        sidecar = None
        sink = ""
        if traced:
            # Every request traced (the default parent-based sampler, no parent), or the
            # share ``sampled`` of them, exported over OTLP/HTTP to a sink standing in for
            # a collector.
            sink_port = free_port()
            sink = f"http://127.0.0.1:{sink_port}"
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
            if sampled is not None:
                env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
                env["OTEL_TRACES_SAMPLER_ARG"] = str(sampled)
            sidecar = [setup.runtime_python, str(SERVERS / "otlp_sink.py"), str(sink_port)]
        return Launch(
            [setup.runtime_python, "-m", "modelplane_runtime.cli", "serve", str(model.base),
             "--name", model.name, "--host", "127.0.0.1", "--port", str(port),
             "--max-batch-size", str(size), "--max-latency-ms", str(setup.max_latency_ms)],
            "/v2/health/ready", env, sidecar, f"{sink}/ready" if sink else "",
        )

    return launch


def _kserve(setup: Setup, model: BenchModel, port: int) -> Launch:
    return Launch(
        [setup.venv_bin("kserve", "python"), str(SERVERS / "kserve_server.py"),
         "--model_dir", str(model.version_dir), "--model_name", model.name,
         "--http_port", str(port), "--enable_grpc", "false"],
        f"/v1/models/{model.name}", dict(_QUIET_TF),
    )


def _mlserver(batch: bool) -> Callable[[Setup, BenchModel, int], Launch]:
    def launch(setup: Setup, model: BenchModel, port: int) -> Launch:
        folder = setup.work / f"mlserver-{model.name}-{'batch' if batch else 'nobatch'}"
        folder.mkdir(parents=True, exist_ok=True)
        settings: dict[str, object] = {
            "name": model.name,
            "implementation": "mlserver_runtime.SavedModelRuntime",
            "parameters": {"uri": str(model.version_dir)},
        }
        if batch:
            settings["max_batch_size"] = setup.max_batch_size
            settings["max_batch_time"] = setup.max_latency_ms / 1000
        (folder / "model-settings.json").write_text(json.dumps(settings))
        env = {
            **_QUIET_TF,
            "PYTHONPATH": str(SERVERS),
            "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_HOST": "127.0.0.1",
            # It also opens gRPC and metrics ports: free ones, or it hangs half-started.
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
        }
        return Launch([setup.venv_bin("mlserver", "mlserver"), "start", str(folder)],
                      f"/v2/models/{model.name}/ready", env)

    return launch


def _naive(setup: Setup, model: BenchModel, port: int) -> Launch:
    return Launch(
        [setup.runtime_python, str(SERVERS / "naive_fastapi.py"), str(model.version_dir),
         model.name, str(port)],
        f"/v1/models/{model.name}", dict(_QUIET_TF),
    )


def _floor(setup: Setup, model: BenchModel, port: int) -> Launch:
    return Launch([setup.runtime_python, str(SERVERS / "floor.py"), str(port)], "/ready")


_NGINX_CONF = """worker_processes 1;
daemon off;
error_log {work}/error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{{"predictions": [[0.5]]}}';
        }}
    }}
}}
"""


def _nginx(setup: Setup, model: BenchModel, port: int) -> Launch:
    # One worker process: the same one core as every other contender (taskset pins both).
    work = setup.work / f"nginx-{port}"
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(work=work, port=port))
    return Launch(["nginx", "-p", str(work), "-c", str(conf)], "/ready")


CONTENDERS: tuple[Contender, ...] = (
    Contender("modelplane-v1", "runtime", "v1", _modelplane(True), "runtime, v1, batching on"),
    Contender("modelplane-v1-nobatch", "runtime", "v1", _modelplane(False),
              "runtime, v1, --max-batch-size 1"),
    Contender("modelplane-v1-asgi", "runtime", "v1", _modelplane(True, direct=False),
              "runtime, v1, batching, every request through ASGI (MODELPLANE_HTTP_DIRECT=false)"),
    Contender("modelplane-v1-traced", "runtime", "v1", _modelplane(True, traced=True),
              "runtime, v1, batching, every request traced and exported over OTLP/HTTP"),
    Contender("modelplane-v1-traced-1pct", "runtime", "v1",
              _modelplane(True, traced=True, sampled=0.01),
              "runtime, v1, batching, tracing on with 1% of requests sampled"),
    Contender("modelplane-v1-nogrpc", "runtime", "v1", _modelplane(True, grpc=False),
              "runtime, v1, batching, the gRPC server off (MODELPLANE_GRPC_PORT=0)"),
    Contender("modelplane-v1-baseline", "runtime", "v1", _modelplane(True, baseline=True),
              "the runtime of the --baseline checkout, v1, batching on (before/after runs)"),
    Contender("modelplane-v2", "runtime", "v2", _modelplane(True), "runtime, v2 JSON, batching"),
    Contender("modelplane-v2-binary", "runtime", "v2-binary", _modelplane(True),
              "runtime, v2 with the input as binary tensor data, batching"),
    Contender("modelplane-v2-nobatch", "runtime", "v2", _modelplane(False),
              "runtime, v2 JSON, --max-batch-size 1"),
    Contender("kserve", "peer", "v1", _kserve, "KServe model server, kserve.Model, v1"),
    Contender("mlserver-batch", "peer", "v2", _mlserver(True), "MLServer, adaptive batching"),
    Contender("mlserver", "peer", "v2", _mlserver(False), "MLServer, no adaptive batching"),
    Contender("naive-fastapi", "peer", "v1", _naive, "FastAPI + pydantic, model per request"),
    Contender("floor", "floor", "v1", _floor, "bare ASGI on uvicorn+uvloop+httptools"),
    Contender("nginx", "reference", "v1", _nginx, "nginx, one worker, constant answer"),
)


def select(wanted: list[str]) -> list[Contender]:
    """The contenders named (an exact name, or a prefix such as ``modelplane``), in table order."""
    chosen: list[Contender] = []
    for word in wanted:
        exact = [c for c in CONTENDERS if c.name == word]
        matches = exact or [c for c in CONTENDERS if c.name.startswith(word)]
        if not matches:
            names = ", ".join(c.name for c in CONTENDERS)
            raise SystemExit(f"unknown contender {word!r}; choose from: {names}, ceiling")
        chosen.extend(m for m in matches if m not in chosen)
    return [c for c in CONTENDERS if c in chosen]
