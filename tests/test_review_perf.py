"""A review of the proxy's fast path (DirectSender, stream gathering, connect abandon).

Regressions of what it found (each failed on c037b36): a session header in another letter
case sent beside the key or the body's length, a test double on the session or adapter
bypassed, a key with a folded CR LF sent, an abandon that did not end a TLS handshake. The
rest guard what it checked and found right: gathering order and redaction, stalls, failure
events, reply decoding, JSON-escaped keys. Loopback only.
"""

# ruff: noqa: UP031 -- the JSON templates read better with %s than with doubled braces

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.key_leaks import KEY
from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import RetryConfig
from theater_py_actors.openai_proxy.errors import ProviderError

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
OK = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}'


class _HeadRecorder:
    """Loopback server keeping the raw request heads; answers each with a 200 JSON reply."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(OK), OK)
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def head_recorder() -> Iterator[_HeadRecorder]:
    server = _HeadRecorder()
    try:
        yield server
    finally:
        server.close()


def _header_lines(head: bytes, name: bytes) -> list[bytes]:
    return [
        line
        for line in head.split(b"\r\n")[1:]
        if line.partition(b":")[0].strip().lower() == name.lower()
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("authorization", "Basic c29tZW9uZS1lbHNl", b"Authorization: Bearer " + KEY.encode()),
        ("content-length", "3", None),  # two Content-Length headers: a desync/smuggling risk
    ],
)
@pytest.mark.parametrize("direct", [True, False])
def test_a_session_header_in_another_case_is_not_sent_beside_the_key(  # noqa: PLR0917
    head_recorder: _HeadRecorder,
    direct: bool,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    expected: bytes | None,
):
    # The session path keeps headers in a CaseInsensitiveDict: the auth hook REPLACES a
    # session's "authorization". DirectSender copies the merge into a plain dict and then
    # adds "Authorization": both go on the wire (two Authorization headers, one of them
    # not the proxy's key; which one the provider honours is up to it).
    if not direct:
        monkeypatch.setattr(
            "theater_py_actors.openai_proxy.transport.DirectSender.send",
            lambda *args, **kwargs: None,
        )
    with requests.Session() as session:
        session.headers[name] = value
        client = ChatClient(
            session,
            base_url=head_recorder.base_url,
            api_key=KEY,
            timeout_ms=5000,
            retry=RetryConfig(max_retries=0),
            max_connections=1,
        )
        with contextlib.closing(client):
            client.complete(BODY)
    lines = _header_lines(head_recorder.heads[-1], name.encode())
    assert len(lines) == 1, lines
    if expected is not None:
        assert lines == [expected], lines


@pytest.fixture
def silent_tls() -> Iterator[str]:
    """A loopback port that accepts TCP and never answers the TLS ClientHello."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def run() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.mark.slow
def test_abandoning_a_call_blocked_in_the_tls_handshake_ends_it(silent_tls: str):
    # c973d42 registers the socket before connect() so an abandon shuts it down. But
    # urllib3 then wraps it: SSLContext.wrap_socket DETACHES the registered socket (its fd
    # becomes -1), connection.sock is still None during the handshake, so abandon()
    # shuts nothing down and the call hangs until the attempt's timeout.
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=silent_tls,
            api_key=KEY,
            timeout_ms=8000,
            retry=RetryConfig(max_retries=0),
            max_connections=1,
        )
        call = client.start()
        errors: list[ProviderError] = []

        def run() -> None:
            try:
                client.complete(BODY, call)
            except ProviderError as error:
                errors.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        try:
            thread.join(0.5)  # in the handshake by now: the server never answers
            started = time.monotonic()
            call.abandon("cancelled")
            thread.join(3)
            assert not thread.is_alive(), "abandon did not end a call blocked in the handshake"
            assert time.monotonic() - started < 3
        finally:
            thread.join(15)
            client.close()


def _fake_reply(request: requests.PreparedRequest, **_kwargs: object) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "application/json"
    response.raw = __import__("io").BytesIO(OK)
    response.request = request
    response.url = request.url or ""
    return response


@pytest.mark.parametrize("where", ["HTTPAdapter.send (responses)", "session.request (instance)"])
def test_a_test_double_on_the_seam_is_not_bypassed(
    head_recorder: _HeadRecorder, where: str, monkeypatch: pytest.MonkeyPatch
):
    # The `responses` library patches requests.adapters.HTTPAdapter.send; mock.patch.object
    # patches a session instance's request. _plain() checks neither: the direct path goes
    # to the network (with the key) behind the double's back.
    used: list[str] = []
    with requests.Session() as session:
        if where.startswith("HTTPAdapter"):

            def send(self: object, request: requests.PreparedRequest, **kwargs: object):
                used.append("adapter")
                return _fake_reply(request)

            monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
        else:
            real = session.request

            def request(*args: object, **kwargs: object) -> requests.Response:
                used.append("session")
                return real(*args, **kwargs)

            session.request = request  # type: ignore[method-assign]
        client = ChatClient(
            session,
            base_url=head_recorder.base_url,
            api_key=KEY,
            timeout_ms=5000,
            retry=RetryConfig(max_retries=0),
            max_connections=1,
        )
        with contextlib.closing(client):
            client.complete(BODY)
    assert used, "the double on the session seam was bypassed by DirectSender"


@pytest.mark.parametrize(
    "key", ["sk-abc\r\n\tX-Evil: 1", "sk-abc\r\n X-Evil: 1", "sk-abc\r\nX-Evil: 1"]
)
def test_a_key_with_crlf_is_never_sent(head_recorder: _HeadRecorder, key: str):
    # http.client accepts CRLF followed by a space or tab (obs-fold) in a header value, and
    # the Authorization header is set by the auth hook / DirectSender without check.
    with requests.Session() as session:
        try:
            client = ChatClient(
                session,
                base_url=head_recorder.base_url,
                api_key=key,
                timeout_ms=5000,
                retry=RetryConfig(max_retries=0),
                max_connections=1,
            )
        except (ValueError, ProviderError):
            return  # refused up front: fine
        with contextlib.closing(client), contextlib.suppress(ProviderError):
            client.complete(BODY)
    time.sleep(0.2)
    assert head_recorder.heads == [], head_recorder.heads


# --- streaming through the proxy actor -------------------------------------------------

from tests.key_leaks import fragments  # noqa: E402
from tests.proxy_fixtures import KEY as PROXY_KEY  # noqa: E402
from tests.raw_upstream import RawServer, sse  # noqa: E402
from tests.test_proxy_streaming import (  # noqa: E402
    REQUEST,
    chunk,
    chunked,
    completion_text,
    text_of,
)


def _head(chunked_body: bool) -> bytes:
    framing = "Transfer-Encoding: chunked\r\n" if chunked_body else "Connection: close\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{framing}\r\n".encode()


@pytest.mark.parametrize("chunked_body", [True, False])
@pytest.mark.parametrize("every", [1, 5, 4096])
def test_gathering_keeps_order_text_tools_and_redaction(
    start_proxy_at,
    chunked_body: bool,
    every: int,
):
    # The key split across two deltas, a tool call between text runs, UTF-8 cut anywhere.
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "é" + PROXY_KEY[:13]}),
        chunk({"content": PROXY_KEY[13:] + " ok ü"}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a'}}
                ]
            }
        ),
        chunk({"content": " after"}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '": 1}'}}]}),
        chunk({"content": " end"}, "stop"),
    ]
    body = sse(chunks)
    if chunked_body:
        body = chunked(body, 7)
    pieces = [_head(chunked_body)] + [body[i : i + every] for i in range(0, len(body), every)]

    def script(connection: socket.socket, server: RawServer) -> None:
        for piece in pieces:
            connection.sendall(piece)

    with RawServer(script) as server:
        proxy = start_proxy_at(server.base_url)
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            messages = list(channel)
    text = text_of(messages)
    assert text == completion_text(messages)
    assert text == "é[redacted] ok ü after end", text
    blob = repr(messages)
    assert not fragments(blob, PROXY_KEY), fragments(blob, PROXY_KEY)


@pytest.mark.slow
@pytest.mark.parametrize("chunked_body", [True, False])
def test_a_stall_does_not_hold_back_gathered_tokens(start_proxy_at, chunked_body: bool):
    # Tokens 2..4 arrive in one burst, then the provider thinks for 2 s: they must reach
    # the caller during the stall, not after it.
    first = sse([chunk({"role": "assistant", "content": "t1 "})], done=False)
    burst = sse([chunk({"content": f"t{i} "}) for i in (2, 3, 4)], done=False)
    tail = sse([chunk({"content": "t5"}, "stop")])
    if chunked_body:
        first, burst, tail = (b"%x\r\n%s\r\n" % (len(p), p) for p in (first, burst, tail))
        tail += b"0\r\n\r\n"

    def script(connection: socket.socket, server: RawServer) -> None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sendall(_head(chunked_body) + first)
        server.stopping.wait(0.1)
        connection.sendall(burst)
        server.stopping.wait(2.0)
        connection.sendall(tail)

    with RawServer(script) as server:
        proxy = start_proxy_at(server.base_url)
        seen: list[tuple[float, str]] = []
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            started = time.monotonic()
            for message in channel:
                if "Delta" in message:
                    seen.append((time.monotonic() - started, message["Delta"]["text"]))
    got_t4 = next(t for t, text in seen if "t4" in text)
    assert got_t4 < 1.5, seen


# --- the direct path's failures, recorded and classified as the session path's ---------

from theater_py._http import RecordingSession  # noqa: E402
from theater_py.chain import EventChain  # noqa: E402


def _closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize("case", ["bad-ca-bundle", "refused"])
def test_a_failure_is_recorded_and_classified_as_on_the_session_path(case: str):
    port = _closed_port()
    scheme = "https" if case == "bad-ca-bundle" else "http"
    outcomes = []
    for direct in (True, False):
        chain = EventChain()
        with RecordingSession(chain) as session:
            if case == "bad-ca-bundle":
                session.verify = "/nonexistent/review-perf-ca.pem"
            if not direct:
                session.hooks["response"].append(lambda response, *_a, **_k: response)
            client = ChatClient(
                session,
                base_url=f"{scheme}://127.0.0.1:{port}/v1",
                api_key=KEY,
                timeout_ms=2000,
                retry=RetryConfig(max_retries=0),
                max_connections=1,
            )
            with contextlib.closing(client), pytest.raises(ProviderError) as info:
                client.complete(BODY)
        events = [(e.event_type, e.data) for e in chain.events() if e.event_type.startswith("http")]
        outcomes.append((events, info.value.kind, str(info.value).split(":")[0]))
    assert outcomes[0] == outcomes[1]


import gzip as _gzip  # noqa: E402
import zlib as _zlib  # noqa: E402


def _replies() -> dict[str, bytes]:
    ok_gz, ok_deflate = _gzip.compress(OK), _zlib.compress(OK)
    return {
        "gzip": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(ok_gz), ok_gz),
        "deflate": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: deflate\r\nContent-Length: %d\r\n\r\n%s"
        % (len(ok_deflate), ok_deflate),
        "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(OK), OK),
        "307": b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:9/steal\r\n"
        b"Content-Length: 0\r\n\r\n",
        "error-echo": b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s"
        % (
            len(b'{"error":{"message":"bad key %s"}}' % KEY.encode()),
            b'{"error":{"message":"bad key %s"}}' % KEY.encode(),
        ),
    }


@pytest.mark.parametrize("reply", list(_replies()))
def test_a_reply_reads_the_same_on_both_paths(reply: str):
    data = _replies()[reply]
    outcomes = []
    for direct in (True, False):

        def script(connection: socket.socket, server: RawServer) -> None:
            connection.sendall(data)

        with RawServer(script) as server, requests.Session() as session:
            if not direct:
                session.hooks["response"].append(lambda response, *_a, **_k: response)
            client = ChatClient(
                session,
                base_url=server.base_url,
                api_key=KEY,
                timeout_ms=3000,
                retry=RetryConfig(max_retries=0),
                max_connections=1,
            )
            with contextlib.closing(client):
                try:
                    outcome: object = client.complete(BODY).body
                except ProviderError as error:
                    outcome = (error.kind, str(error))
            outcomes.append(outcome)
            requests_seen = len(server.bodies)
        assert KEY not in repr(outcome)
        assert requests_seen == 1  # a 307 is not followed
    assert outcomes[0] == outcomes[1]


def _escaped(text: str) -> str:
    """``text`` as a JSON string body with every character \\u-escaped (json.loads gives
    ``text`` back; a byte-level replace of the key does not see it)."""
    return "".join(f"\\u{ord(c):04x}" for c in text)


@pytest.mark.parametrize("split_every", [3, 4096])
def test_a_json_escaped_key_in_any_stream_field_never_reaches_the_caller(
    start_proxy_at,
    split_every: int,
):
    k = _escaped(PROXY_KEY)
    lines = [
        '{"id":"%s","model":"%s","system_fingerprint":"%s","choices":[{"index":0,'
        '"delta":{"role":"assistant","content":"a %s b"},"finish_reason":null}]}' % (k, k, k, k),
        '{"id":"x","choices":[{"index":0,"delta":{"reasoning_content":"r %s","refusal":"f %s"},'
        '"finish_reason":null}]}' % (k, k),
        '{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"%s",'
        '"type":"function","function":{"name":"%s","arguments":"%s"}}]},'
        '"finish_reason":null}]}' % (k, k, k),
        '{"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"%s"}],'
        '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"note":"%s"}}' % (k, k),
    ]
    body = b"".join(b"data: " + line.encode() + b"\n\n" for line in lines) + b"data: [DONE]\n\n"
    pieces = (
        [_head(True)]
        + [
            b"%x\r\n%s\r\n" % (len(p), p)
            for p in (body[i : i + split_every] for i in range(0, len(body), split_every))
        ]
        + [b"0\r\n\r\n"]
    )

    def script(connection: socket.socket, server: RawServer) -> None:
        for piece in pieces:
            connection.sendall(piece)

    with RawServer(script) as server:
        proxy = start_proxy_at(server.base_url)
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            messages = list(channel)
    blob = repr(messages)
    assert not fragments(blob, PROXY_KEY), (fragments(blob, PROXY_KEY), blob[:2000])


def test_a_json_escaped_key_in_a_stream_error_event_is_masked(start_proxy_at):
    k = _escaped(PROXY_KEY)
    body = (
        sse([chunk({"role": "assistant", "content": "hi "})], done=False)
        + b'data: {"error":{"message":"Incorrect API key %s (Authorization: Bearer %s)",'
        b'"type":"invalid_request_error","code":"%s"}}\n\n' % (k.encode(), k.encode(), k.encode())
    )

    def script(connection: socket.socket, server: RawServer) -> None:
        connection.sendall(_head(False) + body)

    with RawServer(script) as server:
        proxy = start_proxy_at(server.base_url)
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            messages = list(channel)
    blob = repr(messages)
    assert not fragments(blob, PROXY_KEY), (fragments(blob, PROXY_KEY), blob[:2000])


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["close", "chunked", "gzip-close", "gzip-chunked"])
def test_tokens_before_a_partial_event_and_a_stall_are_not_held(start_proxy_at, framing: str):
    # After a burst, the provider has written half of the next event when it stalls.
    first = sse([chunk({"role": "assistant", "content": "t1 "})], done=False)
    burst = sse([chunk({"content": f"t{i} "}) for i in (2, 3, 4)], done=False)
    nxt = sse([chunk({"content": "t5"}, "stop")])
    half, rest = nxt[:20], nxt[20:]
    parts = [first, burst + half, rest]
    head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    if framing.startswith("gzip"):
        head += "Content-Encoding: gzip\r\n"
        z = _zlib.compressobj(6, _zlib.DEFLATED, 31)
        parts = [z.compress(p) + z.flush(_zlib.Z_SYNC_FLUSH) for p in parts[:-1]] + [
            z.compress(parts[-1]) + z.flush()
        ]
    if framing.endswith("chunked"):
        head += "Transfer-Encoding: chunked\r\n"
        parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in parts]
        parts[-1] += b"0\r\n\r\n"
    else:
        head += "Connection: close\r\n"
    head += "\r\n"

    def script(connection: socket.socket, server: RawServer) -> None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sendall(head.encode() + parts[0])
        server.stopping.wait(0.1)
        connection.sendall(parts[1])
        server.stopping.wait(2.0)
        connection.sendall(parts[2])

    with RawServer(script) as server:
        proxy = start_proxy_at(server.base_url)
        seen: list[tuple[float, str]] = []
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            started = time.monotonic()
            messages = []
            for message in channel:
                messages.append(message)
                if "Delta" in message:
                    seen.append((round(time.monotonic() - started, 2), message["Delta"]["text"]))
    assert text_of(messages) == "t1 t2 t3 t4 t5" == completion_text(messages)
    got_t4 = next(t for t, text in seen if "t4" in text)
    assert got_t4 < 1.5, seen
