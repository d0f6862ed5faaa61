"""The uvicorn fence: the direct path runs only on a uvicorn that has what it uses."""

from __future__ import annotations

import logging

import pytest
from modelplane_runtime.http.app import create_app
from modelplane_runtime.http.direct.connection import DirectConnection
from modelplane_runtime.http.direct.fence import missing_internals
from modelplane_runtime.server.process import http_protocol
from modelplane_runtime.settings import RuntimeSettings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def test_the_installed_uvicorn_has_every_internal_the_direct_path_uses() -> None:
    assert missing_internals() == []


def test_a_renamed_method_or_attribute_is_reported() -> None:
    class Renamed(HttpToolsProtocol):
        _start_asgi_task = None  # as if a release renamed it

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            del self.pipeline

    assert missing_internals(protocol_class=Renamed) == [
        "HttpToolsProtocol._start_asgi_task", "HttpToolsProtocol().pipeline"
    ]


def test_a_changed_constructor_is_reported() -> None:
    class Changed(HttpToolsProtocol):
        def __init__(self, config: object) -> None:  # a new signature
            raise AssertionError("not called with uvicorn's arguments")

    (problem,) = missing_internals(protocol_class=Changed)
    assert problem.startswith("HttpToolsProtocol(): TypeError")


def test_the_server_falls_back_to_plain_httptools_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(RuntimeSettings())
    direct = http_protocol(app, RuntimeSettings())
    assert isinstance(direct, type) and issubclass(direct, DirectConnection)
    assert http_protocol(app, RuntimeSettings(http_direct=False)) == "httptools"
    caplog.set_level(logging.WARNING)
    fallback = http_protocol(app, RuntimeSettings(), lambda: ["HttpToolsProtocol.cycle"])
    assert fallback == "httptools"
    (record,) = [r for r in caplog.records if "direct HTTP path" in r.getMessage()]
    assert "HttpToolsProtocol.cycle" in record.getMessage()
