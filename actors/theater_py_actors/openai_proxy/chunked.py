"""Read a chunked HTTP body every complete chunk at a time.

``http.client``'s ``read1`` returns at most one HTTP chunk per call, through five Python
calls. A provider sends one Server-Sent Event per chunk, so a stream of 200 tokens costs
200 such reads even when the connection's buffer already holds all of them, as it does
whenever the reader falls behind (many concurrent streams on one GIL). :func:`batch_reader`
takes every complete chunk already in the buffer in one call, finding the framing with
``bytes.find``, and hands anything else to ``http.client`` itself: a chunk not yet whole,
a chunk extension, the last chunk and its trailers, a malformed size line. The response's
own state stays exact (it is only ever moved from one chunk boundary to the next), so
``http.client`` ends the body and the connection goes back to its pool as before.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable

__all__ = ["batch_reader"]

_HEX_DIGITS = b"0123456789abcdefABCDEF"
_MAX_SIZE_LINE = 16
"""Longer size lines (16 hex digits is 2**64) are left to ``http.client`` to refuse."""


def batch_reader(response: http.client.HTTPResponse) -> Callable[[int], bytes]:
    """A ``read1`` for ``response``'s chunked body that returns every complete chunk in
    the connection's buffer at once (at least one chunk's bytes, or ``b""`` at the end).

    Like ``read1``, a call waits for the socket only when nothing is buffered, and returns
    at most ``limit`` bytes.
    """
    buffered = response.fp  # the connection's io.BufferedReader
    peek = buffered.peek
    advance = buffered.read
    read1 = response.read1

    def read_chunks(limit: int) -> bytes:
        left = response.chunk_left
        if left or response.fp is None:  # inside a chunk, or the body has ended
            return read1(limit)
        window = peek(limit)  # what is buffered; one socket read if nothing is
        position = 0
        if left == 0:  # the last chunk's data was read, not its CRLF
            if window[:2] != b"\r\n":
                return read1(limit)
            position = 2
        pieces: list[bytes] = []
        size_taken = 0
        end = len(window)
        while True:
            line_end = window.find(b"\r\n", position, position + _MAX_SIZE_LINE + 2)
            if line_end <= position:
                break
            size_line = window[position:line_end]
            if size_line.strip(_HEX_DIGITS):  # an extension, spaces, a sign: not ours
                break
            size = int(size_line, 16)
            start = line_end + 2
            stop = start + size
            if size == 0 or stop + 2 > end or window[stop : stop + 2] != b"\r\n":
                break  # the last chunk, or one not wholly buffered
            if size_taken + size > limit:
                break
            pieces.append(window[start:stop])
            size_taken += size
            position = stop + 2
        if not pieces:
            return read1(limit)
        advance(position)  # all of it buffered: no socket read
        response.chunk_left = None  # at a chunk boundary, as after http.client's own reads
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    return read_chunks
