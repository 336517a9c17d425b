"""The proxy streams completions over channels, against hostile loopback servers.

Each server here writes scripted bytes (``tests.raw_upstream``): events cut at odd bytes,
CRLF or CR line endings, tool calls without index, errors mid-stream, stalls. Waits are
bounded; nothing asserts a speed.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.proxy_fixtures import KEY
from tests.raw_upstream import RawServer, event_stream_head, sse, stall
from theater_py import ActorHandle, ActorStopped, ChannelRefused, Runtime

REQUEST = {
    "GenerateCompletion": {
        "request": {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        }
    }
}


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [choice], **extra}


USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hél"}),
    chunk({"content": "lo, "}),
    chunk({"content": "wörld"}, "stop"),
    {"id": "chatcmpl-1", "model": "gpt-4o", "choices": [], "usage": USAGE},
]


def write(pieces: list[bytes]) -> Callable[[socket.socket, RawServer], None]:
    """A script that writes ``pieces``, one send each (so one read each, or fewer)."""

    def script(connection: socket.socket, server: RawServer) -> None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            connection.sendall(piece)
            server.stopping.wait(0.002)  # lets the proxy read the pieces apart

    return script


def split(data: bytes, every: int) -> list[bytes]:
    return [data[i : i + every] for i in range(0, len(data), every)]


@pytest.fixture
def proxy_defaults() -> dict[str, Any]:
    return {"max_cache_size": 0, "retry_config": {"initial_delay_ms": 1, "max_delay_ms": 5}}


def stream(handle: ActorHandle, request: Any = REQUEST, timeout: float = 30) -> list[Any]:
    with handle.open_channel_json(request, timeout=timeout) as channel:
        return list(channel)


def text_of(messages: list[Any], index: int = 0) -> str:
    return "".join(
        m["Delta"]["text"] for m in messages if "Delta" in m and m["Delta"]["index"] == index
    )


def completion_text(messages: list[Any]) -> str:
    content = messages[-1]["Completion"]["completion"]["content"]
    return "".join(part["text"] for part in content if part["type"] == "text")


@pytest.fixture
def served() -> Iterator[Callable[[list[bytes]], RawServer]]:
    servers: list[RawServer] = []

    def serve(pieces: list[bytes]) -> RawServer:
        server = RawServer(write(pieces)).__enter__()
        servers.append(server)
        return server

    yield serve
    for server in servers:
        server.__exit__(None, None, None)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("every", [1, 3, 7, 1000])
def test_a_stream_cut_anywhere_gives_deltas_then_the_completion(
    start_proxy_at, served, eol: bytes, every: int
) -> None:
    server = served([event_stream_head(), *split(sse(TEXT_CHUNKS, eol), every)])
    messages = stream(start_proxy_at(server.base_url))
    assert text_of(messages) == "Héllo, wörld" == completion_text(messages)
    assert all(set(m) == {"Delta"} for m in messages[:-1])
    usage = messages[-1]["Completion"]["completion"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (10, 3)
    assert usage["cost_usd"] > 0  # priced as a plain reply is
    sent = server.bodies[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


PLAIN = {
    "id": "chatcmpl-1",
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Héllo, wörld"},
        }
    ],
    "usage": USAGE,
}


def plain_reply(body: Any) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def test_the_streamed_completion_is_the_plain_one(start_proxy_at, served) -> None:
    plain_server = served([plain_reply(PLAIN)])
    stream_server = served([event_stream_head(), sse(TEXT_CHUNKS)])
    plain = start_proxy_at(plain_server.base_url, name="plain").request_json(REQUEST, timeout=30)
    assert "Completion" in plain
    assert stream(start_proxy_at(stream_server.base_url, name="streamed"))[-1] == plain
    # A provider that ignores "stream" answers whole: one delta per block, then the same.
    ignoring = stream(start_proxy_at(plain_server.base_url, name="ignoring"))
    assert ignoring[-1] == plain
    assert text_of(ignoring) == "Héllo, wörld"


def script_of(*steps: bytes | Callable[[socket.socket, RawServer], None]) -> RawServer:
    """A server whose every request gets ``steps``: bytes to send, or a callable."""

    def script(connection: socket.socket, server: RawServer) -> None:
        for step in steps:
            if isinstance(step, bytes):
                connection.sendall(step)
            else:
                step(connection, server)

    return RawServer(script)


def test_tool_calls_without_index_or_with_a_reused_index(start_proxy_at, served) -> None:
    chunks = [
        chunk({"content": "Checking."}),
        # No index: the first call whole, then a second with its own id.
        chunk({"tool_calls": [{"id": "call_a", "function": {"name": "get", "arguments": '{"c'}}]}),
        chunk({"tool_calls": [{"function": {"arguments": 'ity": "Paris"}'}}]}),
        # Index 0 again, for another call (a new id).
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_b", "function": {"name": "put", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "tool_calls"),
    ]
    server = served([event_stream_head(), sse(chunks)])
    messages = stream(start_proxy_at(server.base_url))
    starts = [
        m["ToolUseDelta"] for m in messages if "ToolUseDelta" in m and "id" in m["ToolUseDelta"]
    ]
    assert [(s["index"], s["id"], s["name"]) for s in starts] == [
        (1, "call_a", "get"),
        (2, "call_b", "put"),
    ]
    fragments = {1: "", 2: ""}
    for m in messages:
        if "ToolUseDelta" in m:
            fragments[m["ToolUseDelta"]["index"]] += m["ToolUseDelta"]["input_json"]
    content = messages[-1]["Completion"]["completion"]["content"]
    assert content[0] == {"type": "text", "text": "Checking."}
    assert content[1] == {
        "type": "tool_use",
        "id": "call_a",
        "name": "get",
        "input": {"city": "Paris"},
    }
    assert content[2] == {"type": "tool_use", "id": "call_b", "name": "put", "input": {}}
    assert json.loads(fragments[1]) == content[1]["input"]
    assert messages[-1]["Completion"]["completion"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("where", ["every", "none"])
def test_usage_on_every_chunk_or_none(start_proxy_at, served, where: str) -> None:
    chunks = [chunk({"content": f"t{n} "}) for n in range(3)]
    if where == "every":  # vLLM: cumulative usage on each chunk
        for n, each in enumerate(chunks):
            each["usage"] = {"prompt_tokens": 5, "completion_tokens": n + 1, "total_tokens": n + 6}
    server = served([event_stream_head(), b": keep-alive\n\n", sse(chunks, done=False)])
    messages = stream(start_proxy_at(server.base_url))
    usage = messages[-1]["Completion"]["completion"]["usage"]
    assert text_of(messages) == "t0 t1 t2 " == completion_text(messages)
    if where == "every":
        assert (usage["input_tokens"], usage["output_tokens"]) == (5, 3)
    else:
        assert (usage["input_tokens"], usage["output_tokens"]) == (0, 0)
        assert "cost_usd" not in usage  # unknown, not 0


def test_reasoning_streams_as_reasoning_deltas_before_the_text(start_proxy_at, served) -> None:
    chunks = [
        chunk({"reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think."}),
        chunk({"content": "42"}, "stop"),
    ]
    server = served([event_stream_head(), sse(chunks)])
    messages = stream(start_proxy_at(server.base_url))
    assert messages[:3] == [
        {"ReasoningDelta": {"text": "Let me "}},
        {"ReasoningDelta": {"text": "think."}},
        {"Delta": {"index": 1, "text": "42"}},
    ]
    content = messages[-1]["Completion"]["completion"]["content"]
    assert content == [
        {"type": "thinking", "thinking": "Let me think."},
        {"type": "text", "text": "42"},
    ]


ERROR_EVENT = {"error": {"message": "The server had an error", "type": "server_error"}}


def test_an_error_before_the_first_delta_is_retried(start_proxy_at) -> None:
    answers = iter([sse([chunk({"role": "assistant"}), ERROR_EVENT], done=False), sse(TEXT_CHUNKS)])

    def script(connection: socket.socket, server: RawServer) -> None:
        connection.sendall(event_stream_head() + next(answers))

    with RawServer(script) as server:
        messages = stream(start_proxy_at(server.base_url))
        assert completion_text(messages) == "Héllo, wörld"
        assert len(server.bodies) == 2


def test_an_error_after_the_first_delta_ends_the_stream_with_the_partial_text(
    start_proxy_at,
) -> None:
    body = sse([chunk({"content": "Hal"}), chunk({"content": "f"}), ERROR_EVENT], done=False)
    with script_of(event_stream_head(), body) as server:
        messages = stream(start_proxy_at(server.base_url))
        error = messages[-1]["Error"]
        assert error["kind"] == "server_error"
        assert error["partial_text"] == "Half" == text_of(messages)
        assert len(server.bodies) == 1  # never retried once text flowed


def test_an_idle_stream_ends_with_a_timeout_and_the_text_so_far(start_proxy_at) -> None:
    with script_of(
        event_stream_head(), sse([chunk({"content": "Hi"})], done=False), stall
    ) as server:
        proxy = start_proxy_at(server.base_url, stream_idle_timeout_ms=300)
        messages = stream(proxy)
        error = messages[-1]["Error"]
        assert error["kind"] == "timeout"
        assert "stream_idle_timeout_ms (300)" in error["error"]
        assert error["partial_text"] == "Hi"
        assert server.hung_up.wait(10)


def keep_alives(connection: socket.socket, server: RawServer) -> None:
    for _ in range(3000):  # a comment every 10 ms, never a delta
        connection.sendall(b": ping\n\n")
        if server.stopping.wait(0.01):
            return


def test_keep_alives_without_text_end_at_the_total_deadline(start_proxy_at) -> None:
    with script_of(event_stream_head(), keep_alives) as server:
        proxy = start_proxy_at(
            server.base_url, retry={"max_retries": 0, "max_total_timeout_ms": 500}
        )
        error = stream(proxy)[-1]["Error"]
        assert error["kind"] == "timeout"
        assert "max_total_timeout_ms (500)" in error["error"]
        assert "partial_text" not in error


def test_max_stream_ms_caps_a_stream_that_flows(start_proxy_at) -> None:
    def tokens(connection: socket.socket, server: RawServer) -> None:
        for n in range(3000):
            connection.sendall(sse([chunk({"content": f"{n} "})], done=False))
            if server.stopping.wait(0.01):
                return

    with script_of(event_stream_head(), tokens) as server:
        proxy = start_proxy_at(server.base_url, max_stream_ms=400)
        messages = stream(proxy)
        error = messages[-1]["Error"]
        assert error["kind"] == "timeout"
        assert "max_stream_ms (400)" in error["error"]
        assert error["partial_text"] == text_of(messages) != ""


def test_closing_the_channel_hangs_up_on_the_provider(start_proxy_at) -> None:
    with script_of(
        event_stream_head(), sse([chunk({"content": "Hi"})], done=False), stall
    ) as server:
        proxy = start_proxy_at(server.base_url)
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            assert next(iter(channel)) == {"Delta": {"index": 0, "text": "Hi"}}
        assert server.hung_up.wait(10)


def test_stopping_the_proxy_ends_every_open_stream_cancelled(
    start_proxy_at, runtime: Runtime
) -> None:
    with script_of(
        event_stream_head(), sse([chunk({"content": "Hi"})], done=False), stall
    ) as server:
        proxy = start_proxy_at(server.base_url)
        channels = [proxy.open_channel_json(REQUEST, timeout=30) for _ in range(2)]
        readers = [iter(channel) for channel in channels]  # iterate each channel once
        firsts = [next(reader) for reader in readers]
        assert firsts == [{"Delta": {"index": 0, "text": "Hi"}}] * 2
        runtime.stop_actor("proxy", timeout=10)
        for reader in readers:
            rest: list[Any] = []
            with pytest.raises(ActorStopped):
                rest.extend(reader)
            assert [m["Error"]["kind"] for m in rest] == ["cancelled"]
        assert server.hung_up.wait(10)


def test_a_stream_echoing_the_key_never_shows_it(start_proxy_at) -> None:
    half = len(KEY) // 2
    chunks = [
        chunk({"content": "key: " + KEY[:half]}),
        chunk({"content": KEY[half:] + " end"}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": KEY, "function": {"name": "f", "arguments": KEY[:3]}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": KEY[3:]}}]}, "stop"),
    ]
    body = sse(chunks)
    with script_of(event_stream_head(), *split(body, 5)) as server:
        proxy = start_proxy_at(server.base_url)
        messages = stream(proxy)
        assert KEY not in json.dumps(messages)
        assert text_of(messages) == "key: [redacted] end" == completion_text(messages)
        assert KEY not in repr([event.data for event in proxy.events()])


def test_a_stream_line_past_max_response_bytes_is_refused(start_proxy_at) -> None:
    endless = b"data: " + b"x" * 4096
    with script_of(event_stream_head(), *[endless] * 10, stall) as server:
        proxy = start_proxy_at(server.base_url, max_response_bytes=16384, retry={"max_retries": 0})
        error = stream(proxy)[-1]["Error"]
        assert error["kind"] == "invalid_response"
        assert "max_response_bytes (16384)" in error["error"]


def test_an_open_that_is_no_completion_is_refused(start_proxy_at, served) -> None:
    server = served([])
    with pytest.raises(ChannelRefused, match="GenerateCompletion"):
        stream(start_proxy_at(server.base_url), request="ListModels")


def test_an_invalid_request_is_answered_on_the_channel(start_proxy_at, served) -> None:
    server = served([])
    request = {"GenerateCompletion": {"request": {"model": "m", "messages": []}}}
    messages = stream(start_proxy_at(server.base_url), request=request)
    assert [m["Error"]["kind"] for m in messages] == ["invalid_request"]


def test_a_stream_past_its_cap_with_a_full_buffer_never_holds_up_other_deadlines(
    start_proxy_at,
) -> None:
    """The watchdog ends a stream without waiting for its slow caller: the deadline of
    another request, on the same watchdog, still fires on time."""
    many = sse([chunk({"content": f"w{n} "}) for n in range(200)], done=False)

    def script(connection: socket.socket, server: RawServer) -> None:
        with server.lock:
            streaming = server.bodies[-1].get("stream") is True
        if streaming:
            connection.sendall(event_stream_head() + many)
            stall(connection, server)
            return
        # A body trickled a byte at a time: no read ever times out, only the watchdog
        # can end this request at its deadline.
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        for _ in range(600):
            if server.stopping.wait(0.05):
                return
            connection.sendall(b" ")

    with RawServer(script) as server:
        proxy = start_proxy_at(
            server.base_url,
            max_stream_ms=300,
            retry={"max_retries": 0, "max_total_timeout_ms": 500},
        )
        with proxy.open_channel_json(REQUEST, timeout=30) as channel:
            reader = iter(channel)
            first = next(reader)  # then read nothing: the proxy's buffer fills
            assert first == {"Delta": {"index": 0, "text": "w0 "}}
            plain = proxy.request_json(REQUEST, timeout=20)
            assert plain["Error"]["kind"] == "timeout"
            rest = list(reader)
        error = rest[-1]["Error"]
        assert error["kind"] == "timeout"
        assert "max_stream_ms (300)" in error["error"]
        assert error["partial_text"] == "w0 " + text_of(rest)


def test_a_chunked_stream_cut_anywhere(start_proxy_at, served) -> None:
    # Real providers stream with chunked transfer encoding, whose framing a read may cut.
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    body = sse(TEXT_CHUNKS, b"\r\n")
    pieces = [body[i : i + 11] for i in range(0, len(body), 11)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    server = served([head, *split(framed, 5)])
    messages = stream(start_proxy_at(server.base_url))
    assert text_of(messages) == "Héllo, wörld" == completion_text(messages)
    assert messages[-1]["Completion"]["completion"]["usage"]["output_tokens"] == 3


def test_the_first_byte_is_bounded_by_the_attempt_timeout(start_proxy_at) -> None:
    with RawServer(stall) as server:  # accepts the request, never answers
        proxy = start_proxy_at(server.base_url, timeout_ms=300, retry={"max_retries": 1})
        error = stream(proxy)[-1]["Error"]
        assert (error["kind"], error["attempts"]) == ("timeout", 2)  # retried: no delta yet
        assert "partial_text" not in error
        assert len(server.bodies) == 2


def test_the_first_delta_goes_alone_and_the_rest_of_a_read_is_gathered(
    start_proxy_at, served
) -> None:
    # The whole stream in one write: one read holds every chunk after the head.
    words = [f"w{i} " for i in range(40)]
    chunks = [chunk({"content": word}) for word in words] + [chunk({}, "stop")]
    server = served([event_stream_head() + sse(chunks)])
    messages = stream(start_proxy_at(server.base_url))
    deltas = [m["Delta"]["text"] for m in messages if "Delta" in m]
    assert "".join(deltas) == "".join(words) == completion_text(messages)
    assert deltas[0] == words[0]  # the first token is not held back
    assert len(deltas) < len(words)  # the rest of the read came as fewer messages


def chunked(body: bytes, every: int) -> bytes:
    """``body`` in HTTP/1.1 chunked framing, ``every`` bytes a chunk, then the last one."""
    pieces = [body[i : i + every] for i in range(0, len(body), every)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_chunked_stream_is_read_plain_or_decoded(start_proxy_at, served, encoding: str) -> None:
    body = sse(TEXT_CHUNKS)
    if encoding == "gzip":
        body = gzip.compress(body)
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        f"Transfer-Encoding: chunked\r\nContent-Encoding: {encoding}\r\n\r\n"
    ).encode()
    server = served([head, *split(chunked(body, 13), 29)])
    messages = stream(start_proxy_at(server.base_url))
    assert text_of(messages) == "Héllo, wörld" == completion_text(messages)


def deltas_of_one_chunked_write(start_proxy_at, served, words: list[str]) -> list[str]:
    """The ``Delta`` texts of a chunked stream of ``words`` that its server writes at once."""
    chunks = [chunk({"content": word}) for word in words] + [chunk({}, "stop")]
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    server = served([head + chunked(sse(chunks), 200)])
    messages = stream(start_proxy_at(server.base_url))
    deltas = [m["Delta"]["text"] for m in messages if "Delta" in m]
    assert "".join(deltas) == "".join(words) == completion_text(messages)
    assert deltas[0] == words[0]  # the first token is not held back
    return deltas


def test_a_chunked_stream_in_one_write_is_gathered_too(start_proxy_at, served) -> None:
    # Chunked and plain: read through http.client's buffer, handed on before its refills.
    words = [f"w{i} " for i in range(40)]
    assert len(deltas_of_one_chunked_write(start_proxy_at, served, words)) < len(words)


def test_a_stream_already_received_is_handed_on_once_caught_up(start_proxy_at, served) -> None:
    # Many buffer refills' worth (about 40 KB), all in the socket before the first read:
    # a refill that finds more waiting does not hand on what was gathered.
    words = [f"w{i} " for i in range(600)]
    deltas = deltas_of_one_chunked_write(start_proxy_at, served, words)
    assert len(deltas) <= 3  # the first alone, then one per catching up (not one per 8 KB)
