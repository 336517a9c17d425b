"""The offline OpenAI-compatible simulator: endpoints, replies, faults, lifecycle and CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from theater_py_actors.openai_proxy.simulator import (
    Fault,
    OpenAISimulator,
    chat_completion,
    parse_fault,
)

KEY = "sk-sim-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROOT = Path(__file__).resolve().parent.parent

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "detail": {"type": "boolean"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    """Build a one-turn chat request."""
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(api_key=KEY) as simulator:
        yield simulator


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(AUTH)
        yield session


def post(
    http: requests.Session, sim: OpenAISimulator, body: Any, **kwargs: Any
) -> requests.Response:
    """POST a chat completion to the simulator."""
    return http.post(f"{sim.base_url}/chat/completions", json=body, **kwargs)


def reply_of(response: requests.Response) -> dict[str, Any]:
    """Return the first choice of a successful reply."""
    assert response.status_code == 200, response.text
    choice: dict[str, Any] = response.json()["choices"][0]
    return choice


def assert_openai_error(
    response: requests.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """Check an error reply's status and shape, and return its ``error`` object."""
    assert response.status_code == status
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] == code
    return error


# --- lifecycle -----------------------------------------------------------------------------


def test_base_url_is_loopback_with_the_bound_port():
    with OpenAISimulator() as simulator:
        assert simulator.base_url.startswith("http://127.0.0.1:")
        assert simulator.base_url.endswith("/v1")
        assert int(simulator.base_url.split(":")[2].split("/")[0]) > 0


def test_stop_is_idempotent_and_a_simulator_starts_once():
    simulator = OpenAISimulator().start()
    simulator.stop()
    simulator.stop()
    with pytest.raises(RuntimeError, match="starts once"):
        simulator.start()
    with pytest.raises(RuntimeError, match="not running"):
        _ = simulator.base_url


def test_stop_closes_the_port_and_joins_every_thread(http: requests.Session):
    simulator = OpenAISimulator().start()
    url = simulator.base_url
    assert http.get(f"{url}/models").status_code == 200  # leaves a keep-alive connection open
    simulator.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("openai-simulator")]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/models", timeout=2)


def test_stop_does_not_wait_for_a_stalled_request():
    simulator = OpenAISimulator().start()
    failures: list[Exception] = []

    def stalled() -> None:
        try:
            requests.post(
                f"{simulator.base_url}/chat/completions",
                json=chat(),
                headers={"X-Mock-Fault": "stall"},
                timeout=60,
            )
        except requests.RequestException as exc:
            failures.append(exc)

    client = threading.Thread(target=stalled)
    client.start()
    assert simulator.wait_for_requests(1, timeout=5)
    simulator.stop()
    client.join(5)
    assert not client.is_alive()
    assert isinstance(failures[0], requests.ConnectionError)
    assert not [t for t in threading.enumerate() if t.name.startswith("openai-simulator")]


# --- chat completions ----------------------------------------------------------------------


def test_a_reply_echoes_the_last_user_text(http: requests.Session, sim: OpenAISimulator):
    response = post(http, sim, chat("What is the capital of France?"))
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o"
    assert body["id"] == "chatcmpl-sim1"
    assert response.headers["x-request-id"] == "req_sim1"
    assert body["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "You said: What is the capital of France?",
            "refusal": None,
        },
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert body["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 8,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def test_replies_are_deterministic():
    request = chat("same words", tools=[WEATHER_TOOL])
    assert chat_completion(request, 7) == chat_completion(request, 7)


def test_a_long_text_is_summarised():
    words = " ".join(f"w{i}" for i in range(50))
    _, body = chat_completion(chat(words))
    content = body["choices"][0]["message"]["content"]
    assert content == "You said: " + " ".join(f"w{i}" for i in range(30)) + " ..."


def test_content_parts_are_read(http: requests.Session, sim: OpenAISimulator):
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "please"},
    ]
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": parts},
        ],
    }
    assert (
        reply_of(post(http, sim, body))["message"]["content"] == "You said: Describe [image] please"
    )


def test_a_tool_named_in_the_prompt_is_called(http: requests.Session, sim: OpenAISimulator):
    choice = reply_of(
        post(http, sim, chat("Call get_weather for Paris", tools=[TIME_TOOL, WEATHER_TOOL]))
    )
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    assert arguments == {"city": "sample", "unit": "celsius", "days": 1}
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]


def test_use_a_tool_calls_the_first_tool(http: requests.Session, sim: OpenAISimulator):
    choice = reply_of(post(http, sim, chat("Please use a tool", tools=[TIME_TOOL, WEATHER_TOOL])))
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}


def test_tools_are_not_called_unless_asked(http: requests.Session, sim: OpenAISimulator):
    choice = reply_of(post(http, sim, chat("Just chat", tools=[WEATHER_TOOL])))
    assert (choice["finish_reason"], choice["message"]["content"]) == (
        "stop",
        "You said: Just chat",
    )


@pytest.mark.parametrize(
    ("tool_choice", "called"),
    [
        ("none", None),
        ("required", "get_time"),
        ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
    ],
)
def test_tool_choice_is_obeyed(
    http: requests.Session, sim: OpenAISimulator, tool_choice: Any, called: str | None
):
    request = chat("use a tool", tools=[TIME_TOOL, WEATHER_TOOL], tool_choice=tool_choice)
    message = reply_of(post(http, sim, request))["message"]
    names = [call["function"]["name"] for call in message.get("tool_calls", [])]
    assert names == ([called] if called else [])


def test_a_tool_result_gets_a_text_reply(http: requests.Session, sim: OpenAISimulator):
    body = chat("Call get_weather", tools=[WEATHER_TOOL])
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    ]
    choice = reply_of(post(http, sim, body))
    assert (choice["finish_reason"], choice["message"]["content"]) == (
        "stop",
        "Tool result: 18C and sunny",
    )


def test_json_mode_replies_with_an_object(http: requests.Session, sim: OpenAISimulator):
    content = reply_of(post(http, sim, chat("hi", response_format={"type": "json_object"})))[
        "message"
    ]["content"]
    assert json.loads(content) == {"reply": "You said: hi"}


def test_a_json_schema_reply_matches_the_schema(http: requests.Session, sim: OpenAISimulator):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {
                "type": "object",
                "properties": {"zip": {"type": ["string", "null"]}},
                "required": ["zip"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "age", "tags", "address"],
        "additionalProperties": False,
    }
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": schema, "strict": True},
    }
    content = reply_of(post(http, sim, chat("hi", response_format=response_format)))["message"][
        "content"
    ]
    jsonschema.validate(json.loads(content), schema)


@pytest.mark.parametrize("limit_key", ["max_tokens", "max_completion_tokens"])
def test_the_token_limit_cuts_the_reply(
    http: requests.Session, sim: OpenAISimulator, limit_key: str
):
    choice = reply_of(post(http, sim, chat("one two three four five", **{limit_key: 3})))
    assert (choice["finish_reason"], choice["message"]["content"]) == ("length", "You said: one")
    assert (
        post(http, sim, chat("one two three four five", **{limit_key: 3})).json()["usage"][
            "completion_tokens"
        ]
        == 3
    )


def test_a_stop_sequence_ends_the_reply(http: requests.Session, sim: OpenAISimulator):
    choice = reply_of(post(http, sim, chat("alpha STOP beta", stop=["STOP"])))
    assert choice["message"]["content"] == "You said: alpha "


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": ["hi"]}, "messages[0]"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
    ],
)
def test_invalid_requests_get_a_400_naming_the_param(
    http: requests.Session, sim: OpenAISimulator, body: Any, param: str
):
    assert assert_openai_error(post(http, sim, body), 400)["param"] == param


def test_a_body_that_is_not_json_gets_a_400(http: requests.Session, sim: OpenAISimulator):
    response = http.post(f"{sim.base_url}/chat/completions", data=b"{nope")
    assert_openai_error(response, 400)


def test_reasoning_models_reject_max_tokens_and_temperature(
    http: requests.Session, sim: OpenAISimulator
):
    max_tokens = chat(model="o3-mini", max_tokens=10)
    error = assert_openai_error(post(http, sim, max_tokens), 400, "unsupported_parameter")
    assert "max_completion_tokens" in error["message"]
    assert error["param"] == "max_tokens"
    temperature = chat(model="gpt-5", temperature=0.2)
    assert (
        assert_openai_error(post(http, sim, temperature), 400, "unsupported_value")["param"]
        == "temperature"
    )
    assert reply_of(post(http, sim, chat(model="o3", max_completion_tokens=10, temperature=1)))


@pytest.mark.parametrize("param", ["stop", "parallel_tool_calls"])
def test_o3_and_o4_mini_reject_stop_and_parallel_tool_calls(
    http: requests.Session, sim: OpenAISimulator, param: str
):
    for model in ("o3", "o4-mini"):
        body = chat(model=model, **{param: ["x"] if param == "stop" else False})
        error = assert_openai_error(post(http, sim, body), 400, "unsupported_parameter")
        assert error["param"] == param


def test_gpt_5_chat_is_a_chat_model(http: requests.Session, sim: OpenAISimulator):
    body = chat(model="gpt-5-chat-latest", max_tokens=10, temperature=0.2, stop=["x"])
    assert reply_of(post(http, sim, body))


def test_unknown_models_are_refused_only_when_asked(http: requests.Session):
    with OpenAISimulator(models=["only-this"], reject_unknown_models=True) as simulator:
        assert_openai_error(post(http, simulator, chat()), 404, "model_not_found")
        assert reply_of(post(http, simulator, chat(model="only-this")))
    with OpenAISimulator() as simulator:
        assert reply_of(post(http, simulator, chat(model="anything-goes")))


# --- models, auth, routing -----------------------------------------------------------------


def test_models_are_listed(http: requests.Session):
    with OpenAISimulator(models=["m1", "m2"]) as simulator:
        body = http.get(f"{simulator.base_url}/models").json()
        assert body["object"] == "list"
        assert [(m["id"], m["object"]) for m in body["data"]] == [("m1", "model"), ("m2", "model")]
        assert http.get(f"{simulator.base_url}/models/m2").json()["id"] == "m2"
        assert_openai_error(http.get(f"{simulator.base_url}/models/m3"), 404, "model_not_found")


def test_the_key_is_checked(sim: OpenAISimulator):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        assert_openai_error(
            requests.post(
                f"{sim.base_url}/chat/completions", json=chat(), headers=headers, timeout=5
            ),
            401,
            "invalid_api_key",
        )
        assert_openai_error(
            requests.get(f"{sim.base_url}/models", headers=headers, timeout=5),
            401,
            "invalid_api_key",
        )
    assert requests.get(f"{sim.base_url}/models", headers=AUTH, timeout=5).status_code == 200


def test_unknown_routes_and_methods(http: requests.Session, sim: OpenAISimulator):
    assert_openai_error(http.get(f"{sim.base_url}/embeddings"), 404)
    assert_openai_error(http.get(f"{sim.base_url}/chat/completions"), 405)
    assert_openai_error(http.post(f"{sim.base_url}/models", json={}), 405)


def test_connections_are_kept_alive_and_every_reply_has_a_length(
    http: requests.Session, sim: OpenAISimulator
):
    responses = [
        post(http, sim, chat()),
        post(http, sim, {"model": "gpt-4o"}),
        post(http, sim, chat(), headers={"X-Mock-Fault": "status=503"}),
        http.get(f"{sim.base_url}/models"),
    ]
    assert all(int(r.headers["Content-Length"]) == len(r.content) for r in responses)
    assert sim.connections_opened == 1


def test_requests_are_recorded(http: requests.Session, sim: OpenAISimulator):
    post(http, sim, chat("first"))
    http.get(f"{sim.base_url}/models")
    first, second = sim.requests
    assert (first.method, first.path, first.body) == ("POST", "/v1/chat/completions", chat("first"))
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(first)
    assert (second.method, second.path, second.body) == ("GET", "/v1/models", None)
    assert sim.last_body is None
    assert sim.requests_seen == 2
    assert sim.max_in_flight == 1


# --- faults --------------------------------------------------------------------------------


def test_latency_delays_the_reply(http: requests.Session, sim: OpenAISimulator):
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(http, sim, chat(), headers={"X-Mock-Fault": "latency=60000"}, timeout=0.2)
    assert reply_of(post(http, sim, chat(), headers={"X-Mock-Fault": "latency=1"}))


def test_a_status_fault_answers_in_openai_s_shape(http: requests.Session, sim: OpenAISimulator):
    response = post(http, sim, chat(), headers={"X-Mock-Fault": "status=429,retry_after=1"})
    assert_openai_error(response, 429, "rate_limit_exceeded")
    assert response.headers["Retry-After"] == "1"


def test_status_fault_headers(http: requests.Session, sim: OpenAISimulator):
    fault = "status=503; retry_after_ms=250; should_retry=false"
    response = post(http, sim, chat(), headers={"X-Mock-Fault": fault})
    assert response.status_code == 503
    assert (response.headers["retry-after-ms"], response.headers["x-should-retry"]) == (
        "250",
        "false",
    )


def test_a_quota_fault(http: requests.Session, sim: OpenAISimulator):
    error = assert_openai_error(
        post(http, sim, chat(), headers={"X-Mock-Fault": "quota"}), 429, "insufficient_quota"
    )
    assert error["type"] == "insufficient_quota"


def test_a_reset_fault_resets_the_connection(http: requests.Session, sim: OpenAISimulator):
    with pytest.raises(requests.ConnectionError) as info:
        post(http, sim, chat(), headers={"X-Mock-Fault": "reset"})
    assert "reset" in str(info.value).lower() or "aborted" in str(info.value).lower()
    assert reply_of(post(http, sim, chat()))  # the next request gets a fresh connection


def test_a_stall_ends_when_the_client_gives_up(http: requests.Session, sim: OpenAISimulator):
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(http, sim, chat(), headers={"X-Mock-Fault": "stall"}, timeout=0.2)
    assert sim.wait_for_idle(timeout=5)


def test_a_timed_stall_hangs_up_without_a_reply(http: requests.Session, sim: OpenAISimulator):
    with pytest.raises(requests.ConnectionError):
        post(http, sim, chat(), headers={"X-Mock-Fault": "stall=1"}, timeout=30)


def test_a_body_stall_sends_the_headers_only(http: requests.Session, sim: OpenAISimulator):
    response = post(
        http, sim, chat(), headers={"X-Mock-Fault": "stall_body"}, timeout=0.2, stream=True
    )
    with response:
        assert response.status_code == 200
        with pytest.raises(requests.ConnectionError):
            _ = response.content


def test_a_malformed_fault_breaks_the_body(http: requests.Session, sim: OpenAISimulator):
    response = post(http, sim, chat(), headers={"X-Mock-Fault": "malformed"})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_an_invalid_fault_header_gets_a_400_naming_it(http: requests.Session, sim: OpenAISimulator):
    error = assert_openai_error(post(http, sim, chat(), headers={"X-Mock-Fault": "explode"}), 400)
    assert error["message"] == "X-Mock-Fault: unknown fault item 'explode'"


def test_queued_faults_apply_to_the_next_requests_in_order(
    http: requests.Session, sim: OpenAISimulator
):
    sim.fail_next(status=500, times=2)
    sim.fail_next(fault="quota")
    statuses = [post(http, sim, chat()).status_code for _ in range(4)]
    assert statuses == [500, 500, 429, 200]


def test_a_header_fault_leaves_the_queue_alone(http: requests.Session, sim: OpenAISimulator):
    sim.fail_next(status=502)
    assert post(http, sim, chat(), headers={"X-Mock-Fault": "status=504"}).status_code == 504
    assert post(http, sim, chat()).status_code == 502


def test_a_queued_fault_with_its_own_body_and_headers(http: requests.Session, sim: OpenAISimulator):
    sim.fail_next(
        status=400,
        body={"error": {"type": "invalid_request_error", "message": "custom"}},
        headers={"x-request-id": "req_custom"},
        retry_after="3",
    )
    response = post(http, sim, chat())
    assert response.json() == {"error": {"type": "invalid_request_error", "message": "custom"}}
    assert (response.headers["Retry-After"], response.headers["x-request-id"]) == (
        "3",
        "req_custom",
    )
    sim.fail_next(status=502, body="<html>bad gateway</html>")
    assert post(http, sim, chat()).text == "<html>bad gateway</html>"


def test_clear_faults(http: requests.Session, sim: OpenAISimulator):
    sim.fail_next(status=500, times=3)
    sim.clear_faults()
    assert post(http, sim, chat()).status_code == 200


def test_fail_next_needs_something_to_do(sim: OpenAISimulator):
    with pytest.raises(ValueError, match="needs a status or a fault"):
        sim.fail_next()
    with pytest.raises(ValueError, match="unknown fault item"):
        sim.fail_next(fault="teleport")


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("latency=250", Fault(latency_ms=250)),
        ("status=429,retry_after=1", Fault(status=429, retry_after="1")),
        (
            "status=503;retry_after_ms=50;should_retry=true",
            Fault(status=503, retry_after_ms="50", should_retry="true"),
        ),
        ("quota", Fault(quota=True)),
        ("reset", Fault(reset=True)),
        ("malformed", Fault(malformed=True)),
        ("stall", Fault(stall_ms=300_000)),
        ("stall=1500", Fault(stall_ms=1500)),
        ("stall_body=10", Fault(stall_body_ms=10)),
        (" latency = 5 ; status = 500 ", Fault(latency_ms=5, status=500)),
        ("", Fault()),
    ],
)
def test_parse_fault(text: str, fault: Fault):
    assert parse_fault(text) == fault


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency=soon", "latency: expected milliseconds, got 'soon'"),
        ("latency=-1", "latency: expected milliseconds, got '-1'"),
        ("latency", "latency: expected milliseconds, got None"),
        ("status=99", "status: expected an HTTP status, got '99'"),
        ("quota=yes", "unknown fault item 'quota=yes'"),
        ("retry_after", "unknown fault item 'retry_after'"),
        ("boom", "unknown fault item 'boom'"),
    ],
)
def test_parse_fault_errors_name_the_item(text: str, message: str):
    with pytest.raises(ValueError) as info:
        parse_fault(text)
    assert str(info.value) == message


# --- the command line ----------------------------------------------------------------------


def test_main_serves_until_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "theater_py_actors.openai_proxy.simulator",
            "--port",
            "0",
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert requests.get(f"{base_url}/models", headers=AUTH, timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_fail_next_refuses_a_status_that_is_not_a_code():
    from theater_py_actors.openai_proxy.simulator import OpenAISimulator

    with pytest.raises(TypeError, match="status"):
        OpenAISimulator().fail_next("quota")  # type: ignore[arg-type]


def test_main_reads_the_key_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch):
    from theater_py_actors.openai_proxy import simulator

    monkeypatch.delenv("SIM_KEY_UNSET", raising=False)
    with pytest.raises(SystemExit) as exited:
        simulator.main(["--api-key-env", "SIM_KEY_UNSET"])
    assert exited.value.code == 2
