"""What a failed container said, as one line fit for a condition and an Event (pure).

The model's containers end with ``terminationMessagePolicy: FallbackToLogsOnError``: when
one fails without writing ``/dev/termination-log``, the kubelet takes the end of its log
(the last 80 lines or 2 KiB, whichever is less) as its termination message. For the
fetcher (``modelplane fetch``) that is its JSON progress lines and, last, the one plain
line it prints on stderr before exiting; for the runtime, JSON log lines, the error among
them. ``detail`` picks the line a person needs, and ``redact`` makes sure that a
credential that reached a log anyway (a presigned URL, a connection string) goes no
further: the storage code already keeps them out of its messages, this is the second lock.
"""

from __future__ import annotations

import json
import re

PROGRAM_PREFIX = "modelplane: "
"""How the CLI starts its one line on stderr; the condition names the step instead."""
MAX_DETAIL_CHARS = 600
"""Longest detail quoted in a condition (Events are cut at 1 KiB by the API server)."""

_QUERY = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'"]*)\?[^\s'"]*""")
_SECRET_PAIRS = re.compile(
    r"(?i)\b(AccountKey|SharedAccessSignature|sig|aws_secret_access_key|aws_session_token"
    r"|client_secret|password|token)=([^;&\s'\"]+)")
_PRIVATE_KEY = re.compile(r'("private_key(?:_id)?"\s*:\s*")[^"]*(")')
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
                  re.DOTALL)
_ERROR_LEVELS = frozenset({"error", "critical", "fatal"})


def redact(text: str) -> str:
    """``text`` without URL query strings, key=value secrets and private keys."""
    text = _PEM.sub("<private key>", text)
    text = _QUERY.sub(r"\1?...", text)
    text = _SECRET_PAIRS.sub(r"\1=***", text)
    return _PRIVATE_KEY.sub(r"\1***\2", text)


def _json_message(line: str) -> tuple[str, str] | None:
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("message"), str):
        return None
    return str(entry.get("level", "")).lower(), entry["message"]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS - 3] + "..."


def detail(message: str | None) -> str | None:
    """The line of a termination message worth showing, redacted; None if it says nothing.

    The last plain (non-JSON) line wins, since a command's final word is its error; if
    every line is a JSON log record, the last one logged at error level, else the last.
    """
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return None
    records = [_json_message(line) for line in lines]
    if records[-1] is None:
        return _cut(redact(lines[-1].removeprefix(PROGRAM_PREFIX)))
    errors = [text for record in records if record is not None
              for level, text in [record] if level in _ERROR_LEVELS]
    last = records[-1]
    chosen = errors[-1] if errors else (last[1] if last is not None else lines[-1])
    return _cut(redact(chosen))
