"""Settings: flags and MODELPLANE_BALANCER_* variables, and what bad values say."""

from __future__ import annotations

import pytest
from modelplane_balancer.settings import Address, SettingsError, load_settings, parse_address


def test_addresses() -> None:
    assert parse_address("127.0.0.2:8080") == Address("127.0.0.2", 8080)
    assert parse_address("[::1]:9000").key == "[::1]:9000"
    assert parse_address("model-0.svc:80").host == "model-0.svc"
    for bad in ("nohost", "host:0", "host:99999", ":80", "a b:1"):
        with pytest.raises(ValueError, match=r"HOST:PORT|range"):
            parse_address(bad)


def test_static_replicas_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_BALANCER_CANARY_PERCENT", "7")
    settings = load_settings(backends="10.0.0.1:1, 10.0.0.2:2", weights="3,1",
                             canary_backends="10.0.0.3:3", strategy="Weighted")
    assert settings.static and settings.canary_percent == 7 and settings.strategy == "weighted"
    assert [(a.key, w) for a, w in settings.static_replicas("stable")] == [
        ("10.0.0.1:1", 3), ("10.0.0.2:2", 1)]
    assert [(a.key, w) for a, w in settings.static_replicas("canary")] == [("10.0.0.3:3", 1)]
    assert load_settings(model="m").strategy == "latency-aware"


@pytest.mark.parametrize(("given", "needle"), [
    ({"backends": "x"}, "--backends"),
    ({"backends": "h:1", "weights": "0"}, "--weights"),
    ({"backends": "h:1", "weights": "1,1"}, "weights: one weight per entry of backends"),
    ({"backends": "h:1", "canary_percent": 101}, "--canary-percent"),
    ({"model": "m", "tls_cert_file": "/c.pem"}, "HTTPS needs both"),
    ({"canary_backends": "h:1", "model": "m"}, "needs backends too"),
    ({}, "name the ModelDeployment"),
    ({"model": "m", "probe_path": "ready"}, "--probe-path"),
])
def test_bad_values_name_their_source(given: dict[str, object], needle: str) -> None:
    with pytest.raises(SettingsError, match="invalid settings") as caught:
        load_settings(**given)
    assert needle in str(caught.value)


def test_bad_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_BALANCER_MAX_ATTEMPTS", "zero")
    with pytest.raises(SettingsError, match="MODELPLANE_BALANCER_MAX_ATTEMPTS"):
        load_settings(model="m")
