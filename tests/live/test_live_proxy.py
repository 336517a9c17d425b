"""The OpenAI proxy actor against a real llama-cpp-python server running SmolLM2-135M.

Run with ``make test-live``. The assertions are on the proxy's behaviour and the shapes of
its replies, never on what the model says: a 135M model's text is not the point.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
from typing import Any

import pytest

from tests.live.server import LlamaServer
from theater_py import ActorHandle

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def generate(proxy: ActorHandle, **request: Any) -> dict[str, Any]:
    """Send one request; small ``max_tokens`` and ``temperature`` 0 unless given."""
    request.setdefault("messages", [user("Say hello.")])
    request.setdefault("max_tokens", 12)
    request.setdefault("temperature", 0)
    reply: dict[str, Any] = proxy.request_json(
        {"GenerateCompletion": {"request": request}}, timeout=150
    )
    return reply


def completion(reply: dict[str, Any]) -> dict[str, Any]:
    assert "Completion" in reply, reply
    result: dict[str, Any] = reply["Completion"]["completion"]
    return result


def error(reply: dict[str, Any]) -> dict[str, Any]:
    assert "Error" in reply, reply
    result: dict[str, Any] = reply["Error"]
    return result


def text_of(result: dict[str, Any]) -> str:
    return "".join(part["text"] for part in result["content"] if part["type"] == "text")


def assert_text_completion(result: dict[str, Any]) -> None:
    """The shape of a text reply from the live server."""
    assert result["role"] == "assistant"
    assert result["type"] == "message"
    assert result["stop_reason"] in ("end_turn", "max_tokens")
    assert [part["type"] for part in result["content"]] == ["text"]
    assert result["id"]
    usage = result["usage"]
    assert usage["input_tokens"] > 0
    assert 0 < usage["output_tokens"] <= 12


@pytest.mark.parametrize("content_format", ["Array", "String"])
def test_plain_chat(start_proxy, content_format: str):
    # With "Array", llama-cpp-python's chat template fails on a list of parts (HTTP 500
    # 'can only concatenate str (not "list") to str'): the proxy sends strings instead.
    proxy = start_proxy(content_format=content_format)
    assert_text_completion(completion(generate(proxy)))
    assert_text_completion(completion(generate(proxy)))


def test_the_system_prompt_reaches_the_model(start_proxy):
    proxy = start_proxy(content_format="String")
    short = completion(generate(proxy, system="Be brief."))
    long = completion(generate(proxy, system="Be brief. " * 40))
    assert_text_completion(long)
    # The prompt the server counted grew by the forty repetitions (about 3 tokens each).
    assert long["usage"]["input_tokens"] >= short["usage"]["input_tokens"] + 100


def test_a_multi_turn_conversation(start_proxy):
    proxy = start_proxy(content_format="String")
    first = completion(generate(proxy, messages=[user("My name is Ada.")]))
    assert_text_completion(first)
    history = [
        user("My name is Ada."),
        {"role": "assistant", "content": first["content"]},
        user("What is my name?"),
    ]
    second = completion(generate(proxy, messages=history))
    assert_text_completion(second)
    alone = completion(generate(proxy, messages=[user("What is my name?")]))
    # All three turns went to the model, not just the last one.
    assert second["usage"]["input_tokens"] > alone["usage"]["input_tokens"]


def test_json_mode_returns_json(start_proxy):
    proxy = start_proxy(content_format="String")
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
    }
    # llama-cpp-python's JSON mode takes a schema inside response_format and enforces it
    # with a grammar, so the reply is JSON whatever the model would rather say.
    result = completion(
        generate(
            proxy,
            messages=[user("Is the sky blue? Answer in JSON.")],
            response_format={"type": "json_object", "schema": schema},
            max_tokens=32,
        )
    )
    assert result["stop_reason"] == "end_turn"
    assert isinstance(json.loads(text_of(result))["ok"], bool)


def test_max_tokens_stops_with_max_tokens(start_proxy):
    proxy = start_proxy(content_format="String")
    result = completion(
        generate(proxy, messages=[user("Write a long story about a dragon.")], max_tokens=3)
    )
    assert result["stop_reason"] == "max_tokens"
    assert result["usage"]["output_tokens"] == 3


WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
    },
}


def call_weather(proxy: ActorHandle) -> dict[str, Any]:
    """A forced call of ``get_weather``: the server's grammar makes the model call it."""
    result = completion(
        generate(
            proxy,
            messages=[user("What is the weather in Paris?")],
            tools=[WEATHER],
            tool_choice={"type": "tool", "name": "get_weather"},
            max_tokens=32,
        )
    )
    assert result["stop_reason"] == "tool_use"
    calls = tool_uses(result)
    assert calls
    for call in calls:
        assert call["name"] == "get_weather"
        assert isinstance(call["input"], dict) and isinstance(call["input"]["city"], str)
    return result


def tool_uses(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [part for part in result["content"] if part["type"] == "tool_use"]


def test_a_forced_tool_call_is_one_tool_use_with_an_id(start_proxy):
    result = call_weather(start_proxy(content_format="String"))
    calls = tool_uses(result)
    assert len(calls) == 1, calls
    assert calls[0]["id"]


def test_a_tool_round_trip(start_proxy):
    proxy = start_proxy(content_format="String")
    call = tool_uses(call_weather(proxy))[0]  # the one from tool_calls, with its id
    assert call["id"]
    result = {
        "type": "tool_result",
        "tool_use_id": call["id"],
        "content": [{"type": "text", "text": "18C and sunny"}],
        "is_error": None,
    }
    history = [
        user("What is the weather in Paris?"),
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    answer = completion(generate(proxy, messages=history, tools=[WEATHER]))
    assert_text_completion(answer)


def test_a_wrong_key_is_an_authentication_error(
    start_proxy, server: LlamaServer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-live-wrong-9876543210"
    proxy = start_proxy(key=wrong)
    failure = error(generate(proxy))
    assert failure["kind"] == "authentication"
    assert failure["status"] == 401
    assert failure["attempts"] == 1
    events = json.dumps([event.to_json() for event in proxy.events()])
    everything = json.dumps(failure) + caplog.text + events
    assert wrong not in everything
    assert server.api_key not in everything


def test_a_prompt_beyond_the_context_window(start_proxy, server: LlamaServer):
    proxy = start_proxy(content_format="String")
    failure = error(generate(proxy, messages=[user("hello " * (2 * server.n_ctx))]))
    assert failure["kind"] == "context_window_exceeded"
    assert failure["status"] == 400
    assert failure["attempts"] == 1
    assert "context" in failure["error"]


def test_the_server_killed_mid_request_then_restarted(start_proxy, server: LlamaServer):
    proxy = start_proxy(content_format="String")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            generate,
            proxy,
            messages=[user("Count from 1 to 500, separated by commas.")],
            max_tokens=400,  # seconds of generation: time to see it busy and kill it
        )
        assert server.wait_busy(timeout=60)
        server.kill()
        failure = error(pending.result(150))
    assert failure["kind"] == "connection"
    assert failure["attempts"] == 2  # the retry found the server gone too
    server.start()
    assert_text_completion(completion(generate(proxy)))


def test_a_rejected_parameter_is_not_retried_like_an_outage(start_proxy):
    proxy = start_proxy(
        content_format="String",
        retry_config={
            "max_retries": 3,
            "initial_delay_ms": 10,
            "max_delay_ms": 50,
            "backoff_multiplier": 2.0,
            "max_total_timeout_ms": 60000,
        },
    )
    schema = {"name": "answer", "schema": {"type": "object"}}
    failure = error(generate(proxy, response_format={"type": "json_schema", "json_schema": schema}))
    assert failure["status"] == 500
    assert failure["attempts"] <= 2


def test_a_streamed_completion_concatenates_to_the_final_text(start_proxy):
    # llama-cpp-python streams with "stream": true: an implementation of the protocol
    # that is not ours. Its 0.3 releases send no usage in a stream (they ignore
    # stream_options): the proxy then reports unknown usage, zero counts and no cost,
    # rather than a made-up one.
    proxy = start_proxy(content_format="String")
    request = {"messages": [user("Count from one to five.")], "max_tokens": 12, "temperature": 0}
    opening = {"GenerateCompletion": {"request": request}}
    with proxy.open_channel_json(opening, timeout=150) as channel:
        messages = list(channel)
    assert messages, "the channel closed without a message"
    *deltas, last = messages
    assert all(set(message) == {"Delta"} for message in deltas), deltas
    assert len(deltas) > 1  # it came in pieces
    result = completion(last)
    assert result["stop_reason"] in ("end_turn", "max_tokens")
    assert [part["type"] for part in result["content"]] == ["text"]
    assert "".join(message["Delta"]["text"] for message in deltas) == text_of(result)
    usage = result["usage"]
    if usage["output_tokens"] == 0:  # no usage streamed
        assert usage["input_tokens"] == 0
        assert "cost_usd" not in usage
    else:  # a later release that honours include_usage
        assert 0 < usage["output_tokens"] <= 12
