"""Raw-socket HTTP/1.1 helpers for the protocol tests (test_protocol*.py); no tests here.

``Wire`` writes bytes and reads whole responses, checking each has exactly one
Content-Length; the ``check_*`` helpers compare answers with the demo model in-process.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tests.fixtures.models import demo_predict

ROWS = np.arange(16, dtype=np.float32).reshape(2, 8) / 10
V1 = "/v1/models/demo:predict"
V2 = "/v2/models/demo/infer"
PREDICT = json.dumps({"instances": ROWS.tolist()}).encode()
INFER = json.dumps(
    {
        "inputs": [
            {"name": "inputs", "shape": [2, 8], "datatype": "FP32", "data": ROWS.ravel().tolist()}
        ]
    }
).encode()


@dataclass
class Reply:
    """One HTTP response as it came off the wire (header names lower-cased)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        return [value for key, value in self.headers if key == name]

    def one(self, name: str) -> str:
        """The value of a header that must appear exactly once."""
        values = self.all(name)
        assert len(values) == 1, f"{name}: {values} in {self.headers}"
        return values[0]

    def json(self) -> object:
        """The body as JSON, after checking the content type says so."""
        assert self.one("content-type") == "application/json", self.headers
        return json.loads(self.body)


class Wire:
    """A raw client connection: write bytes, read whole responses, notice the close."""

    def __init__(self, port: int, timeout: float = 15.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"server closed the connection; unread: {self.buffer!r}")
        self.buffer += chunk

    def reply(self) -> Reply:
        """The next response (a ``100 Continue`` interim one included), whole."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ")
        assert version == "HTTP/1.1", status_line
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines)
        ]
        reply = Reply(int(status), headers, b"")
        if reply.status == 100:
            return reply
        length = int(reply.one("content-length"))
        while len(self.buffer) < length:
            self._fill()
        reply.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return reply

    def closed(self) -> bool:
        """True once the server closed its end (after any unread responses)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def http_request(
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    version: str = "HTTP/1.1",
) -> bytes:
    """A request's bytes; a body gets a Content-Length unless the headers set framing."""
    lines = [f"{method} {path} {version}", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers]
    framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)
    if body is not None and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked(*parts: bytes) -> bytes:
    """``parts`` in chunked transfer coding, with the last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


def check_predict(reply: Reply, rows: np.ndarray = ROWS) -> None:
    """A 200 whose v1 predictions match the demo model computed in-process."""
    assert reply.status == 200, reply
    body = reply.json()
    assert isinstance(body, dict)
    np.testing.assert_allclose(body["predictions"], demo_predict(rows), rtol=1e-6)


def check_infer(reply: Reply) -> None:
    """A 200 whose v2 outputs match the demo model computed in-process."""
    assert reply.status == 200, reply
    body = reply.json()
    assert isinstance(body, dict)
    (output,) = body["outputs"]
    assert output["shape"] == [2, 1]
    np.testing.assert_allclose(np.reshape(output["data"], (2, 1)), demo_predict(ROWS), rtol=1e-6)


def check_error(reply: Reply, status: int, words: str) -> None:
    """A JSON ``{"error": ...}`` answer with ``status`` that mentions ``words``."""
    assert reply.status == status, reply
    body = reply.json()
    assert isinstance(body, dict)
    assert words in body["error"], body
