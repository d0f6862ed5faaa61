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

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
"""ownerReference uid of a file that has none (the API server sets the real one)."""


def register(subparsers: Any) -> None:
    """Add ``render`` and ``crd`` to the ``modelplane`` command."""
    render = subparsers.add_parser(
        "render", help="print the children the operator would create for a ModelDeployment"
    )
    render.add_argument("file", help="a ModelDeployment YAML file ('-' for stdin)")
    render.add_argument(
        "--runtime-image",
        default=None,
        help="default runtime image (else $MODELPLANE_RUNTIME_IMAGE, else "
        f"{DEFAULT_RUNTIME_IMAGE})",
    )
    render.add_argument("--namespace", default=None, help="namespace when the file sets none")
    render.set_defaults(func=_cmd_render)

    crd = subparsers.add_parser("crd", help="print the ModelDeployment CRD (generated)")
    crd.add_argument(
        "--write", action="store_true", help="write it to manifests/crd/ instead of printing"
    )
    crd.add_argument(
        "--root", type=Path, default=Path("."), help="repository root for --write (default .)"
    )
    crd.set_defaults(func=_cmd_crd)


def _fail(message: str) -> int:
    print(f"modelplane: {message}", file=sys.stderr)
    return 2


def _cmd_render(args: argparse.Namespace) -> int:
    import yaml

    from modelplane_operator.builders.document import dump_all, load_all
    from modelplane_operator.builders.render import RenderDefaults, render
    from modelplane_operator.spec import API_VERSION, KIND, InvalidSpec

    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        documents = load_all(text)  # as kubectl reads it (YAML 1.1 booleans: y is true)
    except OSError as exc:
        return _fail(f"cannot read {args.file}: {exc.strerror}")
    except yaml.YAMLError as exc:
        return _fail(f"{args.file} is not valid YAML: {exc}")
    objects = [
        doc for doc in documents
        if isinstance(doc, dict) and doc.get("kind") == KIND
    ]
    if not objects:
        return _fail(f"{args.file} holds no {KIND}")
    image = args.runtime_image or os.environ.get("MODELPLANE_RUNTIME_IMAGE") or (
        DEFAULT_RUNTIME_IMAGE
    )
    defaults = RenderDefaults(runtime_image=image)
    children: list[dict[str, Any]] = []
    for md in objects:
        if md.get("apiVersion") != API_VERSION:
            return _fail(f"apiVersion: must be {API_VERSION}, not {md.get('apiVersion')!r}")
        meta = dict(md.get("metadata") or {})
        meta.setdefault("uid", PLACEHOLDER_UID)
        if args.namespace and not meta.get("namespace"):
            meta["namespace"] = args.namespace
        try:
            children += render({**md, "metadata": meta}, defaults)
        except InvalidSpec as exc:
            name = meta.get("name", "?")
            return _fail(f"{KIND} {name} is invalid: {exc}")
    sys.stdout.write(dump_all(children))
    return 0


def _cmd_crd(args: argparse.Namespace) -> int:
    from modelplane_operator.crd import CRD_PATH, crd_yaml

    text = crd_yaml()
    if not args.write:
        sys.stdout.write(text)
        return 0
    target = args.root / CRD_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}", file=sys.stderr)
    return 0
