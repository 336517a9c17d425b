"""The batch reader of chunked bodies, against ``http.client``'s own ``read1``.

Each body is served by a fake socket whose reads end wherever the test says (any byte,
inside a size line, a chunk, its CRLF), so that every buffer state is reached. The batch
reader must give the same bytes, end the same way and fail the same way as ``http.client``.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theater_py_actors.openai_proxy.chunked import batch_reader

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


class _Reads(io.RawIOBase):
    """A socket's reads: each ``readinto`` returns the next piece (or part of it)."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = [piece for piece in pieces if piece]
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.reads += 1
        if not self.pieces:
            return 0
        piece = self.pieces[0]
        taken = piece[: len(buffer)]
        buffer[: len(taken)] = taken
        if len(taken) < len(piece):
            self.pieces[0] = piece[len(taken) :]
        else:
            self.pieces.pop(0)
        return len(taken)


class _Socket:
    def __init__(self, reads: _Reads) -> None:
        self.reads = reads

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self.reads)


def _response(pieces: Sequence[bytes]) -> tuple[http.client.HTTPResponse, _Reads]:
    reads = _Reads([_HEAD, *pieces])
    response = http.client.HTTPResponse(_Socket(reads))  # type: ignore[arg-type]
    response.begin()
    return response, reads


def _drain(read: Callable[[int], bytes], limit: int = 64 * 1024) -> tuple[list[bytes], str]:
    """Every read until the end, and how it ended (``"end"`` or the exception's type)."""
    out: list[bytes] = []
    for _ in range(10_000):
        try:
            data = read(limit)
        except Exception as exc:  # compared, not handled
            return out, type(exc).__name__
        if not data:
            return out, "end"
        out.append(data)
    raise AssertionError("the body never ended")


def _both(
    body: bytes, cuts: Sequence[int], limit: int = 64 * 1024
) -> tuple[tuple[list[bytes], str, bool], tuple[list[bytes], str, bool]]:
    """Read ``body`` cut at ``cuts`` with http.client's read1 and with the batch reader."""
    points = sorted({cut for cut in cuts if 0 < cut < len(body)})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    results = []
    for make in (lambda r: r.read1, batch_reader):
        response, _ = _response(pieces)
        out, end = _drain(make(response), limit)
        results.append((out, end, response.isclosed()))
    return results[0], results[1]


def _chunked(datas: Sequence[bytes], *, extension: bool = False, trailer: bool = False) -> bytes:
    framed = b"".join(
        b"%x%s\r\n%s\r\n" % (len(data), b";x=1" if extension and i % 2 else b"", data)
        for i, data in enumerate(datas)
        if data
    )
    return framed + b"0\r\n" + (b"X-Trailer: 1\r\n" if trailer else b"") + b"\r\n"


def _events(count: int) -> list[bytes]:
    return [b'data: {"choices":[{"delta":{"content":"t%d"}}]}\n\n' % i for i in range(count)]


def test_every_buffered_chunk_comes_in_one_read() -> None:
    datas = _events(50)
    response, _ = _response([_chunked(datas)])
    read = batch_reader(response)
    assert read(64 * 1024) == b"".join(datas)
    assert read(64 * 1024) == b""
    assert response.isclosed()  # http.client ended the body: the connection can be reused


def test_a_chunk_split_across_reads_is_completed_by_http_client() -> None:
    body = _chunked(_events(3))
    cut = body.index(b"t1") + 1  # inside the second chunk's data
    response, _ = _response([body[:cut], body[cut:]])
    read = batch_reader(response)
    first = read(64 * 1024)
    assert first == _events(1)[0]  # what is whole now comes now
    assert b"".join(_drain(read)[0]) == b"".join(_events(3)[1:])


def test_the_limit_bounds_a_read() -> None:
    datas = [b"a" * 100, b"b" * 100, b"c" * 100]
    response, _ = _response([_chunked(datas)])
    read = batch_reader(response)
    assert read(150) == b"a" * 100
    assert read(250) == b"b" * 100 + b"c" * 100
    assert read(50) == b""  # the last chunk ends the body


@pytest.mark.parametrize(
    "body",
    [
        _chunked(_events(4), extension=True),
        _chunked(_events(4), trailer=True),
        b"5 \r\nhello\r\n0\r\n\r\n",  # padding after the size: http.client accepts it
        b"zz\r\nhello\r\n0\r\n\r\n",  # not a size at all
        b"5\r\nhelloXX0\r\n\r\n",  # a chunk without its CRLF
        b"5\r\nhello\r\n",  # the connection ends without the last chunk
        b"5\r\nhel",  # or inside a chunk
        b"-5\r\nhello\r\n0\r\n\r\n",
        b"0_5\r\nhello\r\n0\r\n\r\n",
        b"",
    ],
)
def test_odd_bodies_end_as_with_http_client(body: bytes) -> None:
    for cuts in ([], list(range(1, len(body)))):
        expected, got = _both(body, cuts)
        assert b"".join(got[0]) == b"".join(expected[0])
        assert got[1:] == expected[1:]


@settings(max_examples=300, deadline=None)
@given(
    datas=st.lists(st.binary(min_size=0, max_size=40), max_size=12),
    extension=st.booleans(),
    trailer=st.booleans(),
    cuts=st.lists(st.integers(min_value=1, max_value=800), max_size=12),
    limit=st.integers(min_value=1, max_value=200),
)
def test_any_body_cut_anywhere_reads_as_http_client_reads_it(
    datas: list[bytes], extension: bool, trailer: bool, cuts: list[int], limit: int
) -> None:
    body = _chunked(datas, extension=extension, trailer=trailer)
    expected, got = _both(body, cuts, limit)
    assert b"".join(got[0]) == b"".join(expected[0])
    assert got[1:] == expected[1:]
    assert all(len(piece) <= limit for piece in got[0])


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=60), cuts=st.lists(st.integers(1, 60), max_size=6))
def test_garbage_fails_as_with_http_client(body: bytes, cuts: list[int]) -> None:
    expected, got = _both(b"3\r\nabc\r\n" + body, cuts)
    assert b"".join(got[0]) == b"".join(expected[0])
    assert got[1:] == expected[1:]
