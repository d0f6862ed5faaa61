"""``modelplane demo``: build the bundled demo model if needed, serve it, print a request.

The curl lines are printed on stdout only once the server is ready, with the port actually
bound (8080 unless it is taken, then a free one), so they can be pasted as they are.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import orjson

from modelplane_runtime import contract
from modelplane_runtime.demo_model import DEMO_FEATURES, DEMO_INPUT, build_demo_model
from modelplane_runtime.logs import configure_logging
from modelplane_runtime.server.lifecycle import bind_socket
from modelplane_runtime.server.process import serve
from modelplane_runtime.settings import RuntimeSettings

logger = logging.getLogger("modelplane.demo")

DEMO_NAME = "seed-mlp"
"""The name the samples and the README use (`/v1/models/seed-mlp:predict`)."""
DEFAULT_CACHE = Path("~/.cache/modelplane/demo")


def _port_is_free(host: str, port: int) -> bool:
    try:
        bind_socket(host, port).close()
    except OSError:
        return False
    return True


def curl_lines(url: str, name: str) -> list[str]:
    """Ready-to-paste v1 and v2 prediction requests for the demo model."""
    row = [float(i + 1) for i in range(DEMO_FEATURES)]
    v1_body = orjson.dumps({"instances": [row]}).decode()
    tensor = {"name": DEMO_INPUT, "shape": [1, DEMO_FEATURES], "datatype": "FP32", "data": row}
    v2_body = orjson.dumps({"inputs": [tensor]}).decode()
    return [
        f"curl -s {url}/v1/models/{name}:predict -d {shlex.quote(v1_body)}",
        f"curl -s {url}/v2/models/{name}/infer -H 'Content-Type: application/json' "
        f"-d {shlex.quote(v2_body)}",
    ]


def demo(settings: RuntimeSettings, cache_dir: Path | None = None) -> int:
    """Build (if missing) and serve the demo model; print curl lines once it is ready."""
    configure_logging(settings.log_level)
    base = (cache_dir or DEFAULT_CACHE).expanduser()
    logger.info("preparing the demo model", extra={"path": str(base)})
    build_demo_model(base)
    updates: dict[str, object] = {
        "model_path": base,
        "model_name": settings.model_name or DEMO_NAME,
    }
    if settings.port == contract.HTTP_PORT and not _port_is_free(settings.host, settings.port):
        logger.warning("port %d is taken; picking a free one", settings.port)
        updates["port"] = 0
    settings = settings.model_copy(update=updates)
    name = settings.served_name

    def announce(url: str) -> None:
        print(f"Modelplane is serving the demo model {name!r} at {url}. Try:")
        for line in curl_lines(url, name):
            print(f"  {line}")
        print("Stop with Ctrl+C.", flush=True)

    return serve(settings, on_ready=announce)
