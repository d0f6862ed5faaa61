"""Operator settings: MODELPLANE_OPERATOR_* variables, flags over variables, clear errors."""

from __future__ import annotations

import pytest
from modelplane_operator.main import register
from modelplane_operator.settings import SettingsError, load_settings
from modelplane_runtime import contract


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NAMESPACES", "SCRAPE_INTERVAL_S", "SCRAPE_PORT", "RUNTIME_IMAGE"):
        monkeypatch.delenv(f"MODELPLANE_OPERATOR_{name}", raising=False)
    settings = load_settings()
    assert settings.namespaces == ()  # cluster-wide
    assert settings.scrape_interval_s == 10.0
    assert settings.scrape_port == contract.HTTP_PORT
    assert settings.runtime_image


def test_variables_are_read_and_namespaces_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_OPERATOR_NAMESPACES", "ml, serving ,")
    monkeypatch.setenv("MODELPLANE_OPERATOR_RUNTIME_GPU_IMAGE", "example.test/runtime:1-gpu")
    monkeypatch.setenv("MODELPLANE_OPERATOR_SCRAPE_INTERVAL_S", "2.5")
    monkeypatch.setenv("MODELPLANE_OPERATOR_LOG_LEVEL", "DEBUG")
    settings = load_settings()
    assert settings.namespaces == ("ml", "serving")
    assert settings.scrape_interval_s == 2.5
    assert settings.log_level == "debug"
    assert settings.runtime_gpu_image == "example.test/runtime:1-gpu"


def test_runtime_variables_do_not_leak_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.ENV_LOG_LEVEL, "error")  # the runtime's, not ours
    monkeypatch.delenv("MODELPLANE_OPERATOR_LOG_LEVEL", raising=False)
    assert load_settings().log_level == "info"


def test_a_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_OPERATOR_SCRAPE_TIMEOUT_S", "-1")
    with pytest.raises(SettingsError, match="MODELPLANE_OPERATOR_SCRAPE_TIMEOUT_S"):
        load_settings()


def test_a_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(SettingsError, match="--http-port"):
        load_settings(http_port=70000)


def test_cli_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["operator", "-n", "a", "--namespace", "b", "--standalone"])
    assert args.namespaces == ["a", "b"]
    assert args.standalone is True
    assert parser.parse_args(["operator"]).standalone is None  # unset: the variable decides
