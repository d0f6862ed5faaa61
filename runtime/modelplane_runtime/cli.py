"""The ``modelplane`` command: ``serve``, ``demo`` and ``fetch`` here; more from plugins.

Other packages (the operator) add subcommands through the ``modelplane.commands`` entry
point group, so this module never imports them. Heavy imports (TensorFlow) happen inside
the command that needs them, so ``modelplane --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from modelplane_runtime import __version__


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    # Defaults are None so that unset flags fall through to MODELPLANE_* variables.
    parser.add_argument("--name", dest="model_name", help="name to serve the model under")
    parser.add_argument("--host", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--grpc-port", type=int, help="gRPC port (default 8081; 0 = off)")
    parser.add_argument("--workers", type=int, help="server processes (default 1)")
    parser.add_argument("--format", dest="model_format", choices=["auto", "savedmodel", "keras"])
    parser.add_argument("--version", dest="model_version", type=int, help="serve only this version")
    parser.add_argument(
        "--versions", dest="model_versions", help="version policy: latest, latest:N, all, or 1,3"
    )
    parser.add_argument("--labels", dest="model_labels", help="version labels: stable=1,canary=2")
    parser.add_argument(
        "--poll-seconds", type=float,
        help="look for new version folders this often and serve them (0 = off)",
    )
    parser.add_argument("--max-batch-size", type=int, help="rows per model call (1 = no batching)")
    parser.add_argument("--max-latency-ms", type=float, help="longest wait to fill a batch")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body")
    parser.add_argument("--max-rows-per-request", type=int, help="most rows in one request")
    parser.add_argument("--request-timeout-s", type=float, help="per-request timeout")
    parser.add_argument("--drain-timeout-s", type=float, help="SIGTERM drain timeout")
    parser.add_argument("--log-level", choices=["error", "warning", "info", "debug"])


_SERVER_FIELDS = (
    "model_name", "host", "port", "grpc_port", "workers", "model_format", "model_version",
    "model_versions", "model_labels", "poll_seconds", "max_batch_size", "max_latency_ms",
    "max_body_bytes", "max_rows_per_request", "request_timeout_s", "drain_timeout_s", "log_level",
)


def _settings_from(args: argparse.Namespace, **extra: object) -> object:
    from modelplane_runtime.settings import load_settings

    overrides = {field: getattr(args, field, None) for field in _SERVER_FIELDS}
    return load_settings(**overrides, **extra)


def _cmd_serve(args: argparse.Namespace) -> int:
    from modelplane_runtime.server.process import serve
    from modelplane_runtime.storage.uri import is_object_store_uri

    if is_object_store_uri(args.path):
        # Served from a local copy that follows the remote repository (mirror.py).
        from modelplane_runtime.mirror import cache_folder

        settings = _settings_from(args, model_uri=args.path, model_path=cache_folder(args.path))
    else:
        settings = _settings_from(args, model_path=Path(args.path))
    return serve(settings)  # type: ignore[arg-type]


def _cmd_demo(args: argparse.Namespace) -> int:
    from modelplane_runtime.demo import demo

    settings = _settings_from(args)
    return demo(settings, cache_dir=args.cache_dir)  # type: ignore[arg-type]


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

    serve = sub.add_parser("serve", help="serve a model repository over HTTP and gRPC")
    serve.add_argument("path", help="model repository, SavedModel folder, or .keras/.h5 file")
    _add_server_flags(serve)
    serve.set_defaults(func=_cmd_serve)

    demo = sub.add_parser("demo", help="build the bundled demo model and serve it")
    demo.add_argument("--cache-dir", type=Path, default=None, help="where to build the model")
    _add_server_flags(demo)
    demo.set_defaults(func=_cmd_demo)

    fetch = sub.add_parser("fetch", help="download a model to a folder (storage initializer)")
    fetch.add_argument("uri", help="file://, pvc://, http(s)://, s3://, gs://, az://, or demo://")
    fetch.add_argument("dest", help="destination folder")
    fetch.set_defaults(func=_cmd_fetch)

    for plugin in entry_points(group="modelplane.commands") if plugins else ():
        try:
            register = plugin.load()
        except ImportError:
            continue  # that extra is not installed; its commands are simply absent
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modelplane`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A built-in command needs no plugins: importing the operator's would slow a pod's start.
    args = build_parser(plugins=not (argv and argv[0] in _BUILTIN)).parse_args(argv)
    from modelplane_runtime.settings import SettingsError

    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"modelplane: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
