"""`modelplane render` reads YAML as kubectl does: the children it prints are those of the
object kubectl stores (issue 16: an unquoted key `y` is "true" to kubectl, YAML 1.1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from modelplane_operator.builders.document import load_all

from tests.fixtures.kube import Kubectl

TRICKY = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: tricky
data:
  y: y
  n: n
  yes: on
  Off: NO
  True: ~
  1: 1
  1.5: 1.5
  010: 010
  0o10: 0o10
  0x1F: 0x1F
  0b11: 0b11
  1_000: 1_000
  1e3: 1e3
  1000000.0: 1000000.0
  0.00001: 0.00001
  -010: -010
  09: 09
  +12: +12
  2001-12-14: 2001-12-14
  1:30: 1:30
  1.2.3: 1.2.3
  1e999: 1e999
  quoted: "y"
  list: [y, 1.0, 2.5, 1e3, null, "on"]
  anchor: &base {a: 1}
  merged: {<<: *base, b: 2}
"""


def kubectl_reads(kubectl: Kubectl, text: str) -> Any:
    """What kubectl sends to the API server for ``text`` (client-side dry run)."""
    done = kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", input=text)
    return json.loads(done.stdout)


def test_the_loader_reads_every_tricky_scalar_as_kubectl(kubectl: Kubectl) -> None:
    ours = load_all(TRICKY)[0]
    theirs = kubectl_reads(kubectl, TRICKY)
    assert ours["data"] == theirs["data"]
    assert ours["data"]["true"] is None  # y, yes and True collapsed into one key, last wins
    assert yaml.safe_load(TRICKY)["data"]["y"] == "y"  # what PyYAML alone would have said


def test_render_shows_the_children_of_the_object_kubectl_stores(
        kubectl: Kubectl, kube_namespace: str, modelplane_crd: Any, tmp_path: Path) -> None:
    manifest = f"""\
apiVersion: modelplane.io/v1alpha1
kind: ModelDeployment
metadata:
  name: yaml11
  namespace: {kube_namespace}
spec:
  model:
    uri: demo://seed-mlp
  replicas: 1e0
  scheduling:
    nodeSelector:
      y: "a"
"""
    path = tmp_path / "md.yaml"
    path.write_text(manifest)
    kubectl("apply", "-f", str(path))
    stored = kubectl.json("get", "md", "yaml11", "-n", kube_namespace)
    assert stored["spec"]["scheduling"]["nodeSelector"] == {"true": "a"}
    assert stored["spec"]["replicas"] == 1

    done = subprocess.run([sys.executable, "-m", "modelplane_runtime.cli", "render", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    deployment = next(d for d in yaml.safe_load_all(done.stdout) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == stored["spec"]["scheduling"]["nodeSelector"]
    assert deployment["spec"]["replicas"] == stored["spec"]["replicas"]


def test_what_kubectl_cannot_send_is_refused_too(kubectl: Kubectl, tmp_path: Path) -> None:
    for body in ("a: .inf", "? ~\n: a"):
        text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata:\n  {body}\n"
        done = kubectl("create", "--dry-run=client", "-o", "json", "-f", "-", input=text,
                       check=False)
        assert done.returncode != 0
        path = tmp_path / "bad.yaml"
        path.write_text(text.replace("kind: ConfigMap", "kind: ModelDeployment"))
        rendered = subprocess.run(
            [sys.executable, "-m", "modelplane_runtime.cli", "render", str(path)],
            capture_output=True, text=True, timeout=60, check=False)
        assert rendered.returncode == 2
        assert "is not valid YAML" in rendered.stderr
        assert "Traceback" not in rendered.stderr
