"""Decoding request bodies: in the serving process, or in a child process for large ones.

Parsing a large JSON body holds the GIL for as long as it takes: orjson builds every row
as Python objects in one C call (a 64 MiB body of one-value rows: ~10 s and ~2.8 GiB on
these machines). On the event loop, or on a thread (which cannot take the GIL back from a
C call), that stalls every client and the kubelet's probes; so a body of OFF_LOOP_BYTES or
more is decoded by a child process (spawned, no TensorFlow: the codecs only), which sends
the arrays back. The serving process's loop keeps answering, and the parse's peak memory
is the child's, recycled after a few bodies. ``decode_body`` is the one decoding function
both places run.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Final

from modelplane_runtime import rules
from modelplane_runtime.codecs import v1 as codec_v1
from modelplane_runtime.codecs import v2 as codec_v2
from modelplane_runtime.codecs.decoded import Decoded, SignatureLookup
from modelplane_runtime.errors import ModelNotReady
from modelplane_runtime.http.messages import decode_content

logger = logging.getLogger("modelplane.http")

OFF_LOOP_BYTES: Final = 1024 * 1024
"""Bodies this large or larger are decoded in the child process (~10-30 ms of parsing)."""
_BODIES_PER_CHILD: Final = 16
"""A child is replaced after this many bodies, returning the memory a parse left behind."""


def decode_body(
    kind: str,
    body: bytes,
    encoding: bytes | None,
    header_length: bytes | None,
    signatures: SignatureLookup,
    name: str,
    version: int,
    max_rows: int,
    max_bytes: int,
) -> Decoded:
    """Decompress (``Content-Encoding``) and decode a ``predict`` or ``infer`` body."""
    if encoding is not None:
        body = decode_content(body, encoding.decode("latin-1"), max_bytes)
    if kind == "predict":
        return codec_v1.decode_request(body, signatures, max_rows)
    length = rules.header_length(header_length)
    return codec_v2.decode_request(body, length, signatures, name, version)


class Decoder:
    """The child process that decodes large bodies, started at the first one."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def submit(
        self,
        kind: str,
        body: bytes,
        encoding: bytes | None,
        header_length: bytes | None,
        signatures: SignatureLookup,
        name: str,
        version: int,
        max_rows: int,
        max_bytes: int,
    ) -> asyncio.Future[Decoded]:
        """``decode_body`` in the child; ``signatures`` must be picklable (SignatureChoice)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),  # never fork TensorFlow
                max_tasks_per_child=_BODIES_PER_CHILD,
            )
        try:
            work = self._pool.submit(
                decode_body, kind, body, encoding, header_length, signatures, name, version,
                max_rows, max_bytes,
            )
        except BrokenProcessPool:
            self._pool = None  # the child died (out of memory?): a new one next time
            raise ModelNotReady("the body could not be decoded; try again") from None
        return asyncio.wrap_future(work)

    def close(self) -> None:
        """Stop the child (bodies still being decoded are abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
