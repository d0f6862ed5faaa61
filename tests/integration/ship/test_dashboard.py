"""The Grafana dashboard: generated from contract.py, and every query valid PromQL."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.binaries import require_binary
from tests.integration.ship.tools import CHART, ROOT, run

DASHBOARD = CHART / "dashboards" / "modelplane.json"


def _queries() -> list[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]


def test_dashboard_is_generated_from_contract() -> None:
    done = run([sys.executable, ROOT / "scripts" / "dashboard.py", "--check"], ok=False)
    assert done.returncode == 0, done.stdout


def test_dashboard_covers_the_issue() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("requests per second", "latency", "errors", "in-flight", "batch", "replicas",
                  "cpu per replica", "memory per replica", "gpu utilisation per replica",
                  "gpu memory per replica"):
        assert topic in titles
    assert {v["name"] for v in board["templating"]["list"]} >= {"namespace", "modeldeployment"}


def test_resource_panels_show_each_replica() -> None:
    """CPU, memory and GPU panels plot one series per pod (per GPU), not a fleet total."""
    board = json.loads(DASHBOARD.read_text())
    resources = [p for p in board["panels"]
                 if p["type"] != "row" and any(w in p["title"] for w in ("CPU", "Memory", "GPU"))]
    assert len(resources) >= 6
    for panel in resources:
        for target in panel["targets"]:
            assert "pod" in target["expr"] and "{{pod}}" in target["legendFormat"], panel["title"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows[:2] == ["Traffic", "Resources"] and rows[2].startswith("GPUs")


def test_queries_name_only_runtime_and_balancer_metrics() -> None:
    from modelplane_balancer import contract as balancer
    from modelplane_runtime import contract

    runtime = {v for k, v in vars(contract).items() if k.startswith("METRIC_")}
    balancing = {v for k, v in vars(balancer).items() if k.startswith("METRIC_")}
    used = set()
    for expr in _queries():
        used |= {
            re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bmodelplane_\w+", expr)
        }
    assert used & runtime == runtime, "every runtime metric has a panel"
    assert used - runtime <= balancing, "no panel names a metric nobody exposes"
    # Per-replica share and latency as the balancer sees them (issue 10).
    assert {balancer.METRIC_REQUESTS, balancer.METRIC_LATENCY, balancer.METRIC_WAITING} <= used


def test_balancer_panels_show_each_replica() -> None:
    board = json.loads(DASHBOARD.read_text())
    titles = {p["title"]: p for p in board["panels"]}
    share = titles["Share of traffic per replica (balancer)"]
    latency = titles["Replica latency as the balancer sees it"]
    for panel in (share, latency):
        assert all("replica" in t["expr"] and "{{replica}}" in t["legendFormat"]
                   for t in panel["targets"])
    assert "group_left" in share["targets"][0]["expr"]


def test_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every query (Grafana's variables replaced by what Grafana sends)."""
    promtool = require_binary("promtool")
    rules = [
        {"record": f"modelplane:dashboard_query_{i}", "expr": expr
         .replace("$__rate_interval", "1m").replace("$namespace", ".*")
         .replace("$modeldeployment", ".*")}
        for i, expr in enumerate(_queries())
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run([promtool, "check", "rules", path])
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """The PromQL check above can fail: a typo is caught."""
    promtool = require_binary("promtool")
    path = tmp_path / "rules.yaml"
    rule = {"record": "x:y", "expr": "sum by (le (rate(modelplane_requests_total[1m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    assert run([promtool, "check", "rules", path], ok=False).returncode != 0
