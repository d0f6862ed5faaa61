"""The request rules every front door applies (rules.py): ids, limits, versions, errors, time."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest
from modelplane_runtime import rules
from modelplane_runtime.auth import TokenStore
from modelplane_runtime.errors import (
    InvalidInput,
    ModelNotFound,
    PayloadTooLarge,
    ShuttingDown,
    Unauthenticated,
)
from modelplane_runtime.logs import RequestIds
from modelplane_runtime.metrics import Metrics
from modelplane_runtime.serving import Runtime
from modelplane_runtime.settings import RuntimeSettings

from tests.fixtures.polling import eventually_async


class _Plane:
    ready = True


def _runtime(tmp_path: Path, *, tokens: bool = False) -> Runtime:
    auth = None
    if tokens:
        (tmp_path / "alice").write_text("alice-token\n")
        auth = TokenStore(tmp_path)
    return Runtime(RuntimeSettings(), _Plane(), Metrics(), auth=auth)  # type: ignore[arg-type]


def test_refusals_in_order_draining_then_token(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, tokens=True)
    assert rules.refusal(runtime, b"Bearer alice-token") is None
    missing = rules.refusal(runtime, None)
    assert isinstance(missing, Unauthenticated)
    assert "missing bearer token" in missing.message
    assert rules.refusal(runtime, b"Bearer nope") is not None
    assert rules.refusal(runtime, None, auth=False) is None
    runtime.draining = True
    assert isinstance(rules.refusal(runtime, b"Bearer alice-token"), ShuttingDown)
    assert isinstance(rules.refusal(runtime, None, drain=False), Unauthenticated)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"abc-123", "abc-123"),
        (b"x" * 200, "x" * 128),
        ("caf\u00e9".encode("latin-1"), "caf\u00e9"),
    ],
)
def test_request_ids_are_kept_and_capped(given: bytes, kept: str) -> None:
    assert rules.request_id(given, RequestIds()) == kept


@pytest.mark.parametrize("given", [None, b"", b"evil\r\nset-cookie: x", b"tab\x00null"])
def test_missing_or_unsafe_request_ids_are_replaced(given: bytes | None) -> None:
    ids = RequestIds()
    made = rules.request_id(given, ids)
    assert made and "\r" not in made and "\x00" not in made
    assert made != rules.request_id(given, ids)  # a fresh one each time


def test_declared_lengths() -> None:
    assert rules.declared_length(b"1024", 2048) == 1024
    assert rules.declared_length(" 12 ", 2048) == 12
    with pytest.raises(PayloadTooLarge, match="4096 bytes; the limit is 2048"):
        rules.declared_length(b"4096", 2048)
    for bad in (b"", b"-1", b"12a", "\u00b2".encode(), b"1e3", b"0x10"):
        with pytest.raises(InvalidInput, match="invalid Content-Length"):
            rules.declared_length(bad, 2048)
    with pytest.raises(PayloadTooLarge):  # a number too long to be a real length
        rules.declared_length(b"9" * 5000, 2048)


def test_binary_header_lengths() -> None:
    assert rules.header_length(None) is None
    assert rules.header_length(b"42") == 42
    for bad in ("\u00b2", "9" * 4301, "-1", "", "4 2"):
        with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
            rules.header_length(bad)


def test_versions_are_int64() -> None:
    assert rules.version_number(None) is None
    assert rules.version_number("0") == 0
    assert rules.version_number(str(2**63 - 1)) == 2**63 - 1
    for bad in (str(2**63), "9" * 4301, "-3", "1.5", "\u00b2", " 3", "three"):
        with pytest.raises(InvalidInput, match="non-negative integer") as caught:
            rules.version_number(bad)
        assert len(caught.value.message) < 200  # a huge value is not echoed whole


def test_error_body_survives_lone_surrogates() -> None:
    assert orjson.loads(rules.error_body("plain")) == {"error": "plain"}
    body = orjson.loads(rules.error_body("bad signature '\ud800'"))
    assert body["error"].startswith("bad signature '")


def test_error_status_logs_client_errors_and_hides_bugs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert rules.error_status(ModelNotFound("no such model")) == (404, "no such model")
    assert rules.error_status(ValueError("secret detail")) == (500, "internal server error")
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    caplog.clear()
    assert rules.error_status(ShuttingDown("bye"), log=False) == (503, "bye")
    assert not caplog.records


class _Request:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def test_deadlines_cancel_late_requests_only() -> None:
    ticker = rules.Ticker()
    deadlines = rules.Deadlines(0.05, ticker)
    loop = asyncio.get_running_loop()
    late, answered = _Request(), _Request()
    deadlines.enter(late, loop)
    deadlines.enter(answered, loop)
    deadlines.leave(answered)
    await eventually_async(lambda: late.cancelled, timeout=5, what="the deadline")
    assert deadlines.expired(late)
    assert not answered.cancelled and not deadlines.expired(answered)


async def test_one_ticker_serves_sweeps_of_different_periods() -> None:
    ticker = rules.Ticker()
    loop = asyncio.get_running_loop()
    fast: list[float] = []
    slow: list[float] = []

    def sweep_fast(now: float) -> bool:
        fast.append(now)
        return len(fast) < 10

    def sweep_slow(now: float) -> bool:
        slow.append(now)
        return False

    ticker.register(sweep_fast, 0.01)
    ticker.register(sweep_slow, 0.05)
    woken = loop.time()
    ticker.wake(sweep_fast, loop)
    ticker.wake(sweep_slow, loop)
    await eventually_async(lambda: len(fast) >= 10 and slow, timeout=5, what="both sweeps")
    assert len(slow) == 1  # it had nothing left to watch: not swept again
    assert slow[0] - woken >= 0.049  # not before its own period (the ticker allows 1 ms)
