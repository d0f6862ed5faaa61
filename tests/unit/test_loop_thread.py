"""LoopThread, the test fixtures' host for servers that run on their own loop."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from aiohttp import web

from tests.fixtures.loop_thread import LoopThread


async def _hello(ready: Callable[[str], None], stop: asyncio.Event) -> None:
    async def handle(request: web.BaseRequest) -> web.Response:
        return web.Response(text=f"hello from {threading.current_thread().name}")

    runner = web.ServerRunner(web.Server(handle), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    ready(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def test_serves_from_its_thread_runs_coroutines_there_and_stops() -> None:
    host = LoopThread("hello-server")
    url = host.start(_hello)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"hello from hello-server"

        async def where() -> str:
            return threading.current_thread().name

        assert host.run(where()) == "hello-server"
    finally:
        host.stop()
    assert not any(t.name == "hello-server" for t in threading.enumerate())
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(url, timeout=2)


def test_a_server_that_fails_before_listening_fails_start() -> None:
    async def broken(ready: Callable[[str], None], stop: asyncio.Event) -> None:
        raise RuntimeError("no port for you")

    with pytest.raises(RuntimeError, match="no port for you"):
        LoopThread("broken-server").start(broken, timeout=10)


def test_run_before_start_says_so() -> None:
    async def nothing() -> None:
        return None

    coroutine = nothing()
    with pytest.raises(AssertionError, match="idle-server not started"):
        LoopThread("idle-server").run(coroutine)
    coroutine.close()
