"""The runtime's server process: uvicorn (uvloop + httptools) around ``create_app``.

The hot routes are answered by http/direct/connection.py's subclass of uvicorn's httptools
protocol, unless http/direct/fence.py finds the uvicorn internals it relies on changed.

We bind the socket ourselves so that ``--port 0`` reports the port actually bound: once the
model is loaded and the socket listens, one log line says ``"event": "ready"`` with the
``url`` and ``port`` (tests and scripts parse it). On SIGTERM (or Ctrl+C) readiness turns
false at once, the listening socket closes, in-flight requests finish, and the process exits
0 within ``drain_timeout_s`` — the Kubernetes pod-termination contract.

HTTPS when ``MODELPLANE_TLS_CERT_FILE`` and ``MODELPLANE_TLS_KEY_FILE`` are both set; a bad
TLS or token-folder setting fails start-up (exit 2) before the socket is bound. With
``--workers N`` the processes are supervised by server/workers.py.

gRPC (``--grpc-port``, default 8081, 0 = off) runs on the same loop (grpc/server.py): its
port is reserved before the model loads (a taken port fails start-up like the HTTP one),
it starts once uvicorn listens (the ready line names both ports), and on SIGTERM it drains
beside uvicorn; the data plane closes only after both have finished their calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

import uvicorn

from modelplane_runtime import contract
from modelplane_runtime.auth import AuthConfigError, TokenStore
from modelplane_runtime.errors import ModelLoadError
from modelplane_runtime.http.app import RuntimeApp, create_app, runtime_of
from modelplane_runtime.logs import configure_logging
from modelplane_runtime.server.lifecycle import (
    EXIT_STARTUP_FAILURE,
    EXIT_USAGE,
    announce_ready,
    bind_socket,
    lifecycle,
    public_url,
    reserve_port,
)
from modelplane_runtime.serving import Runtime
from modelplane_runtime.settings import RuntimeSettings, SettingsError

if TYPE_CHECKING:
    from modelplane_runtime.grpc.server import GrpcServer
    from modelplane_runtime.rules import Ticker

logger = logging.getLogger("modelplane.server")
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, plus: a ready line with the bound URL, and drain-aware signals."""

    def __init__(
        self, config: uvicorn.Config, runtime: Runtime, url: str,
        on_ready: Callable[[str], None] | None, *, announce: bool = True,
        ticker: Ticker | None = None,
    ) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.url = url
        self.on_ready = on_ready
        self.announce = announce
        self.ticker = ticker
        self.grpc: GrpcServer | None = None
        self.grpc_failed = False
        self._grpc_stopping: asyncio.Future[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            extra: dict[str, Any] = {}
            if self.runtime.settings.grpc_port:
                if not await self._start_grpc():
                    return
                extra["grpc_port"] = self.runtime.settings.grpc_port
            if self.announce and sockets:
                announce_ready(self.url, sockets[0], **extra)
            if self.on_ready is not None:
                self.on_ready(self.url)

    async def _start_grpc(self) -> bool:
        """Start gRPC beside uvicorn (the model is loaded); False (and exit) if it cannot."""
        from modelplane_runtime.grpc.server import GrpcServer
        from modelplane_runtime.rules import Ticker

        settings = self.runtime.settings
        self.grpc = GrpcServer(self.runtime, self.ticker or Ticker())
        try:
            await self.grpc.start(settings.host, settings.grpc_port)
        except OSError as exc:
            logger.error("%s", exc)
            self.grpc, self.grpc_failed, self.should_exit = None, True, True
            return False
        self.runtime.before_close.append(self._grpc_stopped)
        return True

    async def _grpc_stopped(self) -> None:
        """Wait for the gRPC drain (the data plane closes after it)."""
        if self._grpc_stopping is None and self.grpc is not None:
            self._grpc_stopping = asyncio.ensure_future(
                self.grpc.stop(self.runtime.settings.drain_timeout_s)
            )
        if self._grpc_stopping is not None:
            await self._grpc_stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        lifecycle.info(
            "draining: not ready, finishing in-flight requests",
            extra={"event": "draining", "timeout_s": self.config.timeout_graceful_shutdown},
        )
        if self.grpc is not None:
            # Both front doors drain at once; the lifespan (which closes the data plane)
            # waits for gRPC's calls through runtime.before_close.
            self._grpc_stopping = asyncio.ensure_future(
                self.grpc.stop(self.runtime.settings.drain_timeout_s)
            )
        await super().shutdown(sockets=sockets)
        lifecycle.info("stopped", extra={"event": "stopped"})

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Readiness flips in the signal handler itself, before the loop even notices.
        self.runtime.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the captured signal after a graceful shutdown, which would make
        # the process die "by SIGTERM"; a drained runtime exits 0 instead.
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def tls_options(settings: RuntimeSettings) -> dict[str, str]:
    """uvicorn's ssl options for HTTPS, or none for plain HTTP; SettingsError when half set."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return {}
    if cert is None or key is None:
        given, missing = (
            (contract.ENV_TLS_CERT_FILE, contract.ENV_TLS_KEY_FILE)
            if cert is not None
            else (contract.ENV_TLS_KEY_FILE, contract.ENV_TLS_CERT_FILE)
        )
        raise SettingsError(f"{given} is set but {missing} is not: HTTPS needs both")
    for variable, path in ((contract.ENV_TLS_CERT_FILE, cert), (contract.ENV_TLS_KEY_FILE, key)):
        if not path.is_file():
            raise SettingsError(f"{variable}={path}: no such file")
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def serve(settings: RuntimeSettings, on_ready: Callable[[str], None] | None = None) -> int:
    """Serve ``settings.model_path`` until SIGTERM/SIGINT; the process exit code."""
    configure_logging(settings.log_level)
    lifecycle.setLevel(logging.INFO)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tls = tls_options(settings)
        if settings.auth_tokens_dir is not None:
            TokenStore(settings.auth_tokens_dir)  # fail before binding, workers or not
    except (SettingsError, AuthConfigError) as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot bind %s:%d: %s", settings.host, settings.port, exc.strerror)
        return EXIT_USAGE
    host, port = sock.getsockname()[:2]
    url = public_url(str(host), int(port), "https" if tls else "http")
    reserved = None
    if settings.grpc_port:
        try:
            reserved = reserve_port(settings.host, settings.grpc_port)
        except OSError as exc:
            logger.error(
                "cannot bind %s:%d for gRPC: %s", settings.host, settings.grpc_port, exc.strerror
            )
            sock.close()
            return EXIT_USAGE
    try:
        # The path's layout, before any worker or TensorFlow starts: a missing, empty or
        # model-less path is the user's to fix, said in one line (no traceback). A remote
        # repository's copy is made in the lifespan (mirror.py).
        from modelplane_runtime.dataplane.repository import open_repository

        if not settings.model_uri:
            open_repository(settings)
    except ModelLoadError as exc:
        logger.error("%s", exc, extra={"path": str(settings.model_path)})
        sock.close()
        if reserved is not None:
            reserved.close()
        return EXIT_STARTUP_FAILURE
    try:
        if settings.workers > 1:
            from modelplane_runtime.server.workers import supervise

            return supervise(settings, sock, url, on_ready, run_server)
        return run_server(settings, sock, url, on_ready)
    finally:
        sock.close()
        if reserved is not None:
            reserved.close()


def run_server(
    settings: RuntimeSettings,
    sock: socket.socket,
    url: str,
    on_ready: Callable[[str], None] | None,
    *,
    announce: bool = True,
) -> int:
    """Run one server process on a bound socket until it drains; the exit code.

    ``announce=False`` (a worker) leaves the ready line to the supervisor.
    """
    try:
        app = create_app(settings)
    except AuthConfigError as exc:  # the Secret emptied since the supervisor checked it
        logger.error("%s", exc)
        return EXIT_USAGE
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=http_protocol(app, settings),
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        # uvicorn annotates this as int but awaits it with wait_for: fractions work.
        timeout_graceful_shutdown=settings.drain_timeout_s,  # type: ignore[arg-type]
        **tls_options(settings),  # type: ignore[arg-type]
    )
    runtime = runtime_of(app)
    server = _Server(config, runtime, url, on_ready, announce=announce, ticker=app.hot.ticker)
    quiet = _AlreadyReported(runtime)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_STARTUP_FAILURE
        if not runtime.startup_error:
            logger.error("the runtime did not start (exit code %d)", code)
        return code
    finally:
        uvicorn_log.removeFilter(quiet)
    if server.grpc_failed:
        return EXIT_USAGE
    _exit_if_stuck()
    return 0


class _AlreadyReported(logging.Filter):
    """Drops uvicorn's "Application startup failed" once the cause was logged in one line."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.runtime.startup_error and record.getMessage().startswith(
            "Application startup failed"
        ))


def _exit_if_stuck() -> None:
    """Exit now if a model call is still running after the drain (it cannot be cancelled).

    Interpreter shutdown joins worker threads, so a call that never returns would keep the
    process alive until Kubernetes kills it; the drain timeout has passed, so exit 0 now.
    """
    stuck = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and thread.is_alive() and not thread.daemon
    ]
    if stuck:
        logger.error("exiting with threads still busy: %s", ", ".join(stuck))
        logging.shutdown()
        os._exit(0)


def http_protocol(
    app: RuntimeApp,
    settings: RuntimeSettings,
    missing_internals: Callable[[], list[str]] | None = None,
) -> type[asyncio.Protocol] | str:
    """The protocol uvicorn serves HTTP with: the direct path's, unless it is off or unsafe.

    ``missing_internals`` (fence.missing_internals by default) lists what the direct path
    needs from uvicorn and this uvicorn lacks; then every request goes through uvicorn's
    plain httptools protocol and ASGI, with a warning, rather than failing under load.
    """
    if not settings.http_direct:
        return "httptools"
    from modelplane_runtime.http.direct import fence

    missing = (missing_internals or fence.missing_internals)()
    if missing:
        logger.warning(
            "uvicorn %s lacks what the direct HTTP path uses (%s): serving every request "
            "through ASGI", uvicorn.__version__, ", ".join(missing),
            extra={"uvicorn": uvicorn.__version__, "missing": missing},
        )
        return "httptools"
    from modelplane_runtime.http.direct.connection import connection_class

    return connection_class(app.hot)
