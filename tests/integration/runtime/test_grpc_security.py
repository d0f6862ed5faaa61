"""gRPC with bearer tokens and TLS (the HTTPS certificate): calls need ``authorization:
Bearer`` metadata (UNAUTHENTICATED otherwise), health, ServerLive/ServerReady and reflection
stay open, the certificate verifies, and a plaintext client cannot talk to the TLS port.
Also: a taken gRPC port fails start-up in one line, like a taken HTTP port.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.fixtures.runtime_server import (
    RuntimeServer,
    grpc_args,
    launch_runtime,
    serve_command,
)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(
    demo_model_dir: Path,
    runtime_log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    certificate: tuple[Path, Path],
) -> Iterator[RuntimeServer]:
    cert, key = certificate
    tokens = tmp_path_factory.mktemp("tokens")
    (tokens / "client").write_text(TOKEN + "\n")
    env = {
        "MODELPLANE_AUTH_TOKENS_DIR": str(tokens),
        "MODELPLANE_TLS_CERT_FILE": str(cert),
        "MODELPLANE_TLS_KEY_FILE": str(key),
    }
    verify = ssl.create_default_context(cafile=str(cert))
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo", *grpc_args()],
                        env=env, verify=verify) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server: RuntimeServer, certificate: tuple[Path, Path]) -> Iterator[grpc.Channel]:
    cert, _ = certificate
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(server.grpc_target, credentials) as secure:
        yield secure


def _infer() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="demo")
    request.inputs.add(name="inputs", datatype="FP32", shape=[1, 8])
    request.raw_input_contents.append(bytes(32))
    return request


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        pytest.param((), "missing bearer token", id="none"),
        pytest.param((("authorization", "Bearer wrong"),), "invalid bearer token", id="wrong"),
        pytest.param((("authorization", TOKEN),), "invalid bearer token", id="no-scheme"),
    ],
)
def test_calls_need_the_token(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...], words: str
) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    for call, request in ((stub.ModelInfer, _infer()),
                          (stub.ModelMetadata, service_pb2.ModelMetadataRequest(name="demo")),
                          (stub.ServerMetadata, service_pb2.ServerMetadataRequest())):
        with pytest.raises(grpc.RpcError) as caught:
            call(request, metadata=metadata, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert words in (caught.value.details() or "")
    served = stub.ModelInfer(_infer(), metadata=(("authorization", f"Bearer {TOKEN}"),),
                             timeout=30)
    assert len(served.raw_output_contents[0]) == 4


def test_health_liveness_and_reflection_stay_open(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    assert stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=10).ready
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(reflect.ServerReflectionInfo(iter([ask]), timeout=10))
    assert "inference.GRPCInferenceService" in {
        service.name for service in answer.list_services_response.service
    }


def test_plaintext_client_cannot_use_the_tls_port(server: RuntimeServer) -> None:
    with grpc.insecure_channel(server.grpc_target) as plain:
        health = health_pb2_grpc.HealthStub(plain)
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_taken_grpc_port_fails_startup(demo_model_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            serve_command(demo_model_dir, "--grpc-port", str(port)),
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"cannot bind 127.0.0.1:{port} for gRPC" in result.stderr
    assert "Traceback" not in result.stderr
