"""``modelplane operator`` as a process: bad settings and missing credentials end it cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_operator(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MODELPLANE_OPERATOR_", "KUBERNETES_SERVICE"))}
    return subprocess.run(
        [sys.executable, "-m", "modelplane_runtime.cli", "operator", "--http-port", "0"],
        env={**base, "KUBECONFIG": str(tmp_path / "missing"), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    done = run_operator(tmp_path, MODELPLANE_OPERATOR_SCRAPE_INTERVAL_S="soon")
    assert done.returncode == 2
    assert "MODELPLANE_OPERATOR_SCRAPE_INTERVAL_S" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_credentials_is_a_clear_error(tmp_path: Path) -> None:
    done = run_operator(tmp_path)
    assert done.returncode == 2
    assert "no Kubernetes credentials" in done.stderr
    assert "set KUBECONFIG" in done.stderr
    assert "Traceback" not in done.stderr
