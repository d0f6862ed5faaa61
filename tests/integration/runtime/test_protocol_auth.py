"""Bearer tokens on the wire, on the direct path and through ASGI: 401s are JSON with a
``WWW-Authenticate: Bearer`` challenge, the right token is served, probes need none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.runtime_server import RuntimeServer, launch_runtime
from tests.fixtures.wire import (
    INFER,
    PREDICT,
    V1,
    V2,
    Wire,
    check_error,
    check_infer,
    check_predict,
    http_request,
)

TOKEN = "s3cret-token"


@pytest.fixture(scope="module", params=["direct", "asgi"])
def server(
    request: pytest.FixtureRequest,
    demo_model_dir: Path,
    runtime_log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RuntimeServer]:
    """The demo model behind one accepted token, on either request path."""
    tokens = tmp_path_factory.mktemp("tokens")
    (tokens / "client").write_text(TOKEN + "\n")
    env = {
        "MODELPLANE_HTTP_DIRECT": str(request.param == "direct").lower(),
        "MODELPLANE_AUTH_TOKENS_DIR": str(tokens),
    }
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env) as running:
        yield running


@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        pytest.param(None, "missing bearer token", id="none"),
        pytest.param("Bearer wrong-token", "invalid bearer token", id="wrong"),
        pytest.param(TOKEN, "invalid bearer token", id="no-scheme"),
    ],
)
@pytest.mark.parametrize(("path", "body"), [(V1, PREDICT), (V2, INFER)], ids=["v1", "v2"])
def test_refused_without_the_right_token(
    server: RuntimeServer, path: str, body: bytes, authorization: str | None, words: str
) -> None:
    headers = [] if authorization is None else [("Authorization", authorization)]
    with Wire(server.port) as wire:
        wire.send(http_request("POST", path, body, headers))
        refused = wire.reply()
        check_error(refused, 401, words)
        assert refused.one("www-authenticate") == "Bearer"
        assert refused.one("x-request-id")
        # The refusal leaves the connection usable; the right token is then served.
        wire.send(http_request("POST", path, body, [("Authorization", f"Bearer {TOKEN}")]))
        served = wire.reply()
    (check_predict if path == V1 else check_infer)(served)


def test_pipelined_refusal_and_success_in_order(server: RuntimeServer) -> None:
    good = [("Authorization", f"Bearer {TOKEN}")]
    with Wire(server.port) as wire:
        wire.send(
            http_request("POST", V1, PREDICT)
            + http_request("POST", V1, PREDICT, good)
            + http_request("GET", "/v2/health/ready")
            + http_request("POST", V2, INFER, [("Authorization", "Bearer nope")])
            + http_request("POST", V2, INFER, good)
        )
        check_error(wire.reply(), 401, "missing bearer token")
        check_predict(wire.reply())
        assert wire.reply().json() == {"ready": True}  # probes need no token
        check_error(wire.reply(), 401, "invalid bearer token")
        check_infer(wire.reply())
