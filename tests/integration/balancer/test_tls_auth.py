"""HTTPS on both sides and bearer tokens: clients reach the balancer over HTTPS, the balancer
reaches runtimes that serve HTTPS and check tokens; ``Authorization`` passes through."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.runtime_server import RuntimeServer
from tests.integration.balancer.conftest import (
    address_of,
    launch_balancer,
    launch_replica_runtime,
    stop_replica,
)

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def secure_replicas(demo_model_dir: Path, balancer_log_dir: Path,
                    certificate: tuple[Path, Path],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RuntimeServer]]:
    """Two runtimes serving HTTPS (the test certificate is for 127.0.0.1) with a token."""
    tokens = tmp_path_factory.mktemp("tokens")
    (tokens / "client").write_text(TOKEN)
    cert, key = certificate
    env = {"MODELPLANE_TLS_CERT_FILE": str(cert), "MODELPLANE_TLS_KEY_FILE": str(key),
           "MODELPLANE_AUTH_TOKENS_DIR": str(tokens)}
    verify = ssl.create_default_context(cafile=str(cert))
    servers = [launch_replica_runtime(demo_model_dir, balancer_log_dir, "127.0.0.1", "--name",
                                      "demo", env=env, verify=verify) for _ in range(2)]
    try:
        yield servers
    finally:
        for server in servers:
            stop_replica(server)


def test_https_both_ways_with_tokens(secure_replicas: list[RuntimeServer],
                                     balancer_log_dir: Path,
                                     certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    verify = ssl.create_default_context(cafile=str(cert))
    args = ["--model", "demo", "--backends", ",".join(address_of(s) for s in secure_replicas),
            "--strategy", "round-robin", "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--upstream-tls", "--upstream-ca-file", str(cert)]
    with launch_balancer(balancer_log_dir, args, verify=verify, scheme="https") as process:
        rows = np.ones((2, 8), dtype=np.float32)
        with process.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for _ in range(4):
                answer = client.post("/v1/models/demo:predict", json={"instances": rows.tolist()})
                assert answer.status_code == 200, answer.text
                np.testing.assert_allclose(answer.json()["predictions"], demo_predict(rows),
                                           rtol=1e-5, atol=1e-6)
        with process.client() as anonymous:
            refused = anonymous.post("/v1/models/demo:predict", json={"instances": rows.tolist()})
            assert refused.status_code == 401  # the runtime's answer, passed through
            assert anonymous.get("/healthz").status_code == 200  # the balancer's own
        shares = process.per_replica(code="200")
        assert len([k for k in shares if k]) == 2, shares
        with pytest.raises(httpx.TransportError):  # plain HTTP to the HTTPS port
            httpx.get(process.url.replace("https", "http") + "/healthz", timeout=5)


def test_unverifiable_replicas_are_not_used(secure_replicas: list[RuntimeServer],
                                            balancer_log_dir: Path) -> None:
    """Without the CA the replicas' certificate fails verification: no request reaches them."""
    args = ["--model", "demo", "--backends", address_of(secure_replicas[0]), "--upstream-tls",
            "--no-replica-wait-s", "0.2"]
    with launch_balancer(balancer_log_dir, args) as process, process.client() as client:
        answer = client.get("/v2/health/ready")
    assert answer.status_code in (502, 503)
    assert "error" in answer.json()
