"""Drive ``wrk`` (pinned to its own core) with a POST body and read its numbers as JSON.

wrk's own ``--latency`` table rounds to two digits and mixes units, so a Lua ``done`` hook
prints the exact percentiles (microseconds) and error counts as one JSON line instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LUA = """
wrk.method = "POST"
{headers}
wrk.body = "{body}"
wrk.path = "{path}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH {{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d,'
    .. ' "max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


_TOOLS_WRK = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "wrk"


def wrk_binary() -> str | None:
    """wrk from .tools/bin (``make tools`` puts Debian's there), else from PATH, else None."""
    return str(_TOOLS_WRK) if _TOOLS_WRK.is_file() else shutil.which("wrk")


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and failed requests."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int


def write_script(
    folder: Path, path: str, body: bytes, headers: dict[str, str] | None = None
) -> Path:
    """A Lua script that POSTs ``body`` (any bytes) to ``path`` with ``headers``."""
    headers = headers or {"Content-Type": "application/json"}
    lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())
    script = folder / "post.lua"
    script.write_text(_LUA.format(headers=lines, body=_lua_bytes(body), path=path))
    return script


def _lua_bytes(body: bytes) -> str:
    """``body`` as the inside of a Lua string literal: printable ASCII as is, else ``\\ddd``."""
    return "".join(
        chr(byte) if 32 <= byte < 127 and byte not in (34, 92) else f"\\{byte:03d}"
        for byte in body
    )


def run_wrk(
    url: str, script: Path, connections: int, duration_s: float, cpu: str = "1"
) -> WrkResult:
    """Run wrk for ``duration_s`` with ``connections`` connections on one thread."""
    wrk = wrk_binary()
    if wrk is None:
        raise RuntimeError("wrk is missing: run `make tools` (it installs wrk into .tools/bin)")
    command = [
        "taskset", "-c", cpu, wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        "--timeout", "10s", "--latency", "-s", str(script), url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=duration_s + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCH "))
    errors = sum(raw[key] for key in ("connect", "read", "write", "status", "timeout"))
    seconds = raw["duration_us"] / 1e6
    return WrkResult(
        rps=(raw["requests"] - raw["status"]) / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000, p99_ms=raw["p99_us"] / 1000,
        requests=raw["requests"], errors=errors,
    )


def temp_folder() -> tempfile.TemporaryDirectory[str]:
    """A scratch folder for Lua scripts."""
    return tempfile.TemporaryDirectory(prefix="bench-wrk-")
