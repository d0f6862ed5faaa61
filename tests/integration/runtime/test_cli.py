"""``modelplane serve`` as a user runs it: the served name, --model-version, a bad flag."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.runtime_server import launch_runtime, serve_command


def test_a_bare_version_folder_is_served_under_its_parents_name(
    demo_model_dir: Path, runtime_log_dir: Path
) -> None:
    with launch_runtime(demo_model_dir / "1", runtime_log_dir) as server, server.client() as c:
        status = c.get(f"/v1/models/{demo_model_dir.name}")
        assert status.status_code == 200, status.text
        assert [v["version"] for v in status.json()["model_version_status"]] == ["1"]
        assert c.get("/v1/models/1").status_code == 404


def test_model_version_pins_one_version(two_io_model_dir: Path, runtime_log_dir: Path) -> None:
    args = ["--name", "two_io", "--model-version", "1"]
    with launch_runtime(two_io_model_dir, runtime_log_dir, args) as server, server.client() as c:
        every = c.get("/v1/models/two_io").json()["model_version_status"]
        assert [v["version"] for v in every] == ["1"]
        assert c.get("/v1/models/two_io/versions/2").status_code == 404


def test_a_bad_flag_stops_with_one_line_before_loading_tensorflow(demo_model_dir: Path) -> None:
    done = subprocess.run(
        serve_command(demo_model_dir, "--versions", "banana"),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 2
    assert done.stderr == ("modelplane serve: --versions 'banana': expected latest, latest:N, "
                           "all, or version numbers like 1,3\n")
    assert done.stdout == ""
    # -X importtime lists every module imported: the settings are checked before TensorFlow.
    python, *rest = serve_command(demo_model_dir, "--versions", "banana")
    traced = subprocess.run([python, "-X", "importtime", *rest], capture_output=True,
                            text=True, timeout=60, check=False)
    imported = [line.rsplit("|", 1)[-1].strip() for line in traced.stderr.splitlines()
                if line.startswith("import time:")]
    assert "modelplane_runtime.settings" in imported
    assert [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")] == []


def test_versions_the_repository_lacks_are_named_as_the_user_gave_them(
    two_io_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import os

    flag = subprocess.run(serve_command(two_io_model_dir, "--versions", "1,5"),
                          capture_output=True, text=True, timeout=120, check=False)
    variable = subprocess.run(serve_command(two_io_model_dir),
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "MODELPLANE_MODEL_LABELS": "stable=9"})
    for done, named in ((flag, "--versions '1,5': version(s) 5 not in the repository"),
                        (variable, "MODELPLANE_MODEL_LABELS: label 'stable' points at "
                                   "version 9")):
        assert done.returncode == 3
        (error,) = [json.loads(line) for line in done.stderr.splitlines()
                    if line.startswith("{") and '"level":"error"' in line]
        assert named in error["message"], error
