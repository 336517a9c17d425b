"""What the proxy passes through to the provider and asks of it, over a loopback simulator.

Organization, project, extra headers and query parameters on every request; the longer
timeouts of reasoning models; ``{"ListModels": {"live": true}}``. The timeouts are
checked as the values handed to the client and its deadline, never by waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.proxy_fixtures import KEY
from theater_py import ActorHandle
from theater_py_actors.openai_proxy import actor as proxy_actor
from theater_py_actors.openai_proxy.client import ChatCall, ChatClient
from theater_py_actors.openai_proxy.simulator import OpenAISimulator


@pytest.fixture
def sim_options() -> dict[str, Any]:
    return {
        "api_key": KEY,
        "models": ("gpt-4o", "o3", "gpt-4o-2024-08-06", "my-local-model", "tuned"),
    }


@pytest.fixture
def proxy_defaults() -> dict[str, Any]:
    return {"retry_config": {"initial_delay_ms": 1, "max_delay_ms": 5}}


def generate(handle: ActorHandle, model: str = "gpt-4o") -> dict[str, Any]:
    text = [{"type": "text", "text": "hi"}]
    request = {"model": model, "messages": [{"role": "user", "content": text}]}
    reply: dict[str, Any] = handle.request_json(
        {"GenerateCompletion": {"request": request}}, timeout=30
    )
    return reply


# --- organization, project, extra_headers, extra_query ----------------------------------


def test_headers_and_query_parameters_go_with_every_request(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    proxy = start_proxy(
        organization="org-abc",
        project="proj_xyz",
        extra_headers={"OpenAI-Beta": "assistants=v2"},
        extra_query={"api-version": "2024-10-21"},
    )
    assert "Completion" in generate(proxy)
    assert "ListModels" in proxy.request_json({"ListModels": {"live": True}}, timeout=30)
    chat, models = sim.requests
    for seen in (chat, models):
        assert seen.headers["openai-organization"] == "org-abc"
        assert seen.headers["openai-project"] == "proj_xyz"
        assert seen.headers["openai-beta"] == "assistants=v2"
        assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert chat.path == "/v1/chat/completions?api-version=2024-10-21"
    assert models.path == "/v1/models?api-version=2024-10-21"


def test_without_them_no_such_header_or_query_is_sent(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    assert "Completion" in generate(start_proxy())
    (seen,) = sim.requests
    assert seen.path == "/v1/chat/completions"
    assert "openai-organization" not in seen.headers
    assert "openai-project" not in seen.headers


def test_secret_header_and_query_values_never_reach_an_error_or_a_log(
    start_proxy: Callable[..., ActorHandle],
    sim: OpenAISimulator,
    caplog: pytest.LogCaptureFixture,
):
    header_secret, query_secret = "azure-header-secret-0001", "sas-signature-secret-0002"
    proxy = start_proxy(
        extra_headers={"api-key": header_secret},
        extra_query={"api-version": "2024-10-21", "sig": query_secret, "code": "fn-code-0003"},
        retry_config={"max_retries": 1},
    )
    echo = f"bad: headers api-key {header_secret} sig {query_secret} code fn-code-0003"
    sim.fail_next(400, body={"error": {"message": echo, "type": "invalid_request_error"}})
    sim.fail_next(503, body={"error": {"message": echo}}, times=2)
    for reply in (generate(proxy), generate(proxy)):
        text = str(reply)
        assert "Error" in reply
        assert "bad: headers" in text
        for secret in (header_secret, query_secret, "fn-code-0003"):
            assert secret not in text
    assert sim.requests[0].headers["api-key"] == header_secret  # it was sent, though
    for secret in (header_secret, query_secret, "fn-code-0003"):
        assert secret not in caplog.text


# --- long reasoning calls -----------------------------------------------------------------


@pytest.fixture
def seen_timeouts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """Each call's (attempt timeout in s, deadline in ms) as the actor's client saw them."""
    seen: list[tuple[float, int]] = []

    class SpyClient(ChatClient):
        def _attempt(self, *args: Any, **kwargs: Any) -> Any:
            _method, _url, _data, call, timeout = args
            assert isinstance(call, ChatCall)
            seen.append((timeout, call.total_ms))
            return super()._attempt(*args, **kwargs)

    monkeypatch.setattr(proxy_actor, "ChatClient", SpyClient)
    return seen


def test_a_reasoning_model_gets_the_sdk_s_timeouts_when_none_is_set(
    start_proxy: Callable[..., ActorHandle], seen_timeouts: list[tuple[float, int]]
):
    proxy = start_proxy()
    for model in ("o3", "gpt-4o", "gpt-5-chat-latest", "gpt-5-mini"):
        assert "Completion" in generate(proxy, model)
    (o3, gpt4o, chat, gpt5) = seen_timeouts
    # The attempt's timeout is the smaller of its own and the time left: ~1200 s left.
    assert o3 == (600.0, 1_200_000)
    assert gpt5 == (600.0, 1_200_000)
    assert gpt4o[1] == chat[1] == 120_000
    assert gpt4o[0] == chat[0] == 30.0


def test_timeouts_set_in_the_config_win_for_reasoning_models(
    start_proxy: Callable[..., ActorHandle], seen_timeouts: list[tuple[float, int]]
):
    proxy = start_proxy(timeout_ms=5000, retry_config={"max_total_timeout_ms": 90000})
    assert "Completion" in generate(proxy, "o3")
    assert "Completion" in generate(proxy, "gpt-4o")
    assert seen_timeouts == [(5.0, 90000), (5.0, 90000)]


def test_a_live_model_list_has_the_chat_model_timeouts(
    start_proxy: Callable[..., ActorHandle], seen_timeouts: list[tuple[float, int]]
):
    start_proxy().request_json({"ListModels": {"live": True}}, timeout=30)
    assert seen_timeouts == [(30.0, 120_000)]


# --- ListModels live ------------------------------------------------------------------------


def test_list_models_live_asks_the_provider_and_merges_the_catalog(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    custom = {"id": "tuned", "max_tokens": 8192, "display_name": "Tuned", "provider": "me"}
    proxy = start_proxy(models=[custom, {"id": "not-served", "max_tokens": 4096}])
    reply = proxy.request_json({"ListModels": {"live": True}}, timeout=30)
    models = {model["id"]: model for model in reply["ListModels"]["models"]}
    assert list(models) == ["gpt-4o", "o3", "gpt-4o-2024-08-06", "my-local-model", "tuned"]
    assert models["gpt-4o"]["max_tokens"] == 128000
    assert models["gpt-4o"]["pricing"]["input_cost_per_million_tokens"] > 0
    assert models["gpt-4o"]["display_name"] == "GPT-4o"
    snapshot = models["gpt-4o-2024-08-06"]
    assert snapshot["display_name"] == "gpt-4o-2024-08-06"
    assert snapshot["pricing"] == models["gpt-4o"]["pricing"]
    assert models["o3"]["max_tokens"] == 200000
    # Nobody knows this one: no context window (0) and no prices.
    assert models["my-local-model"] == {
        "id": "my-local-model",
        "display_name": "my-local-model",
        "max_tokens": 0,
        "provider": "custom",
        "pricing": None,
    }
    assert models["tuned"]["display_name"] == "Tuned"  # the config's entry wins
    (seen,) = sim.requests
    assert (seen.method, seen.path, seen.body) == ("GET", "/v1/models", None)


def test_the_bare_list_models_still_answers_from_the_config_without_a_call(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    proxy = start_proxy(models=[{"id": "tuned", "max_tokens": 8192}])
    for request in ("ListModels", {"ListModels": None}, {"ListModels": {"live": False}}):
        reply = proxy.request_json(request, timeout=30)
        assert [m["id"] for m in reply["ListModels"]["models"]] == ["tuned"]
    assert sim.requests_seen == 0


def test_list_models_live_retries_and_reports_errors_like_a_completion(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator, monkeypatch: pytest.MonkeyPatch
):
    proxy = start_proxy(retry_config={"max_retries": 2})
    sim.fail_next(503)
    reply = proxy.request_json({"ListModels": {"live": True}}, timeout=30)
    assert len(reply["ListModels"]["models"]) == 5
    assert sim.requests_seen == 2
    sim.fail_next(401)
    error = proxy.request_json({"ListModels": {"live": True}}, timeout=30)["Error"]
    assert error["kind"] == "authentication"
    assert error["status"] == 401
    assert KEY not in str(error)


def test_a_reply_without_a_data_list_is_an_invalid_response(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    proxy = start_proxy(retry_config={"max_retries": 0})
    sim.fail_next(200, body={"object": "list", "models": []})
    error = proxy.request_json({"ListModels": {"live": True}}, timeout=30)["Error"]
    assert error["kind"] == "invalid_response"
    assert "'data'" in error["error"]


def test_an_unknown_key_in_list_models_is_named(start_proxy: Callable[..., ActorHandle]):
    error = start_proxy().request_json({"ListModels": {"lve": True}}, timeout=30)["Error"]
    assert error["kind"] == "invalid_request"
    assert "'lve'" in error["error"]
    assert "did you mean 'live'" in error["error"]


# --- a chat template that cannot render content parts ---------------------------------------

TEMPLATE_FAILURE = {
    "error": {
        "message": 'can only concatenate str (not "list") to str',
        "type": "internal_server_error",
    }
}


def contents(sim: OpenAISimulator) -> list[Any]:
    return [seen.body["messages"][-1]["content"] for seen in sim.requests]


def test_content_parts_a_template_fails_on_are_sent_again_as_strings(
    start_proxy: Callable[..., ActorHandle],
    sim: OpenAISimulator,
    caplog: pytest.LogCaptureFixture,
):
    proxy = start_proxy(retry_config={"max_retries": 3})
    sim.fail_next(500, body=TEMPLATE_FAILURE)
    reply = generate(proxy, "smollm")
    assert reply["Completion"]["completion"]["content"][0]["text"] == "You said: hi"
    # At once: the parts are not retried (a retry would have succeeded with them here).
    assert contents(sim) == [[{"type": "text", "text": "hi"}], "hi"]
    # The model is remembered: its next request goes as a string at once.
    assert "Completion" in generate(proxy, "smollm")
    assert contents(sim)[2:] == ["hi"]
    assert caplog.text.count("failed on content as a list of parts") == 1
    # Other models keep the configured format.
    assert "Completion" in generate(proxy, "gpt-4o")
    assert contents(sim)[3:] == [[{"type": "text", "text": "hi"}]]


def test_a_template_failure_is_reported_when_there_is_nothing_to_flatten(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    proxy = start_proxy(retry_config={"max_retries": 0})
    sim.fail_next(500, body=TEMPLATE_FAILURE)
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    reply = proxy.request_json({"GenerateCompletion": {"request": request}}, timeout=30)
    assert reply["Error"]["status"] == 500
    assert sim.requests_seen == 1
    strings = start_proxy("strings", content_format="String", retry_config={"max_retries": 0})
    sim.fail_next(500, body=TEMPLATE_FAILURE)
    assert generate(strings)["Error"]["status"] == 500
    assert sim.requests_seen == 2


def test_another_server_error_is_not_taken_for_a_template_failure(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
):
    proxy = start_proxy(retry_config={"max_retries": 0})
    sim.fail_next(500, body={"error": {"message": "out of memory", "type": "server_error"}})
    assert generate(proxy)["Error"]["status"] == 500
    assert sim.requests_seen == 1
