"""``modelplane render`` and ``modelplane crd`` through the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from modelplane_operator.builders.render import render
from modelplane_operator.cli import PLACEHOLDER_UID
from modelplane_operator.crd import CRD_PATH, crd_yaml

from .cases import DEFAULTS, SPECS, md

MODELPLANE = shutil.which("modelplane")


def _run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [MODELPLANE] if MODELPLANE else [sys.executable, "-m", "modelplane_runtime.cli"]
    return subprocess.run(
        [*command, *args], input=stdin, capture_output=True, text=True, timeout=60,
        check=False, env={**os.environ, **(env or {})},
    )


def _write(tmp_path: Path, *objects: dict[str, object]) -> Path:
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return path


def test_render_prints_every_child(tmp_path: Path) -> None:
    obj = md(SPECS["canary"])
    del obj["metadata"]["uid"]
    result = _run("render", str(_write(tmp_path, obj)), "--runtime-image",
                  DEFAULTS.runtime_image)
    assert result.returncode == 0, result.stderr
    printed = list(yaml.safe_load_all(result.stdout))
    obj["metadata"]["uid"] = PLACEHOLDER_UID
    assert printed == render(obj, DEFAULTS)
    assert [c["kind"] for c in printed] == [
        "Deployment", "Deployment", "ServiceAccount", "Role", "RoleBinding", "Deployment",
        "PodDisruptionBudget", "Service", "Service", "Service", "PodDisruptionBudget"]


def test_render_reads_stdin_and_skips_other_kinds(tmp_path: Path) -> None:
    other = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}}
    text = yaml.safe_dump_all([other, md(SPECS["pvc"])])
    result = _run("render", "-", "--runtime-image", "rt:9", stdin=text)
    assert result.returncode == 0, result.stderr
    kinds = [c["kind"] for c in yaml.safe_load_all(result.stdout)]
    assert kinds == ["Deployment", "ServiceAccount", "Role", "RoleBinding", "Deployment",
                     "PodDisruptionBudget", "Service", "Service", "PodDisruptionBudget"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [({"model": {"uri": "ftp://x"}}, "spec.model.uri"),
     ({"model": {"uri": "demo://"}, "autoscaling": {"minReplicas": 3, "maxReplicas": 1}},
      "spec.autoscaling.maxReplicas"),
     ({"model": {"uri": "demo://"}, "resources": {"gpu": "many"}}, "spec.resources.gpu")],
)
def test_render_of_an_invalid_spec_exits_2_naming_the_field(
    tmp_path: Path, spec: dict[str, object], field: str
) -> None:
    result = _run("render", str(_write(tmp_path, md(spec))))
    assert result.returncode == 2
    assert f"{field}: " in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [("a: [unclosed", "not valid YAML"), ("kind: Pod\n", "no ModelDeployment"),
     ("apiVersion: modelplane.io/v1\nkind: ModelDeployment\nmetadata: {name: x}\n",
      "apiVersion")],
)
def test_render_of_a_bad_file_exits_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = _run("render", str(path))
    assert result.returncode == 2
    assert message in result.stderr


def test_render_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = _run("render", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_crd_prints_and_writes(tmp_path: Path) -> None:
    result = _run("crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == crd_yaml()
    result = _run("crd", "--write", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / CRD_PATH).read_text() == crd_yaml()


def test_render_defaults_namespace_and_image_from_the_environment(tmp_path: Path) -> None:
    obj = md(SPECS["demo"])
    del obj["metadata"]["namespace"]
    path = _write(tmp_path, obj)
    result = _run("render", str(path), "--namespace", "team-a",
                  env={"MODELPLANE_RUNTIME_IMAGE": "registry.local/rt:5"})
    assert result.returncode == 0, result.stderr
    deployment = next(yaml.safe_load_all(result.stdout))
    assert deployment["metadata"]["namespace"] == "team-a"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/rt:5")


def test_operator_process_freezes_start_up_objects_and_collects_less_often() -> None:
    # In a child process: freezing would outlive this test in the test process.
    code = ("import gc; from modelplane_operator.main import GC_GEN0_THRESHOLD, tune_gc; "
            "assert gc.get_freeze_count() == 0; tune_gc(); "
            "print(gc.get_freeze_count(), gc.get_threshold()[0] == GC_GEN0_THRESHOLD)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    frozen, raised = out.stdout.split()
    assert int(frozen) > 1000
    assert raised == "True"
