"""An OTLP/HTTP trace sink for the traced contender: accepts every export, keeps nothing.

It stands in for an OpenTelemetry Collector on another machine, so that
``modelplane-v1-traced`` pays for making and exporting its spans but not for a collector's
work (the sink runs beside wrk, off the server's core). It answers each ``POST
/v1/traces`` with an empty ``ExportTraceServiceResponse`` (a 200 with an empty protobuf
body) and prints what it received when stopped. Usage: ``python otlp_sink.py PORT``.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
received = {"exports": 0, "bytes": 0}


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Drain the body; 200 with an empty protobuf answer (GET /ready: 200 as well)."""
    if scope["type"] != "http":
        return
    more, size = True, 0
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        received["exports"] += 1
        received["bytes"] += size
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/x-protobuf")]})
    await send({"type": "http.response.body", "body": b""})


def _report(*_: object) -> None:
    print(f"otlp sink: {received['exports']} exports, {received['bytes']} bytes", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _report)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                log_level="warning", access_log=False, lifespan="off")
