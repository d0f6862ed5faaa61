"""Smoke tests of the operator benchmark itself (not of the operator).

The default suite collects these too (pyproject's testpaths name ``bench``). The run test
starts the real emulator, kubectl, the real operator and the floor, with a few objects.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.operator.api import Progress, parse_metrics
from bench.operator.run import operator_calls

REPO = Path(__file__).resolve().parents[2]


def test_metrics_are_summed_by_verb_and_resource() -> None:
    text = "\n".join([
        "# TYPE apiserver_request_total counter",
        'apiserver_request_total{verb="POST",group="apps",version="v1",resource="deployments",'
        'subresource="",scope="namespace",component="apiserver",code="201"} 3',
        'apiserver_request_total{verb="POST",group="apps",version="v1",resource="deployments",'
        'subresource="",scope="namespace",component="apiserver",code="409"} 2',
        'apiserver_request_total{verb="PATCH",group="modelplane.io",version="v1alpha1",'
        'resource="modeldeployments",subresource="status",scope="resource",'
        'component="apiserver",code="200"} 4',
    ])
    counts = parse_metrics(text)
    assert counts[("POST", "deployments")] == 5
    assert counts[("PATCH", "modeldeployments/status")] == 4


def test_operator_calls_subtract_our_own_and_skip_watches() -> None:
    before = parse_metrics("")
    after = before.copy()
    after.update({("POST", "modeldeployments"): 10, ("POST", "services"): 10,
                  ("WATCH", "services"): 3})
    own = before.copy()
    own.update({("POST", "modeldeployments"): 10})
    assert operator_calls(before, after, own) == {"POST services": 10}


def test_an_object_converges_only_with_every_child_and_an_observed_status() -> None:
    progress = Progress(frozenset({"a"}), ("deployments", "services"))
    owner = {"metadata": {"ownerReferences": [{"kind": "ModelDeployment", "name": "a"}]}}
    progress.update_child("deployments", owner)
    progress.update_md({"metadata": {"name": "a", "generation": 2},
                        "status": {"observedGeneration": 1}})
    progress.update_child("services", owner)
    assert not progress.converged  # the status is a generation behind
    progress.update_md({"metadata": {"name": "a", "generation": 2},
                        "status": {"observedGeneration": 2}})
    assert progress.converged


DIRECT_CALLS = {"PATCH modeldeployments/status": 10, "POST deployments": 10,
                "POST poddisruptionbudgets": 10, "POST services": 20}
"""routing.balancer false: the Deployment, the PDB, the Service and the headless
``<name>-replicas`` Service (gRPC's client-side balancing), and 1 status PATCH per object."""
BALANCED_CALLS = {"PATCH modeldeployments/status": 10, "POST deployments": 20,
                  "POST poddisruptionbudgets": 20, "POST services": 20,
                  "POST serviceaccounts": 10, "POST roles": 10, "POST rolebindings": 10}
"""The default, a balancer in front: its Deployment, PDB, ServiceAccount, Role and
RoleBinding, one POST each beside those."""


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("flags", "calls"), [([], DIRECT_CALLS),
                                              (["--balancer"], BALANCED_CALLS)],
                         ids=["direct", "balancer"])
def test_a_small_run_counts_the_minimal_calls(tmp_path: Path, flags: list[str],
                                              calls: dict[str, int]) -> None:
    output = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.operator", "--count", "10", "--repeats", "1",
         "--output", str(output), *flags],
        cwd=REPO, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(output.read_text())
    # No retry, no second status write: exactly one call per child and one PATCH.
    assert result["runs"]["modelplane"][0]["calls_by_verb"] == calls
    assert result["medians"]["modelplane"]["settled_calls_per_object"] == sum(calls.values()) / 10
    # The floor: 1 POST + 1 PATCH.
    assert result["medians"]["floor"]["settled_calls_per_object"] == 2.0
    assert 0 < result["medians"]["modelplane"]["peak_rss_mib"] < 1000
    assert "time ratio" in done.stdout
