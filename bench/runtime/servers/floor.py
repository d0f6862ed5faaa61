"""The floor: a bare ASGI app on uvicorn + uvloop + httptools answering a constant body.

It reads the whole request body (as any real server must) and answers the same JSON a v1
predict would, so the gap between it and a contender is that contender's own work.
Usage: ``python floor.py PORT``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
_BODY = b'{"predictions": [[0.5]]}'
_READY = b'{"ready": true}'


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Drain the request body, answer 200 with a constant JSON body."""
    if scope["type"] != "http":
        return  # lifespan events: nothing to set up
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = _BODY if scope["method"] == "POST" else _READY
    await send({
        "type": "http.response.start", "status": 200,
        "headers": [(b"content-type", b"application/json")],
    })
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                access_log=False, log_level="warning", lifespan="off")
