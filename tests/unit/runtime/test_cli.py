"""The ``modelplane`` command line, through ``main()``: errors name what the user typed and
show the usage of the command they were typing; help says what each command and flag does.

Only paths that end before a server starts are driven here; serving is tested as a process
in tests/integration/runtime/test_cli.py.
"""

from __future__ import annotations

import os
import re

import pytest
from modelplane_runtime import __version__
from modelplane_runtime.cli import main
from modelplane_runtime.settings import RuntimeSettings


@pytest.fixture(autouse=True)
def _no_modelplane_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MODELPLANE_"):
            monkeypatch.delenv(name)


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command line that ends before serving."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "usage"),
    [(["serve", "./m", "--bogus", "3"], "usage: modelplane serve "),
     (["serve", "--bogus", "./m"], "usage: modelplane serve "),
     (["demo", "--bogus"], "usage: modelplane demo "),
     (["fetch", "demo://", "d", "--bogus"], "usage: modelplane fetch "),
     (["render", "x.yaml", "--bogus"], "usage: modelplane render "),
     (["--bogus", "serve", "./m"], "usage: modelplane [-h] [--version] COMMAND")],
)
def test_an_unknown_flag_shows_the_usage_of_the_command_it_was_given_to(
    argv: list[str], usage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _exit(argv, capsys)
    assert code == 2
    assert err.startswith(usage), err
    assert "unrecognized arguments: --bogus" in err


def test_flags_are_never_abbreviated(capsys: pytest.CaptureFixture[str]) -> None:
    # `--model` would otherwise become --model-version, and `--version` --versions.
    code, _, err = _exit(["serve", "./m", "--model", "3"], capsys)
    assert code == 2
    assert "unrecognized arguments: --model 3" in err


@pytest.mark.parametrize("argv", [["--version"], ["serve", "--version"],
                                  ["serve", "./m", "--version"], ["demo", "--version"]])
def test_version_is_the_program_version_everywhere(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit(argv, capsys)[:2] == (0, f"modelplane {__version__}\n")


def test_version_with_a_value_points_to_model_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _exit(["serve", "./m", "--version", "3"], capsys)
    assert (code, out) == (2, "")
    assert "usage: modelplane serve" in err
    assert "--version takes no value" in err
    assert "use --model-version N (e.g. --model-version 3)" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["serve", "./m", "--versions", "banana"],
      "modelplane serve: --versions 'banana': expected latest, latest:N, all, or version "
      "numbers like 1,3\n"),
     (["serve", "./m", "--labels", "stable"],
      "modelplane serve: --labels 'stable': 'stable' is not label=version (e.g. stable=1)\n"),
     (["serve", "./m", "--model-version", "-1"],
      "modelplane serve: --model-version -1: Input should be greater than or equal to 0\n"),
     (["demo", "--max-batch-size", "0"],
      "modelplane demo: --max-batch-size 0: Input should be greater than or equal to 1\n"),
     (["serve", "./m", "--request-timeout-s", "0"],
      "modelplane serve: --request-timeout-s 0.0: Input should be greater than 0\n")],
)
def test_a_bad_flag_value_is_one_line_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit(argv, capsys) == (2, "", message)


def test_a_bad_variable_is_named_as_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELPLANE_MODEL_VERSIONS", "banana")
    code, _, err = _exit(["serve", "./m"], capsys)
    assert code == 2
    assert err == ("modelplane serve: MODELPLANE_MODEL_VERSIONS='banana': expected latest, "
                   "latest:N, all, or version numbers like 1,3\n")


def test_an_int_flag_that_is_not_a_number_names_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _exit(["serve", "./m", "--model-version", "banana"], capsys)
    assert code == 2
    assert "argument --model-version: invalid int value: 'banana'" in err


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, _ = _exit([*argv, "--help"], capsys)
    assert code == 0
    return re.sub(r"\s+", " ", out)  # argparse wraps to the terminal's width


def test_serve_help_describes_the_command_and_how_the_name_is_chosen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(["serve"], capsys)
    assert "Serve a model over HTTP" in text
    assert "TensorFlow Serving model repository" in text
    assert 'a bare version folder takes its parent\'s name (./mymodel/1 serves "mymodel")' in text
    assert "examples:" in text
    assert "--format {auto,savedmodel,keras} how to load PATH" in text
    assert "--log-level {error,warning,info,debug} logs are JSON lines on stderr" in text
    assert "--model-version N serve only this version" in text
    assert not re.search(r"--version\b(?!s)", text.replace("--model-version", "")), "hidden"


@pytest.mark.parametrize(
    ("flag", "field"),
    [("--max-batch-size", "max_batch_size"), ("--max-latency-ms", "max_latency_ms"),
     ("--max-body-bytes", "max_body_bytes"), ("--max-rows-per-request", "max_rows_per_request"),
     ("--request-timeout-s", "request_timeout_s"), ("--drain-timeout-s", "drain_timeout_s"),
     ("--workers", "workers"), ("--port", "port"), ("--log-level", "log_level"),
     ("--poll-seconds", "poll_seconds")],
)
def test_help_shows_each_default_and_variable_as_the_settings_define_them(
    flag: str, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    default = RuntimeSettings.model_fields[field].default
    for command in ("serve", "demo"):
        text = _help([command], capsys)
        entry = text.split(f" {flag} ", 1)[1].split(" --", 1)[0]
        assert f"(default {default}; MODELPLANE_{field.upper()})" in entry, entry


def test_demo_and_fetch_help_describe_their_command(capsys: pytest.CaptureFixture[str]) -> None:
    demo = _help(["demo"], capsys)
    assert "Build the bundled demo model (seed-mlp" in demo
    assert "port 8080, or on a free port when 8080 is taken" in demo
    assert "--name NAME the model's name in URLs; default: seed-mlp" in demo
    fetch = _help(["fetch"], capsys)
    assert "storage initializer" in fetch
    assert "MODELPLANE_STORAGE_BEARER_TOKEN" in fetch
