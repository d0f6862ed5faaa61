"""The Helm chart, rendered and checked with the real helm 4 binary, scenario by scenario."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.integration.ship.tools import (
    CHART,
    KUBE_VERSIONS,
    SAMPLES,
    SCENARIOS,
    Doc,
    cr_errors,
    helm_template,
    render,
    run,
    tool,
    validate_all,
)

pytestmark = pytest.mark.timeout(300)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="module", params=SCENARIOS, ids=_ids(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[Path, list[Doc]]:
    """One ci/ scenario and the chart rendered with it."""
    values: Path = request.param
    return values, helm_template(values)


def _by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def test_scenarios_exist() -> None:
    assert len(SCENARIOS) >= 3, "charts/modelplane/ci/ needs its scenario values"


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids(SCENARIOS))
def test_helm_lint_strict(values: Path) -> None:
    done = run([tool("helm"), "lint", "--strict", CHART, "--values", values])
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_rendered_chart_validates(scenario: tuple[Path, list[Doc]], version: str) -> None:
    _, docs = scenario
    assert validate_all(docs, version) == []


def test_one_resource_per_template() -> None:
    kinds: dict[str, set[str]] = {}
    for template in sorted((CHART / "templates").rglob("*.yaml")):
        found = set(re.findall(r"^kind: (\w+)", template.read_text(), flags=re.M))
        assert len(found) == 1, f"{template.name} declares {sorted(found) or 'no kind'}"
        kinds[template.name] = found
    assert len(kinds) >= 8


def undocumented_values(text: str) -> list[str]:
    """Leaf keys of a values file with no comment on themselves or an enclosing key."""
    lines = text.splitlines()
    missing = []
    enclosing: list[tuple[int, bool]] = []  # (indent, documented) of the keys above
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):(.*)$", line)
        if not match:
            continue
        indent = len(match[1])
        while enclosing and enclosing[-1][0] >= indent:
            enclosing.pop()
        above = lines[number - 1].strip() if number else ""
        documented = above.startswith("#") or any(d for _, d in enclosing)
        if match[3].strip() and not documented:
            missing.append(match[2])
        enclosing.append((indent, documented))
    return missing


def test_every_value_is_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []
    # The check itself: an uncommented leaf is found, a commented parent covers its children.
    assert undocumented_values("a:\n  # doc\n  b: 1\n  c: 2\n") == ["c"]
    assert undocumented_values("# doc\nresources:\n  limits:\n    cpu: 1\n") == []


def test_chart_versions_match_the_package() -> None:
    """appVersion is the package version, and the default runtime image is the operator's."""
    import tomllib

    from modelplane_operator.builders.defaults import DEFAULT_RUNTIME_IMAGE

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((CHART.parents[1] / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    (deployment,) = _by_kind(helm_template(), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELPLANE_OPERATOR_RUNTIME_IMAGE"] == DEFAULT_RUNTIME_IMAGE


def test_operator_pod_uses_the_values() -> None:
    values = CHART / "ci" / "scheduling-values.yaml"
    given = yaml.safe_load(values.read_text())
    (deployment,) = _by_kind(helm_template(values), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == f"{given['image']['repository']}:{given['image']['tag']}"
    runtime = given["runtime"]["image"]
    assert env["MODELPLANE_OPERATOR_RUNTIME_IMAGE"] == f"{runtime['repository']}:{runtime['tag']}"
    assert env["MODELPLANE_OPERATOR_HTTP_PORT"] == str(given["httpPort"])
    assert env["PYTHONWARNINGS"] == "ignore"
    assert pod["nodeSelector"] == given["nodeSelector"]
    assert pod["tolerations"] == given["tolerations"]
    assert pod["priorityClassName"] == given["priorityClassName"]
    assert container["resources"] == given["resources"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": given["httpPort"]}]


def test_operator_env_names_are_real_settings() -> None:
    """Every MODELPLANE_OPERATOR_* variable the chart sets is a field of OperatorSettings."""
    from modelplane_operator.settings import ENV_PREFIX, OperatorSettings

    (deployment,) = _by_kind(helm_template(), "Deployment")
    names = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    fields = {ENV_PREFIX + f.upper() for f in OperatorSettings.model_fields}
    ours = {n for n in names if n.startswith(ENV_PREFIX)}
    assert ours, "the chart sets no operator settings"
    assert ours - fields == set()


def test_watched_namespaces_get_rolebindings_not_cluster_wide() -> None:
    docs = helm_template(CHART / "ci" / "namespaced-values.yaml")
    bindings = _by_kind(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    cluster = [b["roleRef"]["name"] for b in _by_kind(docs, "ClusterRoleBinding")]
    assert cluster == ["modelplane"], "workload rules must not be bound cluster-wide"
    (deployment,) = _by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MODELPLANE_OPERATOR_NAMESPACES"] == "team-a,team-b"
    assert "@sha256:" in container["image"]


def test_monitors_select_what_exists() -> None:
    """The ServiceMonitor selects the operator Service by a port it has; the PodMonitor's
    selector matches the runtime pods `modelplane render` produces, on their named port."""
    docs = helm_template(CHART / "ci" / "monitoring-values.yaml")
    (monitor,) = _by_kind(docs, "ServiceMonitor")
    (service,) = _by_kind(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports

    (pod_monitor,) = _by_kind(docs, "PodMonitor")
    selector = pod_monitor["spec"]["selector"]
    endpoint_ports = {e["port"] for e in pod_monitor["spec"]["podMetricsEndpoints"]}
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    model_rule = next(r for r in endpoint["relabelings"] if r["targetLabel"] == "modeldeployment")
    model_sources = [s.removeprefix("__meta_kubernetes_pod_label_")
                     for s in model_rule["sourceLabels"]]

    def selected(labels: dict[str, str]) -> bool:
        expressions = selector.get("matchExpressions", [])
        assert all(e["operator"] == "In" for e in expressions)
        return selector["matchLabels"].items() <= labels.items() and all(
            labels.get(e["key"]) in e["values"] for e in expressions)

    sample = next(p for p in SAMPLES if p.name == "seed-mlp.yaml")
    deployments = [d for d in render(sample) if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"seed-mlp", "seed-mlp-balancer"}
    for deployment in deployments:  # the runtime's pods and the balancer's
        template = deployment["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert selected(labels), deployment["metadata"]["name"]
        sanitized = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in labels.items()}
        # Exactly one source of the model's name is set on each pod (separator ""), so
        # the joined value is the name itself.
        assert "".join(sanitized.get(s, "") for s in model_sources) == "seed-mlp"
        container_ports = {
            p.get("name") for c in template["spec"]["containers"] for p in c.get("ports", [])
        }
        assert endpoint_ports <= container_ports


def test_dashboard_ships_only_when_enabled() -> None:
    plain = _by_kind(helm_template(), "ConfigMap")
    assert plain == []
    (config_map,) = [c for c in _by_kind(helm_template(CHART / "ci" / "monitoring-values.yaml"),
                                         "ConfigMap") if "modelplane.json" in c["data"]]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = config_map["data"]["modelplane.json"]
    assert shipped.strip() == (CHART / "dashboards" / "modelplane.json").read_text().strip()


def test_helm_test_hook_checks_operator_health() -> None:
    docs = helm_template()
    hooks = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    (pod,) = hooks
    (service,) = _by_kind(docs, "Service")
    script = " ".join(pod["spec"]["containers"][0]["command"])
    port = service["spec"]["ports"][0]["port"]
    assert f"{service['metadata']['name']}.modelplane-system.svc:{port}/healthz" in script


def test_crds_ship_in_crds_folder() -> None:
    docs = helm_template()
    (crd,) = _by_kind(docs, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "modeldeployments.modelplane.io"
    no_crds = run([tool("helm"), "template", "modelplane", CHART]).stdout
    assert "CustomResourceDefinition" not in no_crds, "CRDs belong in crds/, not templates/"


def test_notes_tell_the_next_steps() -> None:
    """NOTES.txt renders (client-side dry-run install) and its first model is a valid one."""
    done = run([
        tool("helm"), "install", "modelplane", CHART, "--dry-run=client",
        "--namespace", "modelplane-system", "--values", CHART / "ci" / "namespaced-values.yaml",
    ])
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "team-a, team-b" in notes
    for step in ("helm test modelplane", "kubectl wait --for=condition=Ready md/seed-mlp",
                 "kubectl get md", ":predict", "kubectl scale md/seed-mlp"):
        assert step in notes
    inline = notes.split("<<'EOF'", 1)[1].split("EOF", 1)[0]
    model = yaml.safe_load("\n".join(line.removeprefix("     ") for line in inline.splitlines()))
    assert cr_errors(model) == []
    assert model["spec"]["model"]["uri"] == "demo://seed-mlp"


def test_helm_package_ships_crds_and_dashboard(tmp_path: Path) -> None:
    import tarfile

    done = run([tool("helm"), "package", CHART, "--destination", tmp_path])
    (archive,) = tmp_path.glob("modelplane-*.tgz")
    assert archive.name in done.stdout
    with tarfile.open(archive) as packaged:
        names = set(packaged.getnames())
    for member in ("crds/modelplane.io_modeldeployments.yaml", "dashboards/modelplane.json",
                   "templates/NOTES.txt", "templates/tests/test-health.yaml", "values.yaml"):
        assert f"modelplane/{member}" in names


def test_prometheus_adapter_rules_serve_what_the_hpas_ask_for(tmp_path: Path) -> None:
    """The values' rules name the runtime's series and expose exactly the metric names the
    HPA builder asks for; their queries are valid PromQL once the adapter fills them in."""
    import shutil

    from modelplane_operator.builders.autoscaler import IN_FLIGHT_METRIC, RPS_METRIC
    from modelplane_runtime import contract

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rules = values["prometheusAdapter"]["rules"]
    assert {r["name"]["as"] for r in rules} == {IN_FLIGHT_METRIC, RPS_METRIC}
    runtime_metrics = {v for k, v in vars(contract).items() if k.startswith("METRIC_")}
    for rule in rules:
        assert rule["seriesQuery"].split("{")[0] in runtime_metrics
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                                  "pod": {"resource": "pod"}}
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install prometheus", pytrace=False)
    filled = [{"record": f"adapter:rule_{i}", "expr": rule["metricsQuery"]
               .replace("<<.Series>>", rule["seriesQuery"].split("{")[0])
               .replace("<<.LabelMatchers>>", 'namespace="ml",pod=~"a|b"')
               .replace("<<.GroupBy>>", "pod")} for i, rule in enumerate(rules)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": filled}]}))
    assert f"SUCCESS: {len(filled)} rules found" in run([promtool, "check", "rules", path]).stdout
    # Enabled, the chart ships them in the adapter's config format.
    (config_map,) = [d for d in helm_template(CHART / "ci" / "monitoring-values.yaml")
                     if d["kind"] == "ConfigMap" and "adapter" in d["metadata"]["name"]]
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == {"rules": rules}
    assert not [d for d in helm_template() if d["kind"] == "ConfigMap"]
