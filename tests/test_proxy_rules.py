"""Provider and model rules: resolved from the catalog, applied to bodies, enforced by the actor."""

from __future__ import annotations

import importlib.resources
import json
import logging
from typing import Any

import pytest

from tests.openapi_contract import validate_chat_request
from tests.test_openai_proxy import generate, sent_bodies, user
from theater_py.errors import MessageDecodeError
from theater_py_actors.genai_types import (
    CompletionRequest,
    Message,
    Role,
    Thinking,
    Tool,
    ToolChoiceAny,
    ToolUse,
)
from theater_py_actors.openai_proxy.catalog import CATALOG_FILE, Catalog, load_catalog
from theater_py_actors.openai_proxy.config import ConfigError, parse_init
from theater_py_actors.openai_proxy.convert import to_chat_request
from theater_py_actors.openai_proxy.rules import ModelRules, adapt
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

OPENAI = "https://api.openai.com/v1"
MOONSHOT = "https://api.moonshot.ai/v1"
LOCAL = "http://127.0.0.1:8080/v1"
WEATHER = Tool(name="get_weather", input_schema={"type": "object", "properties": {}})


def send(base_url: str, model: str, **fields: Any) -> dict[str, Any]:
    """Build the body the proxy sends for ``model`` at ``base_url``, checked against the spec."""
    fields.setdefault("messages", [Message.user("hi")])
    rules = load_catalog().rules_for(base_url, model)
    chat = to_chat_request(
        CompletionRequest(model=model, **fields),
        default_model="gpt-4o",
        content_format="Array",
        rules=rules,
    )
    validate_chat_request(chat.body)
    return chat.body


# --- the rules of the models the issue names ------------------------------------------------


@pytest.mark.parametrize("model", ["o3", "o4-mini", "o3-2025-04-16", "openai/o4-mini"])
def test_o3_and_o4_mini_get_no_stop_parallel_tool_calls_or_sampling(model: str):
    body = send(
        OPENAI,
        model,
        system="Be brief.",
        max_tokens=100,
        temperature=0.2,
        top_p=0.5,
        stop_sequences=["END"],
        tools=[WEATHER],
        disable_parallel_tool_use=True,
        reasoning_effort="low",
    )
    assert not {"stop", "parallel_tool_calls", "temperature", "top_p", "max_tokens"} & set(body)
    assert body["max_completion_tokens"] == 100
    assert body["reasoning_effort"] == "low"
    assert body["messages"][0] == {"role": "developer", "content": "Be brief."}


def test_a_reasoning_model_keeps_temperature_one():
    assert send(OPENAI, "o3", temperature=1)["temperature"] == 1


def test_gpt_4o_gets_no_reasoning_effort():
    body = send(OPENAI, "gpt-4o", reasoning_effort="high", temperature=0.7)
    assert "reasoning_effort" not in body
    assert body["temperature"] == 0.7


def test_sdk_fields_a_model_rejects_are_dropped():
    chat = send(OPENAI, "gpt-4o", verbosity="low", seed=3, logprobs=True)
    assert "verbosity" not in chat and (chat["seed"], chat["logprobs"]) == (3, True)
    reasoning = send(OPENAI, "o3", logprobs=True, presence_penalty=1.0, seed=3)
    assert not {"logprobs", "presence_penalty"} & set(reasoning) and reasoning["seed"] == 3
    assert send(OPENAI, "gpt-5", verbosity="high")["verbosity"] == "high"


def test_gpt_5_chat_latest_keeps_its_sampling_parameters():
    body = send(OPENAI, "gpt-5-chat-latest", temperature=0.3, top_p=0.9, stop_sequences=["x"])
    assert (body["temperature"], body["top_p"], body["stop"]) == (0.3, 0.9, ["x"])


def test_gpt_5_drops_sampling_and_stop():
    body = send(OPENAI, "gpt-5-mini", temperature=0.3, top_p=0.9, stop_sequences=["x"])
    assert not {"temperature", "top_p", "stop"} & set(body)


def test_moonshot_clamps_temperature_to_one():
    assert send(MOONSHOT, "moonshot-v1-8k", temperature=1.6)["temperature"] == 1


def test_moonshot_drops_tool_choice_required():
    body = send(MOONSHOT, "moonshot-v1-8k", tools=[WEATHER], tool_choice=ToolChoiceAny())
    assert "tool_choice" not in body and body["tools"]


def test_moonshot_v1_gets_string_content_and_no_null():
    turn = Message(Role.ASSISTANT, [ToolUse("call_1", "get_weather", {})])
    body = send(MOONSHOT, "moonshot-v1-8k", messages=[Message.user("hi"), turn])
    assert body["messages"][0]["content"] == "hi"
    assert body["messages"][1]["content"] == ""


def test_kimi_reasoning_gets_temperature_one_and_its_reasoning_back():
    turn = Message(
        Role.ASSISTANT, [Thinking("Need weather."), ToolUse("call_1", "get_weather", {})]
    )
    body = send(MOONSHOT, "kimi-k2.6", temperature=0.5, messages=[Message.user("hi"), turn])
    assert "temperature" not in body
    assert body["messages"][1]["reasoning_content"] == "Need weather."


def test_groq_gets_no_logprobs_or_logit_bias():
    groq = "https://api.groq.com/openai/v1"
    body = send(groq, "llama-3.3-70b-versatile", logprobs=True, logit_bias={"1": 5}, seed=1)
    assert not {"logprobs", "logit_bias"} & set(body) and body["seed"] == 1
    assert load_catalog().for_base_url(groq) == []  # known rules, no catalog of models


def test_openai_allows_null_content_and_an_unknown_provider_gets_empty():
    turn = Message(Role.ASSISTANT, [ToolUse("call_1", "get_weather", {})])
    messages = [Message.user("hi"), turn]
    assert send(OPENAI, "gpt-4o", messages=messages)["messages"][1]["content"] is None
    assert send(LOCAL, "llama", messages=messages)["messages"][1]["content"] == ""


def test_an_unknown_model_at_an_unknown_provider_passes_through():
    body = send(LOCAL, "llama", temperature=0.7, top_p=0.9, max_tokens=5, reasoning_effort="low")
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.9, 5)
    assert body["reasoning_effort"] == "low"


def test_the_configured_token_limit_key_wins():
    rules = load_catalog().rules_for(OPENAI, "gpt-4o", "max_tokens")
    assert rules.token_limit_param == "max_tokens"


# --- adapt ---------------------------------------------------------------------------------


def test_adapt_reports_what_it_changed_and_what_was_lost():
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": "s"}],
        "max_tokens": 5,
        "temperature": 3,
        "stop": ["x"],
    }
    rules = ModelRules(
        token_limit_param="max_completion_tokens",
        system_role="developer",
        unsupported=("stop",),
        ranges={"temperature": (0.0, 2.0)},
    )
    changes = adapt(body, rules)
    assert body == {
        "model": "m",
        "messages": [{"role": "developer", "content": "s"}],
        "max_completion_tokens": 5,
        "temperature": 2,
    }
    assert [str(change) for change in changes] == [
        "max_tokens sent as max_completion_tokens",
        "stop dropped (unsupported)",
        "temperature clamped from 3 to 2",
        "system prompt sent as role developer",
    ]
    assert [change.param for change in changes if change.lossy] == ["stop", "temperature"]


def test_media_is_not_flattened():
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]
    body = {"messages": [{"role": "user", "content": list(parts)}]}
    assert adapt(body, ModelRules(content_array=False)) == ()
    assert body["messages"][0]["content"] == parts


def test_the_rules_table_must_be_well_formed():
    catalog_file = importlib.resources.files("theater_py_actors.openai_proxy") / CATALOG_FILE
    document = json.loads(catalog_file.read_text())
    document["rules"]["*"]["families"][0]["system_role"] = "robot"
    with pytest.raises(MessageDecodeError, match="system_role"):
        Catalog.from_json(json.dumps(document))


# --- the actor -----------------------------------------------------------------------------


O3_REQUEST: dict[str, Any] = {
    "model": "o3",
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}],
    "disable_parallel_tool_use": True,
}


def test_the_actor_adapts_and_logs_once_per_model(
    start_proxy, sim: OpenAISimulator, caplog: pytest.LogCaptureFixture
):
    proxy = start_proxy()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert "Completion" in generate(proxy, **O3_REQUEST)
    body = sent_bodies(sim)[0]
    assert not {"stop", "parallel_tool_calls", "temperature", "max_tokens"} & set(body)
    lines = [r.getMessage() for r in caplog.records if "adapted the request" in r.getMessage()]
    assert len(lines) == 1
    assert "model o3" in lines[0] and "stop dropped" in lines[0]
    assert "parallel_tool_calls dropped" in lines[0]


def test_strict_params_refuses_instead_of_adapting(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(strict_params=True)
    error = generate(proxy, **O3_REQUEST)["Error"]
    assert error["kind"] == "invalid_request"
    assert "stop dropped" in error["error"] and "strict_params" in error["error"]
    assert sim.requests_seen == 0
    # A rename loses nothing, so strict mode still sends it.
    assert "Completion" in generate(proxy, model="o3", messages=[user("hi")])
    assert sent_bodies(sim)[0]["max_completion_tokens"] == 256


def test_strict_params_must_be_a_boolean():
    with pytest.raises(ConfigError, match=r"config\.strict_params: expected true or false"):
        parse_init({"config": {"strict_params": "yes"}})
    assert parse_init({"config": {"strict_params": True}}).config.strict_params is True


def test_an_unknown_field_is_refused_naming_the_closest_one(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    request = {"messages": [user("hi")], "max_token": 5}
    error = proxy.request_json({"GenerateCompletion": {"request": request}})["Error"]
    assert error["kind"] == "invalid_request"
    assert "unknown field 'max_token' (did you mean 'max_tokens'?" in error["error"]
    assert sim.requests_seen == 0
    request["allow_unknown"] = True
    assert "Completion" in proxy.request_json({"GenerateCompletion": {"request": request}})
    assert "max_token" not in sent_bodies(sim)[0]


@pytest.mark.parametrize(
    ("base_url", "model", "reasoning"),
    [
        (OPENAI, "o3", True),
        (OPENAI, "o4-mini-2025-04-16", True),
        (OPENAI, "o1", True),
        (OPENAI, "o1-mini", True),
        (OPENAI, "gpt-5", True),
        (LOCAL, "openai/gpt-5-mini", True),
        (OPENAI, "gpt-5-chat-latest", False),
        (OPENAI, "gpt-4o", False),
        (OPENAI, "gpt-4.1", False),
        (MOONSHOT, "kimi-k2-thinking", True),
        (MOONSHOT, "moonshot-v1-8k", False),
        (LOCAL, "llama3.2", False),
    ],
)
def test_the_rules_table_says_which_models_reason(base_url: str, model: str, reasoning: bool):
    """The long timeouts of reasoning models follow the table, not a pattern in code."""
    assert load_catalog().rules_for(base_url, model).reasoning is reasoning
