"""The KEDA ScaledObjects the operator renders (``autoscaling.engine: keda``), validated
against KEDA's real schema.

The schema comes from the npm registry at test time: ``@kubernetes-models/keda``, generated
from KEDA's Go API types (``github.com/kedacore/keda/v2/apis``, from which KEDA's CRD is
generated too), installed into ``.tools/keda`` on first use. Its validator checks types,
required fields and formats; unknown fields (which the API server would silently prune)
are checked against the fields the package's type declarations list.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from modelplane_operator.builders.render import Observed, render

from tests.integration.ship.tools import ROOT, SAMPLES
from tests.integration.ship.tools import render as render_sample
from tests.unit.operator.cases import DEFAULTS, md

pytestmark = pytest.mark.timeout(300)

PACKAGE = "@kubernetes-models/keda@2.0.0"
"""Pinned: KEDA's API types as published; bump it to validate against a newer KEDA."""
PREFIX = ROOT / ".tools" / "keda"
SCRIPT = Path(__file__).parent / "keda" / "validate.mjs"

SPEC = {"model": {"uri": "demo://seed-mlp"},
        "autoscaling": {"engine": "keda", "minReplicas": 0, "maxReplicas": 8,
                        "targetCPUUtilization": 70, "targetInFlightPerReplica": 4,
                        "targetRequestsPerSecondPerReplica": 50.5},
        "canary": {"model": {"uri": "demo://seed-mlp"}, "trafficPercent": 20}}


@pytest.fixture(scope="module")
def keda_package() -> Path:
    """The package's folder, installed from the npm registry when missing."""
    folder = PREFIX / "node_modules" / "@kubernetes-models" / "keda"
    if not (folder / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: apt-get install nodejs npm", pytrace=False)
        done = subprocess.run([npm, "install", "--prefix", str(PREFIX), "--no-audit",
                               "--no-fund", "--loglevel=error", PACKAGE],
                              capture_output=True, text=True, timeout=240, check=False)
        assert done.returncode == 0, f"npm install {PACKAGE} failed:\n{done.stderr[-3000:]}"
    return folder


def validate(package: Path, objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Errors per object name, from KEDA's schema (empty lists: valid)."""
    node = shutil.which("node")
    assert node is not None, "node is missing: apt-get install nodejs"
    done = subprocess.run([node, str(SCRIPT), str(package)], input=json.dumps(objects),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return {r["name"]: r["errors"] for r in json.loads(done.stdout)}


def declared(package: Path, type_name: str) -> set[str]:
    """The field names a type of the package declares (its .d.ts interface)."""
    text = (package / "keda.sh" / "v1alpha1" / f"{type_name}.d.ts").read_text()
    body = text.split("export interface", 1)[1].split("\n}", 1)[0]
    # The interface's own fields are indented once; nested object types are deeper.
    return set(re.findall(r'^ {4}"([A-Za-z]+)"\??:', body, re.MULTILINE))


def scaled_objects(asleep: bool) -> list[dict[str, Any]]:
    children = render(md(SPEC), DEFAULTS, Observed(asleep=asleep))
    found = [c for c in children if c["kind"] == "ScaledObject"]
    assert {c["metadata"]["name"] for c in found} == {"seed-mlp", "seed-mlp-canary"}
    return found


@pytest.mark.parametrize("asleep", [False, True], ids=["awake", "paused-at-zero"])
def test_rendered_scaled_objects_pass_kedas_schema(keda_package: Path, asleep: bool) -> None:
    objects = scaled_objects(asleep)
    assert validate(keda_package, objects) == {"seed-mlp": [], "seed-mlp-canary": []}
    for obj in objects:  # no field KEDA's types lack (the API server would prune it)
        spec = obj["spec"]
        assert set(spec) <= declared(keda_package, "ScaledObjectSpec")
        assert set(spec["scaleTargetRef"]) <= declared(keda_package, "ScaleTarget")
        for trigger in spec["triggers"]:
            assert set(trigger) <= declared(keda_package, "ScaleTriggers")
            assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_the_schema_check_refuses_what_keda_would(keda_package: Path) -> None:
    """Neither check is vacuous: wrong types, missing fields and unknown ones are caught."""
    (good, _) = scaled_objects(asleep=False)
    wrong_type = json.loads(json.dumps(good))
    wrong_type["spec"]["minReplicaCount"] = "1"
    no_type = json.loads(json.dumps(good))
    del no_type["spec"]["triggers"][0]["type"]
    no_target = json.loads(json.dumps(good))
    del no_target["spec"]["scaleTargetRef"]
    for name, obj in (("a", wrong_type), ("b", no_type), ("c", no_target)):
        obj["metadata"]["name"] = name
    errors = validate(keda_package, [wrong_type, no_type, no_target])
    assert "minReplicaCount must be integer" in errors["a"][0]
    assert "triggers/0 must have required property type" in errors["b"][0]
    assert "must have required property scaleTargetRef" in errors["c"][0]
    assert "minReplicaCont" not in declared(keda_package, "ScaledObjectSpec")
    assert {"minReplicaCount", "triggers", "scaleTargetRef"} <= declared(
        keda_package, "ScaledObjectSpec")


def test_the_keda_sample_renders_a_valid_scaled_object(keda_package: Path) -> None:
    (sample,) = [p for p in SAMPLES if p.name == "keda.yaml"]
    objects = [c for c in render_sample(sample) if c["kind"] == "ScaledObject"]
    assert [o["metadata"]["name"] for o in objects] == ["seed-mlp-keda"]
    assert validate(keda_package, objects) == {"seed-mlp-keda": []}
