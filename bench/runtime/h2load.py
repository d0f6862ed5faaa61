"""h2load (Debian's nghttp2-client) as a unary gRPC load generator, pinned to core 1.

A unary gRPC call is an HTTP/2 POST of one length-prefixed message (a zero compression
flag, a 4-byte big-endian length, the serialized request) with ``content-type:
application/grpc`` and ``te: trailers``; h2load sends exactly that, in C, from a file.
h2load counts HTTP statuses only, and gRPC answers every call with HTTP 200 (the outcome is
in the trailers), so each run is checked another way: the response DATA bytes per request
must be at least a real answer's length (an error is a trailers-only response with no
DATA). Latency percentiles come from h2load's per-request log (``--log-file``); its own CPU
time (from the kernel's rusage of the child) says whether the generator was the bottleneck.
"""

from __future__ import annotations

import os
import re
import resource
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class H2loadResult:
    """One measured h2load run."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    data_per_request: float
    """Response DATA bytes per answered request (gRPC frame header included)."""
    client_cpu: float
    """h2load's CPU seconds per wall second: near 1.0 means the generator was saturated."""


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message frame."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def run_h2load(
    url: str, body: Path, connections: int, streams: int, duration: float, log: Path | None,
    cpu: str = "1",
) -> H2loadResult:
    """Load ``url`` (``http://host:port/package.Service/Method``) for ``duration`` seconds."""
    command = [
        "taskset", "-c", cpu, "h2load", "-t", "1", "-c", str(connections), "-m", str(streams),
        "-D", str(max(1, round(duration))), "-d", str(body),  # whole seconds only
        "-H", "content-type: application/grpc", "-H", "te: trailers",
    ]
    if log is not None:
        command += ["--log-file", str(log)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*command, url], capture_output=True, text=True,
                          timeout=duration + 120, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return _parse(done.stdout, log, used, duration)


def _parse(text: str, log: Path | None, cpu_seconds: float, duration: float) -> H2loadResult:
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", text)
    traffic = re.search(r"traffic: .*? \((\d+)\) total, .*? \((\d+)\) headers.*?, .*? \((\d+)\) "
                        r"data", text)
    if not (finished and counts and traffic):
        raise RuntimeError(f"cannot read h2load's output:\n{text[-2000:]}")
    done, succeeded = int(counts.group(2)), int(counts.group(3))
    durations = np.array([0.0])
    if log is not None and log.exists():
        micros = [int(line.split("\t")[2]) for line in log.read_text().splitlines()
                  if line.count("\t") >= 2]
        durations = np.asarray(micros, dtype=np.float64) / 1000.0 if micros else durations
    p50, p90, p99 = (float(np.percentile(durations, q)) for q in (50, 90, 99))
    return H2loadResult(
        rps=float(finished.group(3)), p50_ms=p50, p90_ms=p90, p99_ms=p99, requests=succeeded,
        errors=done - succeeded + int(counts.group(4)) + int(counts.group(5)),
        data_per_request=int(traffic.group(3)) / max(1, succeeded),
        client_cpu=cpu_seconds / duration,
    )


def h2load_available() -> bool:
    """True when the h2load command is installed (``apt-get install nghttp2-client``)."""
    return any(
        (Path(folder) / "h2load").is_file() for folder in os.environ.get("PATH", "").split(":")
    )
