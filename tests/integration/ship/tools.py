"""What the shipping tests drive: real helm, kubectl, hadolint, checkov and the CLI.

Every helper runs the real binary and returns parsed output; a tool that is missing fails
the test with the command that installs it (these tests never skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "modelplane"
MANIFESTS = ROOT / "manifests"
SAMPLES = sorted((MANIFESTS / "samples").glob("*.yaml"))
SCENARIOS = sorted((CHART / "ci").glob("*.yaml"))
CRD_FILE = MANIFESTS / "crd" / "modelplane.io_modeldeployments.yaml"
TOOLS_BIN = ROOT / ".tools" / "bin"
KUBE_VERSIONS = ("1.30.0", "1.35.0")
"""Kubernetes versions the chart and manifests must validate against (oldest, newest)."""

Doc = dict[str, Any]


def tool(name: str) -> Path:
    """Path of helm or kubectl from .tools/bin (installed by `make tools`)."""
    path = TOOLS_BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make tools`", pytrace=False)
    return path


def python_tool(name: str, install: str) -> Path:
    """A tool installed by pip: next to this interpreter, in .tools/<name>/bin, or on PATH."""
    for candidate in (
        Path(sys.executable).parent / name,
        ROOT / ".tools" / name / "bin" / name,
    ):
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: {install}", pytrace=False)
    return Path(found)


def run(
    args: list[str | Path], timeout: float = 120, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command; with ``ok`` a non-zero exit fails the test showing its output."""
    done = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False,
        cwd=ROOT, env={**os.environ, "HELM_CACHE_HOME": str(ROOT / ".tools" / "helm-cache")},
    )
    if ok and done.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in args)} exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}",
            pytrace=False,
        )
    return done


def documents(text: str) -> list[Doc]:
    """Non-empty YAML documents of a multi-document stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_template(values: Path | None = None, *extra: str) -> list[Doc]:
    """`helm template` of the chart (CRDs included), as documents."""
    args: list[str | Path] = [
        tool("helm"), "template", "modelplane", CHART, "--namespace", "modelplane-system",
        "--include-crds",
    ]
    if values is not None:
        args += ["--values", values]
    return documents(run([*args, *extra]).stdout)


def kustomize() -> list[Doc]:
    """`kubectl kustomize manifests/`, as documents."""
    return documents(run([tool("kubectl"), "kustomize", MANIFESTS]).stdout)


def render(sample: Path) -> list[Doc]:
    """`modelplane render SAMPLE`: the children the operator would create."""
    cli = Path(sys.executable).parent / "modelplane"
    return documents(run([cli, "render", sample], timeout=60).stdout)


@cache
def crd() -> Doc:
    """The generated CRD, as committed in manifests/crd/."""
    loaded: Doc = yaml.safe_load(CRD_FILE.read_text())
    return loaded


def _strict(schema: Any) -> Any:
    """A copy of a structural schema that rejects undeclared fields, like kubectl's strict
    field validation does, except below ``x-kubernetes-preserve-unknown-fields``."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def cr_errors(obj: Doc, definition: Doc | None = None) -> list[str]:
    """Problems the API server would report when storing ``obj`` under the CRD."""
    definition = definition or crd()
    spec = definition["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    api_version = obj.get("apiVersion", "")
    if obj.get("kind") != kind or not api_version.startswith(f"{group}/"):
        return [f"not a {group} {kind}: {api_version} {obj.get('kind')}"]
    served = {v["name"]: v for v in spec["versions"] if v.get("served")}
    version = served.get(api_version.split("/", 1)[1])
    if version is None:
        return [f"version {api_version} is not served (served: {sorted(served)})"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    # metadata is validated by the API server itself, not by the CRD schema.
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    schema["properties"] = {
        k: v for k, v in schema["properties"].items() if k not in ("apiVersion", "kind", "metadata")
    }
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    ]


MONITORING_KINDS = frozenset({"ServiceMonitor", "PodMonitor"})
"""prometheus-operator kinds: no schema ships with kubernetes-validate; checked by content."""
KEDA_API = "keda.sh/"
"""KEDA's kinds: validated against KEDA's own schema in test_keda.py."""


def kube_errors(obj: Doc, version: str) -> list[str]:
    """Strict OpenAPI validation of a built-in object against one Kubernetes version."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{obj['kind']}/{obj['metadata'].get('name')} {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{obj.get('apiVersion')} {obj.get('kind')}: no schema in Kubernetes {version}"]
    return []


def validate_all(docs: list[Doc], version: str) -> list[str]:
    """Built-in kinds against Kubernetes ``version``, ModelDeployments against the CRD."""
    errors: list[str] = []
    for doc in docs:
        if doc.get("kind") in MONITORING_KINDS or doc.get("apiVersion", "").startswith(
                KEDA_API):
            continue
        if doc.get("apiVersion", "").startswith("modelplane.io/"):
            errors += cr_errors(doc)
        else:
            errors += kube_errors(doc, version)
    return errors
