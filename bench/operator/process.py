"""Child processes of the benchmark: the emulated API server and the operator under test.

Each is started with ``subprocess.Popen`` (its own process group, logs to a file) and ended
by its pid with SIGTERM (``tests.fixtures.processes.stop_process``: a process that
overstays the grace period is killed and the run fails). Memory and CPU come from
``/proc/<pid>``: VmHWM is the kernel's record of the peak RSS, so no sampling can miss it.

Why the benchmark reaches into ``tests/``: the API server it runs is the test suite's
emulator (``python -m tests.fixtures.apiserver``), the one ``tests/integration/emulator``
checks against the documented API server, so the numbers describe the operator against
exactly what its tests run against; a copy outside ``tests/`` would drift from that. The
waiting and process helpers come from ``tests/fixtures`` for the same reason: one way to
wait and to stop a process in the repository. ``pyproject.toml`` makes the repository
root importable for pytest; run the benchmark from the root (``python -m bench.operator``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.polling import eventually
from tests.fixtures.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
CRD = REPO / "manifests" / "crd" / "modelplane.io_modeldeployments.yaml"


@dataclass
class Proc:
    """A started child process and where its output goes."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.popen.poll() is None

    def peak_rss_mib(self) -> float:
        """Peak resident set size so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for pid {self.pid}")

    def cpu_s(self) -> float:
        """User + system CPU seconds so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM; killed (and the run fails) if it has not exited within ``grace_s``."""
        stop_process(self.popen, deadline_s=grace_s, logs=self.tail, what=str(self.log.stem))

    def tail(self, lines: int = 20) -> str:
        """The end of its log, for error messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Proc:
    """Start ``argv`` from the repo root with stdout and stderr going to ``log``."""
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})}, start_new_session=True)
    return Proc(popen, log)


def start_emulator(workdir: Path, timeout_s: float = 30.0) -> tuple[Proc, str, Path]:
    """The emulator launcher; returns it, its URL and its kubeconfig once it listens."""
    port_file, kubeconfig = workdir / "port", workdir / "kubeconfig"
    proc = start([sys.executable, "-m", "tests.fixtures.apiserver", "--port-file",
                  str(port_file), "--kubeconfig", str(kubeconfig)], workdir / "apiserver.log")
    def listening() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the emulator exited:\n{proc.tail()}")
        return port_file.exists()

    try:
        eventually(listening, timeout=timeout_s, interval=0.05, what="the emulator's port file")
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}", kubeconfig


def apply_crd(kubeconfig: Path) -> None:
    """``kubectl apply`` the CRD and wait until it is Established."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    # The emulator serves no OpenAPI document: kubectl's client-side validation cannot run.
    for argv in ([str(KUBECTL), "apply", "--validate=false", "-f", str(CRD)],
                 [str(KUBECTL), "wait", "--for=condition=Established", "--timeout=30s",
                  "crd/modeldeployments.modelplane.io"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[1:3])} failed: {done.stderr.strip()}")


def operator_argv(contender: str, command: list[str] | None = None) -> list[str]:
    """The command line of a contender: the real operator (or ``command``) or the floor."""
    if contender == "modelplane" and command:
        return command
    if contender == "modelplane":
        # The console script itself (not a pyenv shim), so the pid is the Python process.
        return [str(Path(sys.executable).parent / "modelplane"), "operator", "--standalone"]
    return [sys.executable, "-m", "bench.operator.floor"]
