"""The OpenAI proxy actor end to end: the shipped manifest, the runtime, a loopback provider."""

from __future__ import annotations

import concurrent.futures
import json
import logging
from typing import Any

import pytest

from tests.openapi_contract import validate_chat_request
from tests.proxy_fixtures import FAST_RETRIES, KEY, MANIFEST
from theater_py import ActorHandle, ActorStartError, ActorStopped, Runtime
from theater_py.manifest import load_manifest
from theater_py_actors.openai_proxy.simulator import OpenAISimulator


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def generate(handle: ActorHandle, timeout: float = 30, **request: Any) -> dict[str, Any]:
    request.setdefault("messages", [user("Hello there")])
    request.setdefault("max_tokens", 256)
    reply: dict[str, Any] = handle.request_json(
        {"GenerateCompletion": {"request": request}}, timeout=timeout
    )
    return reply


def sent_bodies(sim: OpenAISimulator) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests if r.path.endswith("/chat/completions")]


def test_the_manifest_grants_exactly_the_variable_the_config_names():
    loaded = load_manifest(MANIFEST, {"config": {"api_key_env": "MOONSHOT_API_KEY"}})
    environment = loaded.manifest.handler("environment")
    assert environment.allowed_vars == ("MOONSHOT_API_KEY",)
    default = load_manifest(MANIFEST).manifest.handler("environment")
    assert default.allowed_vars == ("OPENAI_API_KEY",)
    assert not environment.permits("OPENAI_API_KEY")


def test_a_completion_round_trip(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    reply = generate(proxy, model="gpt-4o", system="Be brief.", temperature=0.7)
    completion = reply["Completion"]["completion"]
    assert completion["content"][0]["type"] == "text"
    assert completion["content"][0]["text"].startswith("You said: Hello there")
    assert completion["stop_reason"] == "end_turn"
    assert completion["role"] == "assistant"
    assert completion["type"] == "message"
    usage = completion["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["cost_usd"] > 0  # gpt-4o is in the catalog
    (body,) = sent_bodies(sim)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["temperature"] == 0.7
    assert body["max_tokens"] == 256  # a non-OpenAI host: max_tokens
    validate_chat_request(body)
    assert sim.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_the_default_model_serves_requests_without_one(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(default_model="gpt-4o-mini")
    generate(proxy, model="")
    generate(proxy)
    assert [b["model"] for b in sent_bodies(sim)] == ["gpt-4o-mini", "gpt-4o-mini"]


def test_a_tool_round_trip(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    weather = {
        "name": "get_weather",
        "description": "Weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    first = generate(
        proxy,
        messages=[user("What is the weather in Paris? Use get_weather.")],
        tools=[weather],
        tool_choice={"type": "auto"},
        disable_parallel_tool_use=True,
    )["Completion"]["completion"]
    assert first["stop_reason"] == "tool_use"
    call = next(part for part in first["content"] if part["type"] == "tool_use")
    assert call["name"] == "get_weather"
    assert isinstance(call["input"], dict) and "city" in call["input"]
    second = generate(
        proxy,
        messages=[
            user("What is the weather in Paris? Use get_weather."),
            {"role": "assistant", "content": first["content"]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": call["id"],
                        "content": [{"type": "text", "text": "18C and sunny"}],
                        "is_error": None,
                    }
                ],
            },
        ],
        tools=[weather],
    )
    assert second["Completion"]["completion"]["stop_reason"] == "end_turn"
    bodies = sent_bodies(sim)
    assert bodies[0]["parallel_tool_calls"] is False
    assert bodies[0]["tool_choice"] == "auto"
    assistant, tool_message = bodies[1]["messages"][1], bodies[1]["messages"][2]
    assert assistant["tool_calls"][0]["id"] == call["id"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == call["input"]
    assert tool_message == {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"}
    for body in bodies:
        validate_chat_request(body)


def test_list_models_makes_no_network_call(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(
        models=[{"id": "local-llm", "max_tokens": 8192, "display_name": "Local LLM"}]
    )
    models = proxy.request_json("ListModels")["ListModels"]["models"]
    assert [m["id"] for m in models] == ["local-llm"]
    assert models[0]["max_tokens"] == 8192
    assert sim.requests_seen == 0


def test_a_reasoning_model_gets_max_completion_tokens_and_no_sampling(
    start_proxy, sim: OpenAISimulator
):
    proxy = start_proxy()
    reply = generate(proxy, model="o3-mini", temperature=0.2, top_p=0.9)
    assert "Completion" in reply  # the simulator rejects what o-series models reject
    (body,) = sent_bodies(sim)
    assert body["max_completion_tokens"] == 256
    assert "max_tokens" not in body and "temperature" not in body and "top_p" not in body


def test_string_content_format(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(content_format="String")
    generate(
        proxy,
        messages=[
            user("one"),
            {
                "role": "user",
                "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}],
            },
        ],
    )
    (body,) = sent_bodies(sim)
    assert body["messages"][1]["content"] == "two\nthree"


def test_a_rate_limit_is_retried_after_the_servers_delay(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    sim.fail_next(429, retry_after_ms="20", times=2)
    reply = generate(proxy)
    assert "Completion" in reply
    assert sim.requests_seen == 3


def test_an_exhausted_quota_is_never_retried(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    sim.fail_next(fault="quota")
    error = generate(proxy)["Error"]
    assert error["kind"] == "quota_exhausted"
    assert error["status"] == 429
    assert error["attempts"] == 1
    assert sim.requests_seen == 1


def test_server_errors_are_retried_until_the_budget_runs_out(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    sim.fail_next(500, times=10)
    error = generate(proxy)["Error"]
    assert error["kind"] == "server_error"
    assert error["attempts"] == FAST_RETRIES["max_retries"] + 1
    assert sim.requests_seen == FAST_RETRIES["max_retries"] + 1


def test_a_connection_reset_is_retried(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    sim.fail_next(fault="reset")
    assert "Completion" in generate(proxy)


def test_a_stalled_provider_times_out_per_attempt(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(timeout_ms=200, retry_config={**FAST_RETRIES, "max_retries": 1})
    sim.fail_next(fault="stall=5000", times=2)
    error = generate(proxy)["Error"]
    assert error["kind"] == "timeout"
    assert error["attempts"] == 2


def test_a_malformed_provider_body_is_an_invalid_response(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(retry_config={**FAST_RETRIES, "max_retries": 0})
    sim.fail_next(fault="malformed")
    assert generate(proxy)["Error"]["kind"] == "invalid_response"


@pytest.mark.parametrize(
    ("request_value", "field"),
    [
        ({"GenerateCompletion": {"request": {"max_tokens": 5}}}, "messages"),
        (
            {
                "GenerateCompletion": {
                    "request": {
                        "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]
                    }
                }
            },
            "content[0]",
        ),
        ({"Summarize": {}}, ""),
        ({"GenerateCompletion": {"request": {"messages": [], "max_tokens": "many"}}}, "max_tokens"),
    ],
)
def test_a_bad_request_is_an_invalid_request_without_a_call(
    start_proxy, sim: OpenAISimulator, request_value: Any, field: str
):
    proxy = start_proxy()
    error = proxy.request_json(request_value)["Error"]
    assert error["kind"] == "invalid_request"
    assert field in error["error"]
    assert sim.requests_seen == 0
    assert "ListModels" in proxy.request_json("ListModels")  # still running


def test_upstream_calls_overlap(runtime: Runtime, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SIM_KEY", KEY)
    with OpenAISimulator(api_key=KEY, latency_ms=300) as slow:
        proxy = runtime.start_actor(
            MANIFEST, {"config": {"base_url": slow.base_url, "api_key_env": "SIM_KEY"}}
        )
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            futures = [pool.submit(generate, proxy) for _ in range(32)]
            replies = [f.result(30) for f in futures]
        assert all("Completion" in r for r in replies)
        # Not timed: the provider itself saw the requests in flight together.
        assert slow.max_in_flight >= 16


def test_deterministic_requests_are_cached(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    first = generate(proxy, temperature=0)["Completion"]["completion"]
    second = generate(proxy, temperature=0)["Completion"]["completion"]
    assert second["content"] == first["content"] and second["usage"]["cached"] is True
    assert sim.requests_seen == 1
    generate(proxy, temperature=0.5)
    generate(proxy, temperature=0.5)
    assert sim.requests_seen == 3


def test_the_cache_survives_a_restart_through_the_store(
    start_proxy, sim: OpenAISimulator, runtime: Runtime
):
    proxy = start_proxy(store_id="proxy-cache")
    first = generate(proxy, temperature=0)["Completion"]["completion"]
    proxy.stop()
    again = start_proxy(store_id="proxy-cache")
    hit = generate(again, temperature=0)["Completion"]["completion"]
    assert hit["content"] == first["content"] and hit["usage"]["cached"] is True
    assert sim.requests_seen == 1


def test_a_missing_key_fails_the_start_naming_the_variable(
    runtime: Runtime, sim: OpenAISimulator, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    with pytest.raises(ActorStartError, match="ABSENT_KEY"):
        runtime.start_actor(MANIFEST, {"config": {"api_key_env": "ABSENT_KEY"}})


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"defualt_model": "gpt-4o"}, "config.defualt_model"),
        ({"retry_config": {"max_retries": -1}}, "config.retry_config.max_retries"),
        ({"content_format": "Markdown"}, "config.content_format"),
    ],
)
def test_a_bad_config_fails_the_start_naming_the_field(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], field: str
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(ActorStartError, match=field.replace(".", r"\.")):
        runtime.start_actor(MANIFEST, {"config": config})


def test_the_seed_minimal_config_works(runtime: Runtime, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    proxy = runtime.start_actor(MANIFEST, {"config": {"default_model": "gpt-4o"}})
    assert proxy.request_json("ListModels")["ListModels"]["models"][0]["provider"] == "openai"


def test_the_key_is_never_in_events_logs_or_errors(
    start_proxy, sim: OpenAISimulator, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    proxy = start_proxy()
    generate(proxy)
    sim.fail_next(401, times=1)
    error = generate(proxy)["Error"]
    assert error["kind"] == "authentication"
    everything = json.dumps([e.to_json() for e in proxy.events()]) + caplog.text + str(error)
    assert KEY not in everything
    assert KEY not in repr(proxy)


def test_stopping_during_a_backoff_answers_at_once(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(
        retry_config={**FAST_RETRIES, "initial_delay_ms": 60000, "max_delay_ms": 60000}
    )
    sim.fail_next(503, times=5)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(generate, proxy)
        assert sim.wait_for_requests(1, timeout=10)
        proxy.stop(timeout=10)
        # The caller hears at once (not after the 60 s backoff): either the woken retry's
        # error reply or the runtime's ActorStopped, whichever comes first.
        try:
            reply = pending.result(10)
        except ActorStopped:
            return
    assert reply["Error"]["kind"] in ("connection", "overloaded")


def test_no_accepted_request_is_lost_when_the_proxy_crashes(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SIM_KEY", KEY)
    with OpenAISimulator(api_key=KEY, latency_ms=100) as slow:
        proxy = runtime.start_actor(
            MANIFEST, {"config": {"base_url": slow.base_url, "api_key_env": "SIM_KEY"}}
        )
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(generate, proxy) for _ in range(24)]
            assert slow.wait_for_requests(8, timeout=10)  # calls are on the wire
            proxy.crash("test crash")
            futures += [pool.submit(generate, proxy) for _ in range(8)]
            replies = [f.result(30) for f in futures]
    assert all("Completion" in r for r in replies)
    assert [e.event_type for e in proxy.events()].count("actor-start") == 2


def test_credentials_in_the_base_url_are_never_logged(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SIM_KEY", KEY)
    proxy = runtime.start_actor(
        MANIFEST,
        {"config": {"base_url": "http://user:hunter2@127.0.0.1:9/v1", "api_key_env": "SIM_KEY"}},
    )
    assert proxy.request_json("ListModels")
    assert "serving http://127.0.0.1:9/v1" in caplog.text
    assert "hunter2" not in caplog.text


def test_a_completion_keeps_the_provider_s_request_id(start_proxy, sim: OpenAISimulator):
    completion = generate(start_proxy())["Completion"]["completion"]
    assert completion["request_id"] == "req_sim1"
