"""The proxy streaming from the simulator, with each of its stream faults."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.proxy_fixtures import KEY
from theater_py import ActorHandle
from theater_py_actors.openai_proxy.simulator import parse_fault

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def request(text: str, **extra: Any) -> dict[str, Any]:
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    return {"GenerateCompletion": {"request": {"messages": [message], **extra}}}


@pytest.fixture
def proxy_defaults() -> dict[str, Any]:
    return {"max_cache_size": 0, "retry_config": {"initial_delay_ms": 1, "max_delay_ms": 5}}


def stream(handle: ActorHandle, message: Any, timeout: float = 30) -> list[Any]:
    with handle.open_channel_json(message, timeout=timeout) as channel:
        return list(channel)


def text_of(messages: list[Any]) -> str:
    return "".join(m["Delta"]["text"] for m in messages if "Delta" in m)


@pytest.mark.parametrize(
    "fault", ["", "split=3", "split=1,crlf", "token_ms=5", "no_usage", "split=2,no_index"]
)
def test_a_streamed_answer_equals_the_plain_one(start_proxy, sim, fault: str) -> None:
    headers = {"X-Mock-Fault": fault} if fault else {}
    proxy = start_proxy(extra_headers=headers) if fault else start_proxy()
    message = request("Héllo wörld, how are you?")
    plain = proxy.request_json(message, timeout=30)["Completion"]["completion"]
    streamed = stream(proxy, message)
    completion = streamed[-1]["Completion"]["completion"]
    assert text_of(streamed) == completion["content"][0]["text"] == plain["content"][0]["text"]
    if fault == "no_usage":
        assert completion["usage"]["output_tokens"] == 0
    else:
        assert completion["usage"] == plain["usage"]
        assert completion == {
            **plain,
            "id": completion["id"],
            "request_id": completion["request_id"],
        }


@pytest.mark.parametrize("fault", ["", "no_index", "split=5,crlf"])
def test_a_streamed_tool_call(start_proxy, sim, fault: str) -> None:
    proxy = start_proxy(extra_headers={"X-Mock-Fault": fault}) if fault else start_proxy()
    messages = stream(proxy, request("use a tool for Paris", tools=[WEATHER]))
    deltas = [m["ToolUseDelta"] for m in messages if "ToolUseDelta" in m]
    assert deltas[0]["name"] == "get_weather"
    arguments = "".join(d["input_json"] for d in deltas)
    use = messages[-1]["Completion"]["completion"]["content"][0]
    assert use["type"] == "tool_use"
    assert use["id"] == deltas[0]["id"]
    assert use["input"] == json.loads(arguments)


def test_a_mid_stream_error_carries_the_partial_text(start_proxy, sim) -> None:
    proxy = start_proxy(extra_headers={"X-Mock-Fault": "stream_error"})
    messages = stream(proxy, request("one two three"))
    error = messages[-1]["Error"]
    assert error["kind"] == "server_error"
    assert error["partial_text"] == text_of(messages) == "You "
    assert sim.requests_seen == 1


def test_a_stall_mid_stream_ends_idle(start_proxy, sim) -> None:
    proxy = start_proxy(
        extra_headers={"X-Mock-Fault": "stream_stall=20000"}, stream_idle_timeout_ms=300
    )
    error = stream(proxy, request("one two three"))[-1]["Error"]
    assert (error["kind"], error["partial_text"]) == ("timeout", "You ")
    assert sim.wait_for_idle(10)  # the proxy hung up: the simulator's stall ended


def test_the_simulator_streams_sse_to_any_client(sim) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi there"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    with requests.post(
        f"{sim.base_url}/chat/completions", json=body, headers=headers, stream=True, timeout=10
    ) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]"
    chunks = [json.loads(line.removeprefix(b"data: ")) for line in lines[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == (
        "You said: hi there"
    )


def test_stream_faults_parse_and_unknown_ones_are_named() -> None:
    fault = parse_fault("token_ms=5,split=3,crlf,no_index,no_usage,stream_error,stream_stall=9")
    assert (fault.token_ms, fault.split, fault.stream_stall_ms) == (5, 3, 9)
    assert fault.crlf and fault.no_index and fault.no_usage and fault.stream_error
    with pytest.raises(ValueError, match="splitt"):
        parse_fault("splitt=3")


def test_many_streams_at_once_share_the_pool(start_proxy, sim) -> None:
    import concurrent.futures

    proxy = start_proxy(max_concurrent_requests=4, extra_headers={"X-Mock-Fault": "token_ms=1"})
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda n: stream(proxy, request(f"question {n}")), range(12)))
    for n, messages in enumerate(results):
        assert text_of(messages) == f"You said: question {n}"
        assert "Completion" in messages[-1]
    assert sim.max_in_flight <= 4


def test_an_unexpected_failure_ends_the_stream_scrubbed(
    start_proxy, sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    from theater_py_actors.openai_proxy import streaming

    def broken(self: Any, chunk: Any) -> Any:
        raise RuntimeError(f"cannot read chunk with Authorization: Bearer {KEY}")

    monkeypatch.setattr(streaming.StreamAssembler, "add", broken)
    proxy = start_proxy()
    messages = stream(proxy, request("hi"))
    error = messages[-1]["Error"]
    assert error["kind"] == "invalid_response"
    assert KEY not in json.dumps(messages)
    assert "ListModels" in proxy.request_json("ListModels")  # still serving


def test_streams_one_after_another_reuse_one_connection(start_proxy, sim) -> None:
    proxy = start_proxy()
    for n in range(3):
        assert text_of(stream(proxy, request(f"again {n}"))) == f"You said: again {n}"
    assert sim.requests_seen == 3
    assert sim.connections_opened == 1  # each stream's end left the connection reusable
