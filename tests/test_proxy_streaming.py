"""The proxy streams completions over channels, against hostile loopback servers.

Each server here writes scripted bytes (``tests.raw_upstream``): events cut at odd bytes,
CRLF or CR line endings, tool calls without index, errors mid-stream, stalls. Waits are
bounded; nothing asserts a speed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.raw_upstream import RawServer, event_stream_head, sse
from theater_py import ActorHandle, Runtime

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "openai-proxy.toml"
KEY = "sk-sim-0123456789-secret"
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
def start_proxy(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ActorHandle]:
    monkeypatch.setenv("SIM_KEY", KEY)

    def start(
        base_url: str, retry: dict[str, Any] | None = None, name: str = "proxy", **config: Any
    ) -> ActorHandle:
        settings = {
            "base_url": base_url,
            "api_key_env": "SIM_KEY",
            "max_cache_size": 0,
            "retry_config": {"initial_delay_ms": 1, "max_delay_ms": 5, **(retry or {})},
            **config,
        }
        return runtime.start_actor(MANIFEST, {"config": settings}, name=name)

    return start


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
    start_proxy, served, eol: bytes, every: int
) -> None:
    server = served([event_stream_head(), *split(sse(TEXT_CHUNKS, eol), every)])
    messages = stream(start_proxy(server.base_url))
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


def test_the_streamed_completion_is_the_plain_one(start_proxy, served) -> None:
    plain_server = served([plain_reply(PLAIN)])
    stream_server = served([event_stream_head(), sse(TEXT_CHUNKS)])
    plain = start_proxy(plain_server.base_url, name="plain").request_json(REQUEST, timeout=30)
    assert "Completion" in plain
    assert stream(start_proxy(stream_server.base_url, name="streamed"))[-1] == plain
    # A provider that ignores "stream" answers whole: one delta per block, then the same.
    ignoring = stream(start_proxy(plain_server.base_url, name="ignoring"))
    assert ignoring[-1] == plain
    assert text_of(ignoring) == "Héllo, wörld"
