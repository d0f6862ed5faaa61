"""The runtime's gRPC server: one ``grpc.aio`` server on the HTTP server's event loop.

server/process.py starts it once the model is loaded and uvicorn listens (the ready line
follows), and stops it on SIGTERM together with uvicorn: readiness is already false (the
signal handler set ``draining``), so health says NOT_SERVING and new model calls are
refused UNAVAILABLE; ``stop(grace)`` stops accepting calls and sends GOAWAY, lets the calls
in flight finish within the drain timeout, and only then does the data plane close.

Settings shared with HTTP: the port's host, the TLS certificate and key (the same files as
HTTPS), the body limit as the largest message accepted (``grpc.max_receive_message_length``:
grpc answers RESOURCE_EXHAUSTED beyond it), and the bearer tokens. ``grpc.so_reuseport``
lets ``--workers N`` share one port, as their HTTP server shares one socket; the process
reserves the port first so that a port already taken fails start-up (server/lifecycle.py).
Connections are recycled after ``MAX_CONNECTION_AGE_MS`` so that clients balancing with
``round_robin`` over the headless Service re-resolve and find replicas added since.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from modelplane_runtime.grpc import health, inference, models, predict
from modelplane_runtime.grpc.rpc import Calls
from modelplane_runtime.logs import RequestIds
from modelplane_runtime.rules import Ticker
from modelplane_runtime.serving import Runtime
from modelplane_runtime.settings import RuntimeSettings

logger = logging.getLogger("modelplane.grpc")

SERVICES: Final = (predict.SERVICE, models.SERVICE, inference.SERVICE)
"""The services a client calls (health and reflection besides)."""
MAX_CONNECTION_AGE_MS: Final = 5 * 60 * 1000
KEEPALIVE_MIN_PING_MS: Final = 10_000
"""Clients may ping this often without being told to calm down (GOAWAY too_many_pings)."""


def server_options(settings: RuntimeSettings) -> list[tuple[str, Any]]:
    """The channel arguments of the server (see the module docstring)."""
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", -1),
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", int(settings.drain_timeout_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MIN_PING_MS),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def credentials(settings: RuntimeSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the HTTPS certificate and key, or None for plaintext (h2c)."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None or key is None:
        return None
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])


def target(host: str, port: int) -> str:
    """``host:port`` as grpc spells an address (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """Builds, starts and drains the gRPC server of one runtime process."""

    def __init__(self, runtime: Runtime, ticker: Ticker, ids: RequestIds | None = None) -> None:
        self.runtime = runtime
        self.calls = Calls(runtime, ids or RequestIds(), ticker)
        self.health = health.Health(runtime, SERVICES)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        """Bind ``host``:``port`` and start serving (on the running loop); the bound port."""
        settings = self.runtime.settings
        server = grpc.aio.server(options=server_options(settings))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            predict.PredictionService(self.runtime, self.calls), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            models.ModelService(self.runtime, self.calls), server
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            inference.InferenceService(self.runtime, self.calls), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICES, health.SERVICE, reflection.SERVICE_NAME), server
        )
        address = target(host, port)
        tls = credentials(settings)
        try:
            bound = (
                server.add_secure_port(address, tls)
                if tls is not None
                else server.add_insecure_port(address)
            )
        except RuntimeError as exc:  # grpc's "Failed to bind to address"
            raise OSError(f"cannot bind {address} for gRPC: {exc}") from None
        await server.start()
        self._server = server
        self.port = bound
        logger.info(
            "gRPC serving on %s", target(host, bound),
            extra={"grpc_port": bound, "tls": tls is not None},
        )
        return bound

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls, let those in flight finish within ``grace_s``, then close."""
        self.health.changed()
        server = self._server
        if server is None:
            return
        self._server = None
        await server.stop(grace_s)
        logger.info("gRPC stopped", extra={"event": "grpc_stopped"})
