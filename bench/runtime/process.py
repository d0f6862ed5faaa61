"""A contender's server process: start pinned to one core, time to ready, peak RSS, stop.

RSS is the sum over the process tree (MLServer runs inference in a child process), sampled
from /proc by a background thread, so the peak covers start-up, warm-up and the load.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces; fields after its ')' are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants."""
    tree = _children()
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed so far by ``pid`` and its live descendants."""
    tree = _children()
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(tree.get(current, []))
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime and stime are fields 14 and 15 of stat; index 11 and 12 after the ')'.
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time per thread of ``pid``, keyed ``"<name>-<tid>"``."""
    threads: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        threads[f"{name}-{tid}"] = (int(fields[11]) + int(fields[12])) / _TICK
    return threads


class Server:
    """A server process started under ``taskset``, stopped (tree and all) on exit."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str], log: Path, cpu: str = "0"
    ) -> None:
        self.command = ["taskset", "-c", cpu, *command]
        self.env = {**os.environ, **env}
        self.log = log
        self.peak_rss = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sampler: threading.Thread | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int:
        """The server's process id (the taskset exec's the server, so it is the same)."""
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.started_at = time.perf_counter()
            # A new session, so stopping reaches the whole tree (uvicorn/MLServer workers).
            self._proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_rss = max(self.peak_rss, tree_rss_bytes(self.pid))

    def cpu_seconds(self) -> float:
        """CPU time the server's process tree has used so far."""
        return tree_cpu_seconds(self.pid)

    def wait_ready(self, url: str, timeout_s: float = 120.0) -> float:
        """Poll ``url`` until it answers 200; returns seconds since the process started."""
        deadline = time.perf_counter() + timeout_s
        assert self._proc is not None
        while time.perf_counter() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"server exited with {self._proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - self.started_at
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s; see {self.log}")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGTERM)
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        # Stragglers (a worker that ignored SIGTERM) still belong to our session: end them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
