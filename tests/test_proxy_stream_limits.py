"""The proxy's HTTP read path is bounded: a reply larger than ``max_response_bytes``."""

from __future__ import annotations

import contextlib
import socket

import pytest
import requests

from tests.raw_upstream import RawServer
from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import RetryConfig
from theater_py_actors.openai_proxy.errors import ProviderError

KEY = "sk-sim-0123456789-secret"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def endless(connection: socket.socket, server: RawServer) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    block = b" " * 65536
    while not server.stopping.is_set():
        connection.sendall(block)  # OSError once the client hangs up


def client_for(server: RawServer, session: requests.Session, **options: int) -> ChatClient:
    return ChatClient(
        session,
        base_url=server.base_url,
        api_key=KEY,
        timeout_ms=5000,
        retry=RetryConfig(max_retries=0, max_total_timeout_ms=20_000),
        max_connections=2,
        **options,
    )


def test_an_endless_200_body_is_cut_at_max_response_bytes() -> None:
    with RawServer(endless) as server, requests.Session() as session:
        client = client_for(server, session, max_response_bytes=1024 * 1024)
        with contextlib.closing(client), pytest.raises(ProviderError) as info:
            client.complete(BODY)
        assert info.value.kind == "invalid_response"
        assert "max_response_bytes (1048576)" in info.value.message
        assert server.hung_up.wait(10)  # the proxy closed the connection


def test_a_reply_within_the_limit_still_reads() -> None:
    reply = (
        b'{"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "stop", '
        b'"message": {"role": "assistant", "content": "hi"}}]}'
    )

    def answer(connection: socket.socket, server: RawServer) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(reply)}\r\n\r\n".encode()
            + reply
        )

    with RawServer(answer) as server, requests.Session() as session:
        client = client_for(server, session, max_response_bytes=len(reply))
        with contextlib.closing(client):
            assert client.complete(BODY).body["choices"][0]["message"]["content"] == "hi"
