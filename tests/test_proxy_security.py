"""The API key never leaks: not through a header error, a pool thread or an error body.

Every test runs a real HTTP exchange on loopback (the simulator) with a real key, so the
exceptions are the ones requests and http.client really raise.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import pytest
import requests

from tests.key_leaks import KEY, fragments
from theater_py import ActorHandle, ActorStartError
from theater_py_actors.openai_proxy import actor as proxy_actor
from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import ProxyConfig, RetryConfig, parse_init, read_api_key
from theater_py_actors.openai_proxy.errors import ProviderError, classify_response, excerpt, redact
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {"api_key": KEY}


@pytest.fixture
def proxy_defaults() -> dict[str, Any]:
    return {"retry_config": {"max_retries": 0}}


def generate(handle: ActorHandle) -> dict[str, Any]:
    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    reply: dict[str, Any] = handle.request_json(
        {"GenerateCompletion": {"request": request}}, timeout=30
    )
    return reply


def everything(handle: ActorHandle, caplog: pytest.LogCaptureFixture, *more: Any) -> str:
    """The events, the log and whatever else a test got, as one text."""
    events = json.dumps([event.to_json() for event in handle.events()])
    return "\n".join([events, caplog.text, *map(repr, more), *map(str, more)])


# --- item 1: a key with a newline --------------------------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", " \n", "\t"])
def test_a_key_read_with_surrounding_whitespace_works(
    start_proxy, sim: OpenAISimulator, caplog: pytest.LogCaptureFixture, padding: str
):
    caplog.set_level(logging.DEBUG)
    proxy = start_proxy(key=f"{padding}{KEY}{padding}")
    reply = generate(proxy)
    assert "Completion" in reply
    assert sim.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert not fragments(everything(proxy, caplog, reply))


@pytest.mark.parametrize(
    "bad_key", [f"{KEY[:20]}\n{KEY[20:]}", f"{KEY}\x01x", f"{KEY}\x7f", f"sk-\u2019{KEY}"]
)
def test_a_key_a_header_cannot_carry_fails_the_start_naming_only_the_variable(
    start_proxy, caplog: pytest.LogCaptureFixture, bad_key: str
):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ActorStartError) as info:
        start_proxy(key=bad_key)
    assert "SIM_KEY" in str(info.value)
    assert not fragments(str(info.value) + repr(info.value) + caplog.text)


def test_read_api_key_strips_and_checks():
    assert read_api_key("V", f" {KEY}\n") == KEY
    assert read_api_key("V", "caf\xe9-key") == "caf\xe9-key"  # latin-1 is fine
    for bad in (None, "", " \n"):
        with pytest.raises(ValueError, match="V is not set or is empty"):
            read_api_key("V", bad)


def test_the_client_turns_a_refused_header_into_a_configuration_error(sim: OpenAISimulator):
    # Real requests and http.client: they raise a plain ValueError quoting the header.
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=sim.base_url,
            api_key=KEY + "\n",
            timeout_ms=5000,
            retry=RetryConfig(),
            max_connections=2,
        )
        with contextlib.closing(client), pytest.raises(ProviderError) as info:
            client.complete(BODY)
    error = info.value
    assert (error.kind, error.attempts) == ("configuration", 1)
    assert error.message == "request could not be sent: ValueError"
    assert sim.requests_seen == 0


def test_a_refused_header_in_the_actor_is_an_error_reply_not_a_crash(
    start_proxy,
    sim: OpenAISimulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    # Defeat the check at init, to show the second line of defence alone holds.
    monkeypatch.setattr(proxy_actor, "read_api_key", lambda _variable, value: value)
    caplog.set_level(logging.DEBUG)
    proxy = start_proxy(key=KEY + "\n")
    reply = generate(proxy)
    assert reply["Error"]["kind"] == "configuration"
    assert not fragments(everything(proxy, caplog, reply))
    # The attempt is in the chain, its outcome by type only.
    http = [(e.event_type, e.data) for e in proxy.events() if e.event_type.startswith("http")]
    assert [kind for kind, _ in http] == ["http-request", "http-error"]
    assert http[1][1]["error"] == "ValueError"
    assert "ListModels" in proxy.request_json("ListModels")  # still answering


def test_any_exception_on_a_pool_thread_is_a_scrubbed_error_reply(
    start_proxy, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"cannot read reply sent with Authorization: Bearer {KEY}")

    monkeypatch.setattr(proxy_actor, "from_chat_response", broken)
    caplog.set_level(logging.DEBUG)
    proxy = start_proxy()
    reply = generate(proxy)
    error = reply["Error"]
    assert error["kind"] == "invalid_response"
    assert "RuntimeError" in error["error"]
    text = everything(proxy, caplog, reply)
    assert not fragments(text)
    assert "actor-crash" not in text and "request-error" not in text
    assert "RuntimeError" in caplog.text  # logged: its type and a scrubbed text


# --- item 2: redact first, then cut ------------------------------------------------------


def test_a_key_echoed_across_the_cut_is_redacted():
    # Whitespace collapses to nothing, so the raw cut once fell inside the key.
    for padding in (2000 - 107, 497 - 14, 490):
        body = b" " * padding + KEY.encode() + b" and more text after it"
        message = classify_response(500, {}, body, secret=KEY).message
        assert not fragments(message), padding
        assert len(message) < 600


def test_an_error_body_echoing_the_key_through_the_loopback_is_redacted(sim: OpenAISimulator):
    sim.fail_next(400, body="x" * 480 + f" {KEY} " + "y" * 3000)
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=sim.base_url,
            api_key=KEY,
            timeout_ms=5000,
            retry=RetryConfig(max_retries=0),
            max_connections=2,
        )
        with contextlib.closing(client), pytest.raises(ProviderError) as info:
            client.complete(BODY)
    assert info.value.kind == "bad_request"
    assert not fragments(str(info.value) + repr(info.value))


@pytest.mark.parametrize(
    "echo",
    [
        "Authorization: Bearer sk-other-0123456789",
        "authorization: bearer sk-other-0123456789",
        "{'Authorization': 'Bearer sk-other-0123456789'}",
        "b'Bearer sk-other-0123456789\\n'",
        "Authorization=Bearer%20sk-other-0123456789",
        "BEARER\tsk-other-0123456789",
    ],
)
def test_a_bearer_header_echoed_in_any_form_is_redacted(echo: str):
    body = json.dumps({"error": {"message": f"bad header {echo}", "type": "x"}}).encode()
    message = classify_response(400, {}, body, secret=KEY).message
    assert "sk-other-0123456789" not in message
    assert "[redacted]" in message


def test_the_key_s_ends_are_redacted_on_their_own():
    text = f"key starts {KEY[:8]} ... and ends {KEY[-8:]}, masked {KEY[:10]}****{KEY[-4:]}"
    cleaned = redact(text, KEY)
    assert KEY[:8] not in cleaned and KEY[-8:] not in cleaned
    assert cleaned.startswith("key starts [redacted] ... and ends [redacted]")


def test_excerpt_redacts_then_cuts():
    assert excerpt("a\n\n b  " + KEY, KEY) == "a b [redacted]"
    assert excerpt("z" * 1000, KEY, limit=10) == "zzzzzzz..."
    assert not fragments(excerpt(" " * 5 + KEY, KEY, limit=30))


def test_a_short_key_is_still_redacted_whole():
    assert redact("key abc123 refused", "abc123") == "key [redacted] refused"


# --- item 9: URL credentials --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@llm.test/v1?api-key=hunter2&api-version=2024",
        "https://llm.test/v1?key=hunter2",
        "https://llm.test/v1?token=hunter2",
        "https://llm.test/v1?x=1&sig=hunter2",
        "ftp://user:hunter2@llm.test/v1",
        "https://user:hunter2@llm.test:99999/v1",
        "https://user:hunter2@[::1/v1",
    ],
)
def test_a_config_error_never_shows_url_credentials(url: str):
    with pytest.raises(ValueError, match=r"^config\.base_url: ") as info:
        parse_init({"config": {"base_url": url}})
    assert "hunter2" not in str(info.value)


def test_reprs_never_show_url_credentials():
    config = ProxyConfig(base_url="http://user:hunter2@127.0.0.1:9/v1")
    assert "hunter2" not in repr(config)
    assert "127.0.0.1:9/v1" in repr(config)
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=config.base_url,
            api_key=KEY,
            timeout_ms=1000,
            retry=RetryConfig(),
            max_connections=1,
        )
        with contextlib.closing(client):
            assert repr(client) == "<ChatClient http://127.0.0.1:9/v1>"


def test_a_connection_error_never_shows_url_credentials(
    start_proxy, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    # Nothing listens on port 9 of the loopback: the connection is refused.
    proxy = start_proxy(base_url="http://user:hunter2@127.0.0.1:9/v1")
    reply = generate(proxy)
    assert reply["Error"]["kind"] == "connection"
    text = everything(proxy, caplog, reply)
    assert "hunter2" not in text
    assert "127.0.0.1:9/v1" in text  # the events and the log still say where it went


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://u:p@h/v1?key=abc&b=2 failed", "GET https://h/v1?key=[redacted]&b=2 failed"),
        ("url: /v1/chat?api-key=abc", "url: /v1/chat?api-key=[redacted]"),
        ("url: /v1/chat?api_key=abc", "url: /v1/chat?api_key=[redacted]"),
        ("see ?TOKEN=abc#frag", "see ?TOKEN=[redacted]#frag"),
        ("mail me at bob@example.com", "mail me at bob@example.com"),
        ("?monkey=1&keyboard=2", "?monkey=1&keyboard=2"),
    ],
)
def test_redact_masks_url_secrets_only(text: str, expected: str):
    assert redact(text, None) == expected
