"""scripts/install_tools.py: the real kubectl 1.35 and helm 4, kept when already installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_install_tools_keeps_matching_binaries(kubectl_bin: Path, helm_bin: Path) -> None:
    before = (kubectl_bin.stat().st_mtime_ns, helm_bin.stat().st_mtime_ns)
    done = subprocess.run([sys.executable, "scripts/install_tools.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    assert f"{kubectl_bin}: Client Version: v1.35." in done.stdout
    assert f'{helm_bin}: version.BuildInfo{{Version:"v4.' in done.stdout
    assert (kubectl_bin.stat().st_mtime_ns, helm_bin.stat().st_mtime_ns) == before
