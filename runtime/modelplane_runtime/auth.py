"""Bearer-token authentication from a mounted Secret folder (``MODELPLANE_AUTH_TOKENS_DIR``).

Every regular file in the folder holds one accepted token (surrounding whitespace
stripped). Kubernetes mounts a Secret as symlinks into a hidden ``..data`` folder that it
swaps atomically on update, so hidden entries are skipped and the folder is re-read when
it changes: at most once per ``RECHECK_S`` a request pays for a few ``stat`` calls, never
for reading files. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

logger = logging.getLogger("modelplane.auth")

RECHECK_S: Final = 1.0
"""How often (at most) the folder is checked for changes; Kubelet syncs Secrets in ~1 min."""


class AuthConfigError(ValueError):
    """The token folder is missing, unreadable or empty at start-up."""


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of the folder and its visible entries (cheap: stats only)."""
    stats = [(".", *_stamp(folder))]
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith("."):
                stats.append((entry.name, *_stamp(Path(entry.path))))
    return tuple(sorted(stats))


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()  # follows the Secret's symlinks into ..data
    except OSError:
        return (-1, -1)
    return (info.st_mtime_ns, info.st_size)


def read_tokens(folder: Path) -> frozenset[bytes]:
    """The tokens in ``folder``: one per visible regular file, whitespace stripped."""
    tokens = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():  # is_file follows symlinks
                continue
            token = Path(entry.path).read_bytes().strip()
            if token:
                tokens.add(token)
    return frozenset(tokens)


class TokenStore:
    """The accepted tokens, reloaded when the folder changes."""

    def __init__(self, folder: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self._clock = clock
        try:
            self._stamp = _fingerprint(folder)
            self._tokens = read_tokens(folder)
        except OSError as exc:
            raise AuthConfigError(
                f"MODELPLANE_AUTH_TOKENS_DIR={folder}: cannot read the token folder: "
                f"{exc.strerror or exc}"
            ) from None
        if not self._tokens:
            raise AuthConfigError(
                f"MODELPLANE_AUTH_TOKENS_DIR={folder}: the folder holds no token (one "
                "non-empty file per accepted token); refusing to serve without authentication"
            )
        self._checked = clock()

    @property
    def tokens(self) -> frozenset[bytes]:
        """The tokens accepted now (after a reload check)."""
        self._refresh()
        return self._tokens

    def accepts(self, authorization: bytes | None) -> bool:
        """True when an ``Authorization`` header value carries an accepted bearer token."""
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        if not token:
            return False
        # Compare with every token, so timing reveals neither a match nor how many matched.
        matched = False
        for accepted in self.tokens:
            matched |= hmac.compare_digest(accepted, token)
        return matched

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._checked < RECHECK_S:
            return
        self._checked = now
        try:
            stamp = _fingerprint(self.folder)
            if stamp == self._stamp:
                return
            tokens = read_tokens(self.folder)
        except OSError as exc:
            logger.warning("cannot re-read the token folder (keeping the old tokens): %s", exc)
            return
        self._stamp = stamp
        if not tokens:
            # A Secret emptied by mistake must not open the server; keep refusing instead.
            logger.warning("the token folder is now empty: every request will be refused")
        else:
            logger.info("reloaded the accepted tokens", extra={"tokens": len(tokens)})
        self._tokens = tokens
