"""``modelplane render`` and ``modelplane crd`` through the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from modelplane_operator.builders.render import render
from modelplane_operator.cli import CRD_FILE, PLACEHOLDER_UID
from modelplane_operator.crd import CRD_PATH, crd_yaml

from .cases import DEFAULTS, SPECS, md

# The console script of this interpreter's install (a venv's bin/ need not be on PATH, and
# another python3's `modelplane` on PATH would run other code).
_SCRIPT = Path(sys.executable).parent / "modelplane"
MODELPLANE = [str(_SCRIPT)] if _SCRIPT.is_file() else [
    sys.executable, "-m", "modelplane_runtime.cli"]
ROOT = Path(__file__).resolve().parents[3]


def _run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MODELPLANE, *args], input=stdin, capture_output=True, text=True, timeout=60,
        check=False, env={**os.environ, **(env or {})}, cwd=cwd,
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


def _repository(root: Path) -> Path:
    """A folder that passes for the repository: its pyproject.toml and manifests/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (root / "manifests").mkdir()
    return root


def test_crd_prints_and_writes(tmp_path: Path) -> None:
    result = _run("crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == crd_yaml()
    root = _repository(tmp_path / "checkout")
    result = _run("crd", "--write", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert (root / CRD_PATH).read_text() == crd_yaml()
    assert result.stderr == f"wrote {root / CRD_PATH}\n"


def test_crd_file_named_in_help_is_where_it_writes() -> None:
    assert str(CRD_PATH) == CRD_FILE
    assert CRD_FILE in _run("crd", "--help").stdout


_NOT_A_REPOSITORY = {  # what is in the folder given as --root
    "missing folder": None,
    "empty folder": "",
    "another project": "[project]\nname = 'other'\n",
    "broken pyproject": "not toml [",
    "no manifests/": (ROOT / "pyproject.toml").read_text(),
}


@pytest.mark.parametrize("case", sorted(_NOT_A_REPOSITORY))
def test_crd_write_refuses_a_root_that_is_not_the_repository(tmp_path: Path, case: str) -> None:
    pyproject = _NOT_A_REPOSITORY[case]
    root = tmp_path / "root"
    if pyproject is not None:
        root.mkdir()
        if pyproject:
            (root / "pyproject.toml").write_text(pyproject)
    before = sorted(tmp_path.rglob("*"))
    result = _run("crd", "--write", "--root", str(root))
    assert result.returncode == 2
    why = "is not a folder" if pyproject is None else "is not the Modelplane repository"
    assert result.stderr.startswith(f"modelplane: crd --write: {root} {why}")
    assert "give --root the repository's folder" in result.stderr
    assert sorted(tmp_path.rglob("*")) == before, "nothing is created"


def test_crd_write_defaults_to_the_current_folder(tmp_path: Path) -> None:
    root = _repository(tmp_path / "checkout")
    assert _run("crd", "--write", cwd=root).returncode == 0
    assert (root / CRD_PATH).read_text() == crd_yaml()
    assert _run("crd", "--write", cwd=tmp_path).returncode == 2


def _children(*paths: Path) -> list[dict[str, object]]:
    """What render() gives for every ModelDeployment in the files, in order."""
    out: list[dict[str, object]] = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ModelDeployment":
                meta = {**doc["metadata"], "uid": PLACEHOLDER_UID}
                out += render({**doc, "metadata": meta}, DEFAULTS)
    return out


SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


def test_render_takes_several_files_like_kubectl() -> None:
    assert len(SAMPLES) > 1
    result = _run("render", *map(str, SAMPLES), "--runtime-image", DEFAULTS.runtime_image)
    assert result.returncode == 0, result.stderr
    assert list(yaml.safe_load_all(result.stdout)) == _children(*SAMPLES)


def test_render_takes_a_folder_and_stdin_among_files(tmp_path: Path) -> None:
    folder = tmp_path / "mds"
    folder.mkdir()
    (folder / "b.yml").write_text(SAMPLES[1].read_text())
    (folder / "a.yaml").write_text(SAMPLES[0].read_text())
    (folder / "notes.txt").write_text("not a manifest")
    result = _run("render", str(SAMPLES[2]), str(folder), "-", "--runtime-image",
                  DEFAULTS.runtime_image, stdin=SAMPLES[3].read_text())
    assert result.returncode == 0, result.stderr
    want = _children(SAMPLES[2], SAMPLES[0], SAMPLES[1], SAMPLES[3])
    assert list(yaml.safe_load_all(result.stdout)) == want


def test_render_skips_files_without_a_modeldeployment_among_others(tmp_path: Path) -> None:
    other = tmp_path / "pvc.yaml"
    other.write_text("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\n")
    result = _run("render", str(other), str(SAMPLES[0]), "--runtime-image",
                  DEFAULTS.runtime_image)
    assert result.returncode == 0, result.stderr
    assert list(yaml.safe_load_all(result.stdout)) == _children(SAMPLES[0])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [(["-", "-"], "'-' (standard input) can be given only once"),
     (["{good}", "{tmp}/absent.yaml"], "cannot read {tmp}/absent.yaml: No such file"),
     (["{good}", "{tmp}/bad.yaml"], "{tmp}/bad.yaml is not valid YAML"),
     (["{good}", "{tmp}/binary.yaml"], "{tmp}/binary.yaml is not UTF-8 text"),
     (["{good}", "{tmp}/empty"], "{tmp}/empty holds no .yaml, .yml or .json file"),
     (["{good}", "{tmp}/invalid.yaml"], "{tmp}/invalid.yaml: ModelDeployment x is invalid"),
     (["{tmp}/pvc.yaml", "{tmp}/empty.yaml"], "{tmp}/pvc.yaml, {tmp}/empty.yaml: no "
      "ModelDeployment found")],
)
def test_render_of_several_inputs_prints_nothing_when_one_fails(
    tmp_path: Path, inputs: list[str], message: str
) -> None:
    (tmp_path / "bad.yaml").write_text("a: [unclosed")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00kind")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "pvc.yaml").write_text("apiVersion: v1\nkind: PersistentVolumeClaim\n")
    (tmp_path / "invalid.yaml").write_text(yaml.safe_dump(md({"model": {"uri": "ftp://x"}})
                                                         | {"metadata": {"name": "x"}}))
    args = [i.format(good=SAMPLES[0], tmp=tmp_path) for i in inputs]
    result = _run("render", *args, stdin="")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("modelplane: " + message.format(tmp=tmp_path)), result.stderr


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
