"""Review of the proxy's security work: what a hostile upstream or a careless URL still leaked.

Each exchange is real HTTP on loopback, against a server that sends exact bytes (a header
echoing the key, a malformed header line), so the texts are the ones requests, urllib3 and
http.client really produce.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.key_leaks import KEY, fragments
from tests.raw_upstream import RawServer
from theater_py._http import url_without_secrets
from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import RetryConfig, parse_init
from theater_py_actors.openai_proxy.errors import ProviderError, classify_response, redact

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@contextlib.contextmanager
def raw_upstream(reply: bytes) -> Iterator[str]:
    """A loopback server answering every request with ``reply``, as is; yields its base URL."""

    def send(connection: socket.socket, server: RawServer) -> None:
        connection.sendall(reply)

    with RawServer(send) as server:
        yield server.base_url


def complete(base_url: str, **options: Any) -> ProviderError:
    """Send one request with a real client; return the error it fails with."""
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=base_url,
            api_key=KEY,
            timeout_ms=options.pop("timeout_ms", 5000),
            retry=RetryConfig(max_retries=0, **options),
            max_connections=1,
        )
        with contextlib.closing(client), pytest.raises(ProviderError) as info:
            client.complete(BODY)
    return info.value


def test_classify_response_redacts_a_request_id_that_echoes_the_key():
    error = classify_response(401, {"X-Request-Id": f"req {KEY}"}, b"{}", secret=KEY)
    assert error.request_id is not None
    assert not fragments(error.request_id)


def test_an_error_reply_s_request_id_header_echoing_the_key_is_redacted():
    reply = (
        f"HTTP/1.1 400 Bad Request\r\nx-request-id: {KEY}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    with raw_upstream(reply) as base_url:
        error = complete(base_url)
    assert error.kind == "bad_request"
    assert not fragments(str(error) + repr(error))


def test_a_2xx_reply_s_request_id_header_echoing_the_key_is_redacted():
    reply = (
        f"HTTP/1.1 200 OK\r\nx-request-id: {KEY}\r\nContent-Length: 8\r\n\r\nnot json"
    ).encode()
    with raw_upstream(reply) as base_url:
        error = complete(base_url)
    assert error.kind == "invalid_response"
    assert not fragments(str(error) + repr(error))


def test_a_malformed_header_line_echoing_the_key_is_not_logged(
    caplog: pytest.LogCaptureFixture,
):
    # urllib3 logs a header it cannot parse, quoting it, with a traceback quoting it again.
    caplog.set_level(logging.DEBUG)
    reply = (
        f"HTTP/1.1 400 Bad Request\r\nX-A: 1\r\n{KEY}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    with raw_upstream(reply) as base_url:
        error = complete(base_url)
    assert error.kind == "bad_request"
    assert "Failed to parse the headers of a reply" in caplog.text  # still said
    assert not fragments(caplog.text + str(error))


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hun@ter2@llm.test:99999/v1",
        "https://user:hun/ter2@llm.test/v1",
        "https://user:hun?ter2@llm.test/v1",
        "https://user:hun#ter2@llm.test/v1",
        "https://user:hun ter2@llm.test:99999/v1",
    ],
)
def test_a_config_error_hides_a_password_holding_a_url_delimiter(url: str):
    # Unencoded, these characters end the host for urlsplit, so the rest once showed.
    with pytest.raises(ValueError, match=r"^config\.base_url: ") as info:
        parse_init({"config": {"base_url": url}})
    assert "ter2" not in str(info.value)
    assert "llm.test" in str(info.value)


def test_redact_masks_userinfo_up_to_its_last_at_sign():
    assert redact("GET https://user:p@ss@host/v1 failed", None) == "GET https://host/v1 failed"
    assert redact("mail me at bob@example.com", None) == "mail me at bob@example.com"


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A loopback port whose accept queue is full: a connect to it hangs (SYNs dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["http", "https"])  # https connects before the request
def test_abandoning_a_call_blocked_in_connect_ends_it(blackhole: str, scheme: str):
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=blackhole.replace("http://", f"{scheme}://"),
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
            thread.join(0.5)  # time to reach the connect, which hangs
            call.abandon("cancelled")
            thread.join(3)  # far less than timeout_ms
            assert not thread.is_alive()
        finally:
            thread.join(15)
            client.close()
    assert errors[0].kind == "connection"


@pytest.mark.parametrize(
    ("state", "path"),
    [
        ({"config": {1: 2}}, "config.1"),
        ({"config": {None: 1}}, "config.None"),
        ({"config": {"retry_config": {2.5: 1}}}, "config.retry_config.2.5"),
    ],
)
def test_a_key_that_is_not_a_string_is_a_config_error_naming_it(state: Any, path: str):
    # From Python a key can be anything; it was an AttributeError or a TypeError.
    with pytest.raises(ValueError, match=rf"^{path}: unknown key \(expected one of"):
        parse_init(state)


def test_a_retry_after_too_large_for_a_float_is_a_provider_error():
    reply = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1e308\r\nContent-Length: 2\r\n\r\n{}"
    with raw_upstream(reply) as base_url:
        error = complete(base_url)
    assert error.kind == "rate_limit"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@[::1]:8080/v1?key=x", "http://[::1]:8080/v1"),
        ("https://[fe80::1%25eth0]/v1", "https://[fe80::1%25eth0]/v1"),
        ("http://u:p@ss@h:1/v1#frag", "http://h:1/v1"),
    ],
)
def test_a_url_in_events_and_reprs_keeps_an_ipv6_host_s_brackets(url: str, shown: str):
    # "http://::1:8080/v1" named no host one could reach.
    assert url_without_secrets(url) == shown


def test_a_long_multi_line_provider_message_is_one_line_and_cut():
    message = "first line\n" + "x" * 10_000 + f"\n{KEY}"
    error = classify_response(
        400, {}, json.dumps({"error": {"message": message}}).encode(), secret=KEY
    )
    assert "\n" not in error.message
    assert len(error.message) <= 2000
    assert error.message.startswith("first line x")
    assert not fragments(str(error))


def test_a_successful_reply_echoing_the_key_does_not_carry_it():
    completion = {
        "id": f"chatcmpl-{KEY}",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"your key is {KEY}"},
                "finish_reason": "stop",
            }
        ],
    }
    body = json.dumps(completion).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    with raw_upstream(reply % (len(body), body)) as base_url, requests.Session() as session:
        client = ChatClient(
            session,
            base_url=base_url,
            api_key=KEY,
            timeout_ms=5000,
            retry=RetryConfig(max_retries=0),
            max_connections=1,
        )
        with contextlib.closing(client):
            result = client.complete(BODY)
    assert result.body["choices"][0]["message"]["content"] == "your key is [redacted]"
    assert not fragments(json.dumps(result.body))
