"""What a newcomer runs: the README's commands, the Makefile behind them, and CI's script.

The README's test command must pass on a fresh machine by itself, and CI must run exactly
that command; ``make -n`` (print, do not run) shows what the command would do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
DOCS = [README, ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("*.md"))]


def _setup_block() -> list[str]:
    """The commands in the README's "Set up" section's first code block."""
    section = README.read_text().split("\n## Set up", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def _ci_commands() -> list[str]:
    lines = [line.strip() for line in CI.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _dry_run(*args: str) -> list[str]:
    """The commands ``make -n -B`` would run (every target treated as out of date)."""
    if shutil.which("make") is None:
        pytest.fail("make is missing: it is a README prerequisite", pytrace=False)
    # Under `make test` itself this is a nested make: drop what the outer one passes down.
    outer = ("PYTHON", "VENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in outer}
    done = subprocess.run(["make", "-n", "-B", "--no-print-directory", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def test_ci_runs_the_readme_test_command_last() -> None:
    readme_test = [c for c in _setup_block() if c.startswith("make test")]
    assert readme_test == ["make test"]
    assert _ci_commands()[-1] == readme_test[0]


def test_the_test_command_makes_the_venv_and_installs_its_tools_before_testing() -> None:
    commands = _dry_run("test")
    assert commands[0] == "python3 -m venv .venv"
    # Installed at the versions the suite last passed with (see the Makefile).
    assert '.venv/bin/python -m pip install -c constraints.txt -e ".[dev]"' in commands
    tools = [i for i, c in enumerate(commands) if c.startswith(".venv/bin/python scripts/")]
    assert {commands[i].split()[1] for i in tools} == {
        "scripts/install_tools.py", "scripts/install_debian_tools.py",
        "scripts/install_checkov.py",
    }
    assert commands[-1].startswith('.venv/bin/python -m pytest -m "not slow"')
    assert max(tools) < len(commands) - 1, "tools are installed before the tests run"


def test_constraints_pin_every_package_to_one_version() -> None:
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = dict(line.split("==", 1) for line in lines)
    assert len(pins) == len(lines), [line for line in lines if "==" not in line]
    names = {name.lower().replace("_", "-") for name in pins}
    # The no-deps packages (`make install`'s second pip call) are pinned as well.
    no_deps = subprocess.run([sys.executable, "scripts/requirements.py", "--no-deps"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    assert no_deps and {re.split(r"[<>=\[;]", d)[0].lower() for d in no_deps} <= names


def test_a_given_python_is_used_as_it_is() -> None:
    commands = _dry_run("test", "PYTHON=python3")
    assert not [c for c in commands if "venv" in c]
    assert commands[-1].startswith('python3 -m pytest -m "not slow"')


def test_ci_runs_pytest_only_in_the_venv_and_installs_only_the_readme_prerequisites() -> None:
    pytest_calls = [c for c in _ci_commands() if "pytest" in c]
    assert pytest_calls == [".venv/bin/python -m pytest -m slow"]
    system = re.findall(r"command -v (\S+) >/dev/null \|\| need\+=", CI.read_text())
    heading = next(line for line in README.read_text().splitlines()
                   if line.startswith("## Set up"))
    assert system, "CI checks the system's prerequisites"
    assert [name for name in system if name not in heading] == []


def test_every_make_target_the_docs_name_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = {(doc.name, target) for doc in DOCS
             for target in re.findall(r"(?:^|`)make ([a-z][a-z0-9-]*)", doc.read_text(), re.M)}
    assert {t for _, t in named} >= {"test", "demo", "tools", "test-slow", "e2e-kind"}
    assert sorted((doc, t) for doc, t in named if t not in targets) == []


def test_docs_link_only_to_files_in_the_repository() -> None:
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text, f"{doc.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def _collected(marker: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-m", marker, "tests/e2e"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: nothing selected
    return [line for line in done.stdout.splitlines() if line.startswith("tests/e2e/")]


def test_e2e_runs_where_the_readme_says() -> None:
    """make test deselects tests/e2e (it is slow); make test-slow collects it."""
    readme = " ".join(README.read_text().split())
    assert "`make test-slow`: the `slow` suites, including the real-cluster suite `tests/e2e`" in (
        readme)
    assert _collected("not slow") == []
    assert _collected("slow"), "the slow run collects the e2e suite (which then skips)"
