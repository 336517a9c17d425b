"""Whether a stream's next read would wait: plain sockets, and TLS records whole or cut."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from tests.test_proxy_streaming import chunk, chunked, sse
from tests.tls_upstream import TLSRecords
from theater_py_actors.openai_proxy.arrival import arrival_check

WAIT = 10


def test_a_plain_socket_has_arrived_once_a_byte_waits() -> None:
    left, right = socket.socketpair()
    with left, right:
        arrived = arrival_check(left)
        assert not arrived()
        right.sendall(b"x")
        assert _soon(arrived)
        left.recv(1)
        assert not arrived()


def test_anything_but_a_socket_never_has_arrived() -> None:
    assert not arrival_check(None)()


class _TLSPair:
    """A client :class:`ssl.SSLSocket` and a server that writes raw record bytes to it."""

    def __init__(self, certificate: tuple[str, str]) -> None:
        cert, key = certificate
        self.raw, server_raw = socket.socketpair()
        self.server_raw = server_raw
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        server_context.num_tickets = 0  # no record after the handshake but the test's
        client_context = ssl.create_default_context(cafile=cert)
        client_context.check_hostname = False
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.server = server_context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        pumping = threading.Thread(target=self._handshake, daemon=True)
        pumping.start()
        self.raw.settimeout(WAIT)
        self.client = client_context.wrap_socket(self.raw)
        pumping.join(WAIT)
        assert not pumping.is_alive()

    def _handshake(self) -> None:
        self.server_raw.settimeout(WAIT)
        while True:
            try:
                self.server.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.outgoing.pending:
                    self.server_raw.sendall(self.outgoing.read())
                self.incoming.write(self.server_raw.recv(65536))
        if self.outgoing.pending:
            self.server_raw.sendall(self.outgoing.read())

    def record(self, data: bytes) -> bytes:
        """The bytes of ``data`` as the server's TLS records, not yet sent."""
        self.server.write(data)
        return self.outgoing.read()

    def close(self) -> None:
        self.client.close()
        self.server_raw.close()


@pytest.fixture
def tls_pair(loopback_certificate: tuple[str, str]) -> Iterator[_TLSPair]:
    pair = _TLSPair(loopback_certificate)
    yield pair
    pair.close()


def test_tls_counts_a_whole_record_in_the_socket_and_not_a_cut_one(tls_pair: _TLSPair) -> None:
    arrived = arrival_check(tls_pair.client)
    assert not arrived()
    records = tls_pair.record(b"hello")
    tls_pair.server_raw.sendall(records[:3])  # not even the record's header
    assert not _soon(arrived, 0.2)
    tls_pair.server_raw.sendall(records[3:8])  # the header, not the whole record
    assert not _soon(arrived, 0.2)
    tls_pair.server_raw.sendall(records[8:])
    assert _soon(arrived)  # a read now returns at once
    assert tls_pair.client.recv(100) == b"hello"
    assert not arrived()


def test_tls_counts_plaintext_already_decrypted(tls_pair: _TLSPair) -> None:
    arrived = arrival_check(tls_pair.client)
    tls_pair.server_raw.sendall(tls_pair.record(b"0123456789"))
    assert _soon(arrived)
    assert tls_pair.client.recv(4) == b"0123"
    assert arrived()  # the rest of the record waits in the TLS layer, none in the socket
    assert tls_pair.client.recv(100) == b"456789"
    assert not arrived()


def test_a_tls_stream_already_received_is_handed_on_once_caught_up(
    start_proxy_at, loopback_certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # About 33 KB: three TLS records, all in the socket before the first read (fewer
    # reads than the 16 after which gathered text goes anyway). Each record's read finds
    # the next one whole in the socket: the gathered text waits for the end.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", loopback_certificate[0])
    words = [f"w{i} " for i in range(500)]
    chunks = [chunk({"content": word}) for word in words] + [chunk({}, "stop")]
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with TLSRecords(loopback_certificate, [head + chunked(sse(chunks), 200)]) as server:
        proxy = start_proxy_at(server.base_url)
        with proxy.open_channel_json({"GenerateCompletion": {"request": _REQUEST}}) as channel:
            messages = list(channel)
    deltas = [m["Delta"]["text"] for m in messages if "Delta" in m]
    assert "".join(deltas) == "".join(words)
    assert deltas[0] == words[0]
    assert len(deltas) <= 3  # the first alone, then one per catching up (not one per record)


_REQUEST = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
}


def _soon(check: object, within: float = WAIT) -> bool:
    """Whether ``check()`` turns true within ``within`` seconds (loopback is fast, not
    instant)."""
    done = threading.Event()
    for _ in range(int(within / 0.01)):
        if check():  # type: ignore[operator]
            return True
        done.wait(0.01)
    return bool(check())  # type: ignore[operator]
