"""Bearer-token auth (a mounted Secret folder) and HTTPS, against real server processes.

The token folder is laid out the way the kubelet mounts a Secret: visible names are
symlinks into a hidden ``..data`` link to a timestamped folder, swapped atomically on
update. The certificate is made by the real ``openssl`` command and verified by httpx.
"""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.fixtures.models import demo_predict
from tests.fixtures.polling import eventually
from tests.fixtures.runtime_server import RuntimeServer, launch_runtime, serve_command

ROW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
V1_BODY = {"instances": [ROW]}
V2_BODY = {"inputs": [{"name": "inputs", "shape": [1, 8], "datatype": "FP32", "data": ROW}]}


def _mount_secret(folder: Path, tokens: dict[str, str], generation: int) -> None:
    """Write ``tokens`` as the kubelet's atomic writer does: a new hidden folder, then swap."""
    folder.mkdir(exist_ok=True)
    data = folder / f"..2026_{generation:04d}"
    data.mkdir()
    for name, token in tokens.items():
        (data / name).write_text(token)
    link = folder / "..data_tmp"
    link.symlink_to(data.name)
    os.replace(link, folder / "..data")
    for name in tokens:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("secret") / "tokens"
    _mount_secret(folder, {"alice": "alice-token\n", "bob": "  bob-token  "}, 1)
    (folder / ".hidden").write_text("hidden-token")  # hidden entries are not tokens
    return folder


@pytest.fixture(scope="module")
def auth_server(
    demo_model_dir: Path, runtime_log_dir: Path, token_dir: Path
) -> Iterator[RuntimeServer]:
    env = {"MODELPLANE_AUTH_TOKENS_DIR": str(token_dir)}
    with launch_runtime(demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env) as server:
        yield server


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PROTECTED = [
    ("POST", "/v1/models/demo:predict", V1_BODY),
    ("POST", "/v1/models/demo/versions/1:predict", V1_BODY),
    ("GET", "/v1/models/demo", None),
    ("GET", "/v1/models/demo/metadata", None),
    ("POST", "/v2/models/demo/infer", V2_BODY),
    ("GET", "/v2/models/demo", None),
    ("GET", "/v2/models/demo/ready", None),
    ("GET", "/v2", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_protected_routes_need_a_valid_token(
    auth_server: RuntimeServer, method: str, path: str, body: object
) -> None:
    with auth_server.client() as client:
        for headers in ({}, _bearer("wrong"), _bearer("hidden-token"), {"Authorization": "alice"}):
            refused = client.request(method, path, json=body, headers=headers)
            assert refused.status_code == 401, (headers, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "bearer token" in refused.json()["error"]
        for token in ("alice-token", "bob-token"):
            allowed = client.request(method, path, json=body, headers=_bearer(token))
            assert allowed.status_code == 200, allowed.text


def test_a_token_gets_real_predictions(auth_server: RuntimeServer) -> None:
    want = demo_predict(np.array([ROW], dtype=np.float32))
    with auth_server.client(headers=_bearer("alice-token")) as client:
        v1 = client.post("/v1/models/demo:predict", json=V1_BODY).json()
        v2 = client.post("/v2/models/demo/infer", json=V2_BODY).json()
    np.testing.assert_allclose(v1["predictions"], want, rtol=1e-6)
    np.testing.assert_allclose(np.reshape(v2["outputs"][0]["data"], (1, 1)), want, rtol=1e-6)


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/metrics"])
def test_probes_and_metrics_stay_open(auth_server: RuntimeServer, path: str) -> None:
    with auth_server.client() as client:
        assert client.get(path).status_code == 200


def test_refusals_are_counted(auth_server: RuntimeServer) -> None:
    with auth_server.client() as client:
        client.post("/v1/models/demo:predict", json=V1_BODY)
        text = client.get("/metrics").text
    assert 'code="401",model="demo",protocol="v1"' in text


def test_a_rotated_secret_is_picked_up(auth_server: RuntimeServer, token_dir: Path) -> None:
    # The kubelet swaps ..data to a new folder; bob's token is revoked, carol's added.
    _mount_secret(token_dir, {"alice": "alice-token", "carol": "carol-token"}, 2)
    os.unlink(token_dir / "bob")
    with auth_server.client() as client:

        def carol_in_bob_out() -> bool:
            carol = client.get("/v2/models/demo", headers=_bearer("carol-token")).status_code
            bob = client.get("/v2/models/demo", headers=_bearer("bob-token")).status_code
            return (carol, bob) == (200, 401)

        eventually(carol_in_bob_out, timeout=20, what="carol's token accepted, bob's refused")
        assert client.get("/v2/models/demo", headers=_bearer("alice-token")).status_code == 200


def _start_fails(model: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        serve_command(model), capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("layout", ["missing", "empty", "blank-files-only"])
def test_no_tokens_at_start_up_refuses_to_start(
    demo_model_dir: Path, tmp_path: Path, layout: str
) -> None:
    folder = tmp_path / "tokens"
    if layout != "missing":
        folder.mkdir()
    if layout == "blank-files-only":
        (folder / "token").write_text("  \n")
        (folder / ".secret").write_text("hidden")
    result = _start_fails(demo_model_dir, {"MODELPLANE_AUTH_TOKENS_DIR": str(folder)})
    assert result.returncode == 2, result.stderr
    assert f"MODELPLANE_AUTH_TOKENS_DIR={folder}" in result.stderr


# --- HTTPS ----------------------------------------------------------------------------------


def test_https_with_a_verified_certificate(
    demo_model_dir: Path, runtime_log_dir: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    env = {"MODELPLANE_TLS_CERT_FILE": str(cert), "MODELPLANE_TLS_KEY_FILE": str(key)}
    with launch_runtime(
        demo_model_dir, runtime_log_dir, ["--name", "demo"], env=env,
        verify=ssl.create_default_context(cafile=str(cert)),
    ) as server:
        assert server.url.startswith("https://127.0.0.1:")
        with server.client() as client:  # verifies the chain and the IP against cert.pem
            answer = client.post("/v1/models/demo:predict", json=V1_BODY)
            assert answer.status_code == 200
            want = demo_predict(np.array([ROW], dtype=np.float32))
            np.testing.assert_allclose(answer.json()["predictions"], want, rtol=1e-6)
        with httpx.Client(timeout=10) as default_trust, pytest.raises(httpx.ConnectError):
            default_trust.get(server.url + "/v2/health/ready")  # self-signed: not trusted
        plain = server.url.replace("https://", "http://")
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):
            client.get(plain + "/v2/health/ready").raise_for_status()


@pytest.mark.parametrize("given", ["cert", "key"])
def test_half_a_tls_configuration_refuses_to_start(
    demo_model_dir: Path, certificate: tuple[Path, Path], given: str
) -> None:
    cert, key = certificate
    env = (
        {"MODELPLANE_TLS_CERT_FILE": str(cert)}
        if given == "cert"
        else {"MODELPLANE_TLS_KEY_FILE": str(key)}
    )
    result = _start_fails(demo_model_dir, env)
    assert result.returncode == 2, result.stderr
    assert "HTTPS needs both" in result.stderr
    missing = "MODELPLANE_TLS_KEY_FILE" if given == "cert" else "MODELPLANE_TLS_CERT_FILE"
    assert f"but {missing} is not" in result.stderr


def test_a_missing_certificate_file_refuses_to_start(demo_model_dir: Path, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not used")
    env = {
        "MODELPLANE_TLS_CERT_FILE": str(tmp_path / "nope.pem"),
        "MODELPLANE_TLS_KEY_FILE": str(key),
    }
    result = _start_fails(demo_model_dir, env)
    assert result.returncode == 2, result.stderr
    assert f"MODELPLANE_TLS_CERT_FILE={tmp_path / 'nope.pem'}: no such file" in result.stderr

