"""Start-up errors the user caused are one clear line, with no traceback (issue 15)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.runtime_server import RuntimeServer, launch_runtime, serve_command


def _serve(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        serve_command(path), capture_output=True, text=True, timeout=180, check=False
    )


def _errors(stderr: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert len(lines) == len(stderr.strip().splitlines()), f"not all JSON:\n{stderr}"
    return [line for line in lines if line["level"] == "error"]


@pytest.mark.parametrize("layout", ["missing", "empty", "no-model"])
def test_a_path_without_a_model_is_one_line(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "model"
    if layout != "missing":
        path.mkdir()
    if layout == "no-model":
        (path / "1").mkdir()
        (path / "1" / "README.txt").write_text("not a model")
    result = _serve(path)
    assert result.returncode == 3
    (error,) = _errors(result.stderr)
    assert str(path) in str(error["message"])
    assert "exception" not in error and "Traceback" not in result.stderr


def test_a_corrupt_keras_file_says_so(tmp_path: Path) -> None:
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"this is not a zip archive")
    result = _serve(fake)
    assert result.returncode == 3
    (error,) = _errors(result.stderr)
    assert "not a valid .keras file" in str(error["message"])
    assert "File not found" not in result.stderr and "Traceback" not in result.stderr


def test_the_ready_line_names_the_address_bound(
    demo_model_dir: Path, runtime_log_dir: Path
) -> None:
    args = ["--name", "demo"]
    with launch_runtime(demo_model_dir, runtime_log_dir, args) as server:
        ready = _ready(server)
    assert ready["listening"] == f"127.0.0.1:{ready['port']}"
    assert str(ready["message"]).endswith(f"(listening on 127.0.0.1:{ready['port']})")


def _ready(server: RuntimeServer) -> dict[str, object]:
    (ready,) = [event for event in server.log_events() if event.get("event") == "ready"]
    return ready
