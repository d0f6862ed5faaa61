"""The ``modelplane`` command: ``serve``, ``demo`` and ``fetch`` here; more from plugins.

Other packages (the operator) add subcommands through the ``modelplane.commands`` entry
point group, so this module never imports them. Heavy imports (TensorFlow) happen inside
the command that needs them, after its settings are checked, so ``modelplane --help`` and
a mistyped flag answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelplane_runtime import __version__

if TYPE_CHECKING:
    from modelplane_runtime.settings import RuntimeSettings

_SERVE_DESCRIPTION = """\
Serve a model over HTTP: TensorFlow Serving's REST API (v1), the Open Inference
Protocol (v2), health probes and Prometheus metrics on one port, with dynamic
batching of concurrent requests.

PATH is a TensorFlow Serving model repository (integer version folders, each a
SavedModel or one .keras/.h5 file; the newest is served unless --versions or
--model-version say otherwise), or a bare SavedModel folder or Keras file, which
is served as version 1. A repository in object storage (s3://, gs://, az:// or
Azure's https:// form) is served from a local copy that follows it.

The model's name in URLs is --name, else PATH's last part without .keras/.h5;
a bare version folder takes its parent's name (./mymodel/1 serves "mymodel").

Every flag has a MODELPLANE_* environment variable (shown after each flag); a
flag wins over its variable."""
_SERVE_EXAMPLES = """\
examples:
  modelplane serve ./models/my_model            # my_model/1, my_model/2, ...: the newest
  modelplane serve ./model.keras --port 9000    # a Keras file, as model "model"
  modelplane serve ./my_model --versions all --labels stable=1,canary=2
  modelplane serve ./my_model --model-version 1 --max-batch-size 1"""
_DEMO_DESCRIPTION = """\
Build the bundled demo model (seed-mlp: 8 float features in, 1 probability out)
into --cache-dir unless it is there, serve it as `modelplane serve` would, and
print ready-to-paste curl requests (v1 and v2) once it answers. It listens on
port 8080, or on a free port when 8080 is taken. Stop it with Ctrl+C.

The server flags are those of `modelplane serve` (see `modelplane serve -h`)."""
_FETCH_DESCRIPTION = """\
Download a model to DEST, as the operator's storage initializer does: file://,
pvc://<claim>/<path>, an http(s):// archive (tar.gz, zip) or Keras file, s3://,
gs://, az://, or demo:// (the bundled demo model). Archives are extracted safely,
and DEST ends up complete or untouched. HTTP credentials:
MODELPLANE_STORAGE_BEARER_TOKEN, or MODELPLANE_STORAGE_USERNAME and _PASSWORD;
object stores use their SDK's standard variables and default credential chain."""


def _server_flags(name_default: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(flag, settings field, argparse options) of every server flag, with its help.

    Defaults are None so that unset flags fall through to MODELPLANE_* variables; the help
    shows the built-in default, read from the settings model so it cannot drift.
    """
    from modelplane_runtime.settings import RuntimeSettings, variable

    fields = RuntimeSettings.model_fields

    def text(field: str, what: str, *, default: bool = True) -> str:
        shown = f"default {fields[field].default}; " if default else ""
        return f"{what} ({shown}{variable(field)})".replace("%", "%%")

    return [
        ("--name", "model_name", {"metavar": "NAME", "help": text(
            "model_name", f"the model's name in URLs; default: {name_default}",
            default=False)}),
        ("--host", "host", {"help": text("host", "address to bind")}),
        ("--port", "port", {"type": int, "help": text("port", "TCP port; 0 picks a free one")}),
        ("--workers", "workers", {"type": int, "metavar": "N", "help": text(
            "workers", "server processes sharing the port")}),
        ("--format", "model_format", {"choices": ["auto", "savedmodel", "keras"], "help": text(
            "model_format", "how to load PATH: as a SavedModel, as a Keras file, or auto, "
            "which tells them apart by their files")}),
        ("--model-version", "model_version", {"type": int, "metavar": "N", "help": text(
            "model_version", "serve only this version; overrides --versions",
            default=False)}),
        ("--versions", "model_versions", {"metavar": "POLICY", "help": text(
            "model_versions", "which versions to serve: latest, latest:N, all, or a list "
            "like 1,3")}),
        ("--labels", "model_labels", {"metavar": "LABELS", "help": text(
            "model_labels", "names for served versions, like stable=1,canary=2",
            default=False)}),
        ("--poll-seconds", "poll_seconds", {"type": float, "metavar": "S", "help": text(
            "poll_seconds", "look for new and removed version folders this often and serve "
            "them without a restart; 0 reads the repository at start only")}),
        ("--max-batch-size", "max_batch_size", {"type": int, "metavar": "ROWS", "help": text(
            "max_batch_size", "most rows merged into one model call; 1 turns batching off")}),
        ("--max-latency-ms", "max_latency_ms", {"type": float, "metavar": "MS", "help": text(
            "max_latency_ms", "longest a request waits for others to fill its batch")}),
        ("--max-body-bytes", "max_body_bytes", {"type": int, "metavar": "BYTES", "help": text(
            "max_body_bytes", "largest request body; larger gets 413")}),
        ("--max-rows-per-request", "max_rows_per_request", {
            "type": int, "metavar": "ROWS", "help": text(
                "max_rows_per_request", "most rows in one request; more gets 400")}),
        ("--request-timeout-s", "request_timeout_s", {"type": float, "metavar": "S", "help": text(
            "request_timeout_s", "a request not answered by then gets 503")}),
        ("--drain-timeout-s", "drain_timeout_s", {"type": float, "metavar": "S", "help": text(
            "drain_timeout_s", "on SIGTERM, how long in-flight requests may finish")}),
        ("--log-level", "log_level", {"choices": ["error", "warning", "info", "debug"],
                                      "help": text("log_level", "logs are JSON lines on stderr")}),
    ]


class _ProgramVersion(argparse.Action):
    """``--version`` after a command prints the program's version, as it does before one.

    It used to pin the model version, which ``--model-version`` does now: given a value, it
    stops with a message saying so, rather than guess which of the two was meant.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        # Hidden: `modelplane --version` is the documented spelling.
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: str | Sequence[Any] | None, option_string: str | None = None,
    ) -> None:
        if values is not None:
            parser.error(
                f"--version takes no value: it prints modelplane's version; to serve only "
                f"one model version, use --model-version N (e.g. --model-version {values})"
            )
        print(f"modelplane {__version__}")
        parser.exit()


def _add_server_flags(parser: argparse.ArgumentParser, name_default: str) -> dict[str, str]:
    """Add the server flags; the field -> flag map that names them in error messages."""
    flags: dict[str, str] = {}
    for flag, field, options in _server_flags(name_default):
        parser.add_argument(flag, dest=field, **options)
        flags[field] = flag
    parser.add_argument("--version", action=_ProgramVersion)
    return flags


def _settings_from(args: argparse.Namespace, **extra: object) -> RuntimeSettings:
    from modelplane_runtime.settings import load_settings

    flags: dict[str, str] = args.flags
    overrides = {field: getattr(args, field, None) for field in flags if field not in extra}
    return load_settings(flags=flags, **overrides, **extra)


def _cmd_serve(args: argparse.Namespace) -> int:
    from modelplane_runtime.storage.uri import is_object_store_uri

    if is_object_store_uri(args.path):
        # Served from a local copy that follows the remote repository (mirror.py).
        from modelplane_runtime.mirror import cache_folder

        settings = _settings_from(args, model_uri=args.path, model_path=cache_folder(args.path))
    else:
        settings = _settings_from(args, model_path=Path(args.path))  # bad flags fail fast
    from modelplane_runtime.server.process import serve

    return serve(settings)


def _cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    from modelplane_runtime.demo import demo

    return demo(settings, cache_dir=args.cache_dir)


def _cmd_fetch(args: argparse.Namespace) -> int:
    import os

    from modelplane_runtime.logs import configure_logging
    from modelplane_runtime.storage import StorageError, fetch

    configure_logging(os.environ.get("MODELPLANE_LOG_LEVEL", "info").lower())
    try:
        fetch(args.uri, Path(args.dest))
    except StorageError as exc:
        # One line on stderr: the init container's termination message in `kubectl describe`.
        print(f"modelplane: {exc}", file=sys.stderr)
        return 1
    return 0


_BUILTIN = frozenset({"serve", "demo", "fetch"})


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """The command tree; ``plugins`` adds the commands other packages register."""
    parser = argparse.ArgumentParser(
        prog="modelplane",
        description="Modelplane: serve TensorFlow models locally or on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"modelplane {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # No abbreviated flags: `--version` must never turn into `--versions`, nor `--model`
    # into `--model-version`.
    serve = sub.add_parser(
        "serve", help="serve a model repository over HTTP (v1 and v2)",
        description=_SERVE_DESCRIPTION, epilog=_SERVE_EXAMPLES, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("path", metavar="PATH",
                       help="model repository, SavedModel folder, or .keras/.h5 file")
    name_rule = ("PATH's last part without .keras/.h5, its parent's for a bare version folder "
                 "(./mymodel/1 -> mymodel)")
    flags = _add_server_flags(serve, name_rule)
    serve.set_defaults(func=_cmd_serve,
                       flags={"model_path": "PATH", "model_uri": "PATH", **flags})

    demo = sub.add_parser(
        "demo", help="build the bundled demo model and serve it",
        description=_DEMO_DESCRIPTION, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                      help="where to build the model (default ~/.cache/modelplane/demo)")
    demo.set_defaults(func=_cmd_demo, flags=_add_server_flags(demo, "seed-mlp"))

    fetch = sub.add_parser(
        "fetch", help="download a model to a folder (storage initializer)",
        description=_FETCH_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("uri", metavar="URI",
                       help="file://, pvc://, http(s)://, s3://, gs://, az://, or demo://")
    fetch.add_argument("dest", metavar="DEST", help="destination folder")
    fetch.set_defaults(func=_cmd_fetch)

    for plugin in entry_points(group="modelplane.commands") if plugins else ():
        try:
            register = plugin.load()
        except ImportError:
            continue  # that extra is not installed; its commands are simply absent
        register(sub)
    for command in sub.choices.values():
        command.set_defaults(command_parser=command)
    return parser


def parse(argv: Sequence[str], *, plugins: bool = True) -> argparse.Namespace:
    """Parse a command line; a flag no command knows is reported with that command's usage.

    argparse hands unknown arguments up to the top-level parser, whose usage lists only the
    commands; the user needs the usage of the command they were typing.
    """
    parser = build_parser(plugins=plugins)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command: argparse.ArgumentParser = args.command_parser
        before_command = list(argv).index(args.command) > list(argv).index(unknown[0])
        (parser if before_command else command).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelplane`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A built-in command needs no plugins: importing the operator's would slow a pod's start.
    args = parse(argv, plugins=not (argv and argv[0] in _BUILTIN))
    from modelplane_runtime.settings import SettingsError

    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"modelplane {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
