"""Operator tools for the ``modelplane`` command: ``render`` (children as YAML) and ``crd``.

Registered through the ``modelplane.commands`` entry point; heavy imports (pydantic models,
YAML) happen inside the commands so that ``modelplane --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from modelplane_operator.builders.defaults import DEFAULT_RUNTIME_IMAGE

CRD_FILE = "manifests/crd/modelplane.io_modeldeployments.yaml"
"""Where ``crd --write`` puts the CRD, relative to the repository (crd.CRD_PATH, as text so
that registering the command imports nothing)."""
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
"""ownerReference uid of a file that has none (the API server sets the real one)."""


def register(subparsers: Any) -> None:
    """Add ``render`` and ``crd`` to the ``modelplane`` command."""
    render = subparsers.add_parser(
        "render", help="print the children the operator would create for a ModelDeployment",
        description="Print, as one YAML stream, exactly what the operator would apply for "
        "every ModelDeployment in the files (other kinds are skipped). Like kubectl -f, a "
        "FILE may be '-' (standard input) or a folder (its .yaml, .yml and .json files).",
    )
    render.add_argument("files", nargs="+", metavar="FILE",
                        help="ModelDeployment YAML files, folders, or '-' for stdin")
    render.add_argument(
        "--runtime-image",
        default=None,
        help="default runtime image (else $MODELPLANE_RUNTIME_IMAGE, else "
        f"{DEFAULT_RUNTIME_IMAGE})",
    )
    render.add_argument("--namespace", default=None, help="namespace when the file sets none")
    render.set_defaults(func=_cmd_render)

    crd = subparsers.add_parser(
        "crd", help="print the ModelDeployment CRD (generated)",
        description="Print the ModelDeployment CRD generated from the spec model, or with "
        f"--write replace {CRD_FILE} in a checkout of the Modelplane repository (`make "
        "manifests` also copies it into the chart).",
    )
    crd.add_argument(
        "--write", action="store_true", help=f"write it to {CRD_FILE} instead of printing"
    )
    crd.add_argument(
        "--root", type=Path, default=Path("."), metavar="DIR",
        help="the repository checkout --write writes into (default .)",
    )
    crd.set_defaults(func=_cmd_crd)


def _fail(message: str) -> int:
    print(f"modelplane: {message}", file=sys.stderr)
    return 2


_MANIFEST_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
"""What ``kubectl -f DIR`` reads from a folder."""


def _text(name: str, path: Path | None) -> str:
    try:
        return sys.stdin.read() if path is None else path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{name} is not UTF-8 text") from None


def _read_inputs(names: list[str]) -> list[tuple[str, str]]:
    """(name, text) of every input, in order; folders expand to their manifest files, as
    ``kubectl -f DIR`` does. OSError or ValueError names the input that failed."""
    if names.count("-") > 1:
        raise ValueError("'-' (standard input) can be given only once")
    inputs: list[tuple[str, str]] = []
    for name in names:
        if name == "-":
            inputs.append(("<stdin>", _text("<stdin>", None)))
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in _MANIFEST_SUFFIXES
                           and p.is_file())
            if not files:
                raise ValueError(f"{name} holds no .yaml, .yml or .json file")
            inputs += [(str(f), _text(str(f), f)) for f in files]
        else:
            inputs.append((name, _text(name, path)))
    return inputs


def _cmd_render(args: argparse.Namespace) -> int:
    import yaml

    from modelplane_operator.builders.document import dump_all, load_all
    from modelplane_operator.builders.render import RenderDefaults, render
    from modelplane_operator.spec import API_VERSION, KIND, InvalidSpec

    objects: list[tuple[str, dict[str, Any]]] = []
    try:
        for name, text in _read_inputs(args.files):
            try:
                documents = load_all(text)  # as kubectl reads it (YAML 1.1: y is true)
            except yaml.YAMLError as exc:
                return _fail(f"{name} is not valid YAML: {exc}")
            objects += [(name, doc) for doc in documents
                        if isinstance(doc, dict) and doc.get("kind") == KIND]
    except OSError as exc:
        return _fail(f"cannot read {exc.filename}: {exc.strerror}")
    except ValueError as exc:
        return _fail(str(exc))
    if not objects:
        return _fail(f"{', '.join(args.files)}: no {KIND} found")
    image = args.runtime_image or os.environ.get("MODELPLANE_RUNTIME_IMAGE") or (
        DEFAULT_RUNTIME_IMAGE
    )
    defaults = RenderDefaults(runtime_image=image)
    children: list[dict[str, Any]] = []
    for name, md in objects:
        if md.get("apiVersion") != API_VERSION:
            return _fail(
                f"{name}: apiVersion: must be {API_VERSION}, not {md.get('apiVersion')!r}"
            )
        meta = dict(md.get("metadata") or {})
        meta.setdefault("uid", PLACEHOLDER_UID)
        if args.namespace and not meta.get("namespace"):
            meta["namespace"] = args.namespace
        try:
            children += render({**md, "metadata": meta}, defaults)
        except InvalidSpec as exc:
            return _fail(f"{name}: {KIND} {meta.get('name', '?')} is invalid: {exc}")
    # Nothing is printed unless every input rendered: never half of what was asked for.
    sys.stdout.write(dump_all(children))
    return 0


def repository_problem(root: Path) -> str | None:
    """Why ``root`` is not a checkout of the Modelplane repository, or None when it is."""
    import tomllib

    pyproject = root / "pyproject.toml"
    if not root.is_dir():
        return f"{root} is not a folder"
    try:
        name = tomllib.loads(pyproject.read_text()).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        name = None
    if name != "modelplane" or not (root / "manifests").is_dir():
        return (f"{root} is not the Modelplane repository (no pyproject.toml of project "
                "'modelplane' with a manifests/ folder beside it)")
    return None


def _cmd_crd(args: argparse.Namespace) -> int:
    from modelplane_operator.crd import CRD_PATH, crd_yaml

    text = crd_yaml()
    if not args.write:
        sys.stdout.write(text)
        return 0
    problem = repository_problem(args.root)
    if problem is not None:
        return _fail(f"crd --write: {problem}; give --root the repository's folder")
    target = args.root / CRD_PATH
    target.parent.mkdir(exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}", file=sys.stderr)
    return 0
