"""``modelplane balancer``: the flags, generated from the settings object's fields.

Registered in the ``modelplane`` command through the ``modelplane.commands`` entry point
group; ``python -m modelplane_balancer`` runs the same command without it. Every flag is
``--`` + the field name with dashes (``--backends``, ``--strategy``, ...), every variable
``MODELPLANE_BALANCER_`` + the field name upper-cased; flags win over variables.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelplane_balancer import __version__, contract

_FIRST = ("host", "port", "model", "backends", "weights", "strategy")
"""The flags the issue names, listed first in ``--help``."""


def _settings_fields() -> dict[str, Any]:
    from modelplane_balancer.settings import BalancerSettings

    fields = dict(BalancerSettings.model_fields)
    return {name: fields[name] for name in (*_FIRST, *(n for n in fields if n not in _FIRST))}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; defaults None so unset flags fall through to the variables."""
    for name, field in _settings_fields().items():
        flag = "--" + name.replace("_", "-")
        annotation = field.annotation
        help_text = (field.description or "").replace("%", "%%")
        help_text += f" [{contract.ENV_PREFIX}{name.upper()}]"
        choices = None
        kind: Any = str
        if typing.get_origin(annotation) is typing.Literal:
            choices = list(typing.get_args(annotation))
        elif annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
            continue
        elif annotation is int:
            kind = int
        elif annotation is float:
            kind = float
        elif isinstance(annotation, types.UnionType) and Path in typing.get_args(annotation):
            kind = Path
        parser.add_argument(flag, dest=name, type=kind, choices=choices, default=None,
                            help=help_text)


def run(args: argparse.Namespace) -> int:
    """Run the balancer with the parsed flags; the process exit code."""
    from modelplane_balancer.server import serve
    from modelplane_balancer.settings import SettingsError, load_settings

    overrides = {name: getattr(args, name, None) for name in _settings_fields()}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"modelplane balancer: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


_DESCRIPTION = (
    "Request-level load balancer for a model's replicas: picks a replica per request "
    "(strategies: " + ", ".join(contract.STRATEGIES) + "), splits canary traffic by exact "
    "percent, retries only requests that never ran, ejects failing replicas. Static "
    "replicas with --backends, else it watches the ModelDeployment --model and its "
    "EndpointSlices."
)


def register(commands: Any) -> None:
    """Add ``balancer`` to the ``modelplane`` command (an argparse subparsers action)."""
    parser = commands.add_parser("balancer", help="load-balance requests over a model's replicas",
                                 description=_DESCRIPTION)
    add_flags(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelplane_balancer``: the same flags as ``modelplane balancer``."""
    parser = argparse.ArgumentParser(prog="modelplane balancer", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"modelplane {__version__}")
    add_flags(parser)
    args = parser.parse_args(argv)
    return run(args)
