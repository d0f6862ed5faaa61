"""Property-based fuzzing of a real runtime: bodies, paths and headers never get a 5xx.

Hypothesis generates v1 bodies, v2 JSON and binary bodies (mostly near-valid, so they get
past the first checks), request targets and header values, and sends each over a raw
socket to a runtime process (the direct path, and two workers). Properties: every answer is
a JSON 4xx or a 200, never a 5xx or a dropped connection; afterwards the server is healthy
and its memory has not grown without bound. Slow: run in CI (`pytest -m slow`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.runtime_server import RuntimeServer, launch_runtime
from tests.fixtures.wire import PREDICT, V1, V2, Wire, check_predict, http_request

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
RSS_GROWTH_MB = 300


@pytest.fixture(scope="module", params=["one", "workers"])
def server(
    request: pytest.FixtureRequest, demo_model_dir: Path, runtime_log_dir: Path
) -> Iterator[RuntimeServer]:
    """The demo model served by one process, or by two workers."""
    args = ["--name", "demo", "--max-body-bytes", str(4 * 1024 * 1024)]
    if request.param == "workers":
        args += ["--workers", "2"]
    with launch_runtime(demo_model_dir, runtime_log_dir, args) as running:
        with Wire(running.port) as wire:  # warm: the baseline is a server that has served
            for _ in range(20):
                wire.send(http_request("POST", V1, PREDICT))
                check_predict(wire.reply())
        _BASELINES[running.process.pid] = _rss_mb(running.process.pid)
        yield running


def _exchange(server: RuntimeServer, raw: bytes) -> int:
    """Send one request; the status of its answer (the body must be JSON on errors)."""
    with Wire(server.port, timeout=60) as wire:
        wire.send(raw)
        reply = wire.reply()
        assert reply.status < 500, (reply.status, reply.body[:300], raw[:300])
        if reply.status >= 400:
            body = reply.json()
            assert isinstance(body, dict) and isinstance(body.get("error"), str), reply.body
        return reply.status


# Values JSON can carry, surrogates and huge numbers included.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=5),
    max_leaves=40,
)
rows = st.lists(st.lists(scalars, min_size=0, max_size=10), min_size=0, max_size=6)
shapes = st.lists(st.integers(min_value=-3, max_value=2**40), max_size=6) | st.just([1, 8])
datatypes = st.sampled_from(["FP32", "FP64", "INT32", "INT64", "BYTES", "BOOL", "UINT8", "FP16",
                             "nope", ""])


def _dumps(document: Any) -> bytes:
    # allow_nan writes NaN/Infinity tokens; surrogates go out as \ud800 escapes.
    return json.dumps(document, allow_nan=True).encode()


@st.composite
def v1_bodies(draw: st.DrawFn) -> bytes:
    """Near-valid :predict bodies, and arbitrary JSON."""
    shape = draw(st.sampled_from(["instances", "inputs", "both", "any"]))
    if shape == "any":
        return _dumps(draw(json_values))
    document: dict[str, Any] = {}
    if shape in ("instances", "both"):
        document["instances"] = draw(rows | json_values)
    if shape in ("inputs", "both"):
        document["inputs"] = draw(rows | st.dictionaries(st.text(max_size=8), rows, max_size=3))
    if draw(st.booleans()):
        document["signature_name"] = draw(st.text(max_size=10) | json_values)
    return _dumps(document)


@st.composite
def v2_tensors(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["inputs", "other", ""]) | st.text(max_size=6)),
        "shape": draw(shapes),
        "datatype": draw(datatypes),
    }
    if draw(st.booleans()):
        tensor["data"] = draw(st.lists(scalars, max_size=16) | json_values)
    if draw(st.booleans()):
        tensor["parameters"] = draw(
            st.fixed_dictionaries({"binary_data_size": st.integers(-5, 2**40)}) | json_values
        )
    return tensor


@st.composite
def v2_bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Near-valid /infer bodies, JSON or with binary tensor data, and the header length."""
    document: dict[str, Any] = {"inputs": draw(st.lists(v2_tensors(), min_size=0, max_size=3))}
    for key in ("id", "parameters", "outputs"):
        if draw(st.booleans()):
            document[key] = draw(json_values)
    header = _dumps(document)
    if not draw(st.booleans()):
        return header, None
    tail = draw(st.binary(max_size=64)) + struct.pack("<8f", *range(8)) * draw(st.integers(0, 2))
    length = draw(
        st.just(str(len(header)))
        | st.integers(-10, 10**6).map(str)
        | st.text(alphabet="0123456789\u00b2\u00b3\u00b9 -+x", max_size=25)
    )
    return header + tail, length


paths = st.one_of(
    st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n \x00"), max_size=60)
    .map(lambda text: "/" + text),
    st.sampled_from(["/v1/models/demo", "/v2/models/demo", "/v1/models/demo/versions/",
                     "/v2/models/demo/versions/", "/v1/models/demo/labels/"])
    .flatmap(lambda prefix: st.text(max_size=30).map(
        lambda tail: prefix + "".join(c if c.isascii() and c.isprintable() and c != " "
                                      else f"%{ord(c) % 256:02X}" for c in tail))),
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)


@FUZZ
@given(body=v1_bodies())
def test_v1_bodies(server: RuntimeServer, body: bytes) -> None:
    _exchange(server, http_request("POST", V1, body))


@FUZZ
@given(case=v2_bodies())
def test_v2_bodies(server: RuntimeServer, case: tuple[bytes, str | None]) -> None:
    body, length = case
    headers = [] if length is None else [("Inference-Header-Content-Length", length)]
    _exchange(server, http_request("POST", V2, body, headers))


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]), path=paths)
def test_paths(server: RuntimeServer, method: str, path: str) -> None:
    if method == "HEAD":
        return  # an answer without a body: nothing to check the JSON of
    _exchange(server, http_request(method, path, b"{}" if method == "POST" else None))


@FUZZ
@given(
    names=st.lists(st.sampled_from(
        ["X-Request-Id", "Content-Encoding", "Authorization", "Inference-Header-Content-Length",
         "Content-Type", "X-Other", "Accept"]), max_size=4),
    values=st.lists(header_values, min_size=4, max_size=4),
)
def test_headers(server: RuntimeServer, names: list[str], values: list[str]) -> None:
    headers = list(zip(names, values, strict=False))
    raw = http_request("POST", V1, PREDICT, [(n, v) for n, v in headers])
    _exchange(server, raw.decode("latin-1").encode("latin-1"))


def test_the_server_is_healthy_and_bounded_after_the_fuzzing(server: RuntimeServer) -> None:
    # Runs after the fuzz tests of the same server (pytest keeps file order).
    with Wire(server.port) as wire:
        wire.send(http_request("POST", V1, PREDICT))
        check_predict(wire.reply())
        wire.send(http_request("GET", "/v2/health/ready"))
        assert wire.reply().status == 200
    rss, baseline = _rss_mb(server.process.pid), _BASELINES[server.process.pid]
    assert rss < baseline + RSS_GROWTH_MB, (rss, baseline)


_BASELINES: dict[int, float] = {}
"""Resident memory of each fuzzed server (by pid) once warm, before any fuzzing."""


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the workers), in MiB."""
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        status = Path(f"/proc/{candidate}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = task / "children"
        if children.exists():
            found += [int(child) for child in children.read_text().split()]
    return found + [grand for child in found for grand in _children(child)]
