"""theater_py_actors.openai_proxy.convert: genai types to OpenAI Chat Completions and back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.openapi_contract import validate_chat_request
from theater_py import serde
from theater_py_actors.genai_types import (
    Audio,
    Base64Source,
    CompletionRequest,
    EndTurn,
    Image,
    MaxTokens,
    Message,
    ModelPricing,
    OtherStop,
    RefusalStop,
    Role,
    StopReason,
    Text,
    Thinking,
    Tool,
    ToolAudio,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolImage,
    ToolResource,
    ToolResult,
    ToolText,
    ToolUse,
    ToolUseStop,
    UrlSource,
    Usage,
)
from theater_py_actors.openai_proxy.convert import (
    ChatRequest,
    ResponseFormatError,
    from_chat_response,
    to_chat_request,
)
from theater_py_actors.openai_proxy.rules import ModelRules

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = Tool(name="get_weather", description="Get the weather", input_schema=SCHEMA)


def convert(request: CompletionRequest, **options: Any) -> ChatRequest:
    settings: dict[str, Any] = {
        "default_model": "gpt-4o",
        "content_format": "Array",
        "rules": ModelRules(token_limit_param="max_completion_tokens"),
    }
    return to_chat_request(request, **(settings | options))


def body_of(*messages: Message, **fields: Any) -> dict[str, Any]:
    options = {
        key: fields.pop(key)
        for key in ("default_model", "content_format", "rules")
        if key in fields
    }
    return convert(CompletionRequest(messages=list(messages), **fields), **options).body


# -- requests: messages -----------------------------------------------------------------


def test_minimal_request() -> None:
    assert body_of(Message.user("Hi")) == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_model_defaults_only_when_empty() -> None:
    assert body_of(Message.user("x"), default_model="gpt-5")["model"] == "gpt-5"
    assert body_of(Message.user("x"), model="o3", default_model="gpt-5")["model"] == "o3"


def test_system_prompt_is_the_first_message() -> None:
    body = body_of(Message.user("Hi"), system="Be brief.")
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][1]["role"] == "user"
    assert len(body_of(Message.user("Hi"), system=None)["messages"]) == 1


def test_roles_pass_through() -> None:
    messages = body_of(Message.system("s"), Message.user("u"), Message.assistant("a"))["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]


def test_string_format_joins_text_parts() -> None:
    message = Message(Role.USER, [Text("one"), Text("two")])
    assert body_of(message, content_format="String")["messages"] == [
        {"role": "user", "content": "one\ntwo"}
    ]
    assert body_of(message)["messages"][0]["content"] == [
        {"type": "text", "text": "one"},
        {"type": "text", "text": "two"},
    ]


def test_string_format_keeps_media_messages_as_arrays() -> None:
    message = Message(Role.USER, [Text("look"), Image(UrlSource("https://x/a.png"))])
    content = body_of(message, content_format="String")["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
    ]


def test_images() -> None:
    message = Message(
        Role.USER,
        [
            Image(UrlSource("https://x/a.png"), detail="high"),
            Image(Base64Source("image/jpeg", "AAAA")),
        ],
    )
    assert body_of(message)["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
    ]


def test_audio() -> None:
    message = Message(Role.USER, [Audio("UklGRg==", "wav")])
    assert body_of(message)["messages"][0]["content"] == [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    ]


def test_empty_message_sends_an_empty_string() -> None:
    """OpenAI refuses an empty list of content parts."""
    assert body_of(Message(Role.USER, []))["messages"] == [{"role": "user", "content": ""}]


def test_tool_use_becomes_tool_calls() -> None:
    call = ToolUse("call_1", "get_weather", {"city": "Paris", "units": ["°C"]})
    message = Message(Role.ASSISTANT, [Text("Checking."), call])
    assert body_of(message)["messages"] == [
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Checking."}],
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city":"Paris","units":["°C"]}',
                    },
                }
            ],
        }
    ]


def test_tool_calls_alone_have_null_content() -> None:
    message = Message(Role.ASSISTANT, [ToolUse("a", "f", {}), ToolUse("b", "g", "not json")])
    (out,) = body_of(message, content_format="String")["messages"]
    assert out["content"] is None
    assert [call["function"]["arguments"] for call in out["tool_calls"]] == ["{}", "not json"]


def test_each_tool_result_is_its_own_tool_message_in_order() -> None:
    message = Message(
        Role.USER,
        [
            ToolResult("call_1", [ToolText("18C")]),
            ToolResult("call_2", [ToolText("rain"), ToolText("wind")], is_error=False),
            ToolResult("call_3", [ToolText("no such city")], is_error=True),
            Text("Thanks"),
        ],
    )
    assert body_of(message)["messages"] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain\nwind"},
        {"role": "tool", "tool_call_id": "call_3", "content": "Error: no such city"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]


def test_tool_results_go_before_the_rest_of_their_message() -> None:
    """OpenAI wants tool messages right after the assistant's tool calls."""
    message = Message(Role.USER, [Text("first"), ToolResult("c", [ToolText("r")])])
    roles = [m["role"] for m in body_of(message)["messages"]]
    assert roles == ["tool", "user"]


def test_tool_result_media_and_resources_as_text() -> None:
    result = ToolResult(
        "c",
        [
            ToolResource({"uri": "file:///a", "text": "x"}),
            ToolImage("AAAA", mime_type="image/png"),
            ToolAudio("AAAA", mime_type="audio/wav"),
        ],
    )
    (out,) = body_of(Message(Role.USER, [result]))["messages"]
    assert out["content"] == '{"uri":"file:///a","text":"x"}\n[image/png image]\n[audio/wav audio]'


# -- requests: parameters ---------------------------------------------------------------


def test_tools_and_choices() -> None:
    bare = Tool(name="now", input_schema={"type": "object"})
    body = body_of(Message.user("x"), tools=[WEATHER, bare], tool_choice=ToolChoiceAuto())
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the weather",
                "parameters": SCHEMA,
            },
        },
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
    ]
    assert body["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        (ToolChoiceAuto(), "auto"),
        (ToolChoiceAny(), "required"),
        (ToolChoiceNone(), "none"),
        (ToolChoiceTool("get_weather"), {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_mapping(choice: ToolChoice, wire: Any) -> None:
    assert body_of(Message.user("x"), tools=[WEATHER], tool_choice=choice)["tool_choice"] == wire


@pytest.mark.parametrize(("disable", "parallel"), [(True, False), (False, True)])
def test_parallel_tool_calls_with_tools(disable: bool, parallel: bool) -> None:
    body = body_of(Message.user("x"), tools=[WEATHER], disable_parallel_tool_use=disable)
    assert body["parallel_tool_calls"] is parallel


def test_tool_settings_are_not_sent_without_tools() -> None:
    no_tools: tuple[list[Tool] | None, ...] = (None, [])
    for tools in no_tools:
        body = body_of(
            Message.user("x"),
            tools=tools,
            tool_choice=ToolChoiceNone(),
            disable_parallel_tool_use=True,
        )
        assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()
    body = body_of(Message.user("x"), tools=[WEATHER])
    assert "parallel_tool_calls" not in body
    assert "tool_choice" not in body


def test_extensions_and_sampling_pass_through() -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
    body = body_of(
        Message.user("x"),
        max_tokens=256,
        temperature=0.1,
        top_p=0.95,
        response_format=response_format,
        reasoning_effort="low",
        stop_sequences=["END", "\n\n"],
    )
    assert body["max_completion_tokens"] == 256
    assert body["temperature"] == 0.1
    assert body["top_p"] == 0.95
    assert body["response_format"] == response_format
    assert body["reasoning_effort"] == "low"
    assert body["stop"] == ["END", "\n\n"]
    assert "max_tokens" not in body


def test_absent_options_are_not_sent() -> None:
    body = body_of(Message.user("x"))
    assert set(body) == {"model", "messages"}
    assert "stop" not in body_of(Message.user("x"), stop_sequences=[])


def test_token_limit_key_is_the_callers() -> None:
    body = body_of(Message.user("x"), max_tokens=10, rules=ModelRules())
    assert body["max_tokens"] == 10
    assert "max_completion_tokens" not in body


def test_numbers_go_out_exactly_as_given() -> None:
    body = body_of(Message.user("x"), temperature=1, top_p=0.30000000000000004)
    assert json.dumps(body["temperature"]) == "1"
    assert json.dumps(body["top_p"]) == "0.30000000000000004"


# -- responses --------------------------------------------------------------------------


def chat_body(message: dict[str, Any], finish_reason: Any = "stop", **extra: Any) -> Any:
    body = {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
        "usage": {"prompt_tokens": 15, "completion_tokens": 10, "total_tokens": 25},
    }
    return body | extra


def test_text_response() -> None:
    body = chat_body({"role": "assistant", "content": "Hello!", "refusal": None})
    response = from_chat_response(body, pricing=None)
    assert response.content == [Text("Hello!")]
    assert (response.id, response.model) == ("chatcmpl-123", "gpt-4o-2024-08-06")
    assert response.role is Role.ASSISTANT
    assert response.stop_reason == EndTurn()
    assert response.stop_sequence is None
    assert response.message_type == "message"
    assert response.usage == Usage(15, 10, cached_input_tokens=0, reasoning_tokens=0)


def test_text_then_tool_calls_with_parsed_arguments() -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": [1]}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{'bad'"}},
        {"id": "c3", "type": "function", "function": {"name": "h", "arguments": ""}},
    ]
    message = {"role": "assistant", "content": "Let me check.", "tool_calls": calls}
    response = from_chat_response(chat_body(message, "tool_calls"), pricing=None)
    assert response.content == [
        Text("Let me check."),
        ToolUse("c1", "f", {"a": [1]}),
        ToolUse("c2", "g", "{'bad'"),  # invalid JSON stays as the model wrote it
        ToolUse("c3", "h", {}),
    ]
    assert response.stop_reason == ToolUseStop()


def test_refusal_comes_back_as_text() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    response = from_chat_response(chat_body(message), pricing=None)
    assert response.content == [Text("I can't help with that.")]
    assert response.stop_reason == RefusalStop()
    assert serde.unstructure(response)["stop_reason"] == "refusal"


def test_content_parts_and_legacy_function_call() -> None:
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "function_call": {"name": "f", "arguments": '{"x": 1}'},
    }
    response = from_chat_response(chat_body(message, "function_call"), pricing=None)
    [text, call] = response.content
    assert text == Text("ab")
    assert isinstance(call, ToolUse) and (call.name, call.input) == ("f", {"x": 1})
    assert call.id.startswith("call_")  # generated: the legacy form has no id
    assert response.stop_reason == ToolUseStop()


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", EndTurn()),
        ("length", MaxTokens()),
        ("tool_calls", ToolUseStop()),
        ("function_call", ToolUseStop()),
        ("content_filter", OtherStop("content_filter")),
        ("insufficient_system_resource", OtherStop("insufficient_system_resource")),
        (None, EndTurn()),
    ],
)
def test_finish_reason_mapping(finish_reason: Any, stop_reason: StopReason) -> None:
    body = chat_body({"role": "assistant", "content": "x"}, finish_reason)
    assert from_chat_response(body, pricing=None).stop_reason == stop_reason


def test_missing_finish_reason_is_end_turn() -> None:
    body = chat_body({"role": "assistant", "content": "x"})
    del body["choices"][0]["finish_reason"]
    assert from_chat_response(body, pricing=None).stop_reason == EndTurn()


def test_usage_details() -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 400},
        "completion_tokens_details": {"reasoning_tokens": 300},
    }
    body = chat_body({"role": "assistant", "content": "x"}, usage=usage)
    assert from_chat_response(body, pricing=None).usage == Usage(
        1000, 500, cached_input_tokens=400, reasoning_tokens=300, cost_usd=None
    )


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"prompt_tokens": None, "prompt_tokens_details": None, "completion_tokens_details": {}},
        {"prompt_tokens": "many", "completion_tokens": -3},
    ],
)
def test_missing_usage_reads_as_zero(usage: Any) -> None:
    body = chat_body({"role": "assistant", "content": "x"}, usage=usage)
    assert from_chat_response(body, pricing=None).usage == Usage(
        0, 0, cached_input_tokens=0, reasoning_tokens=0
    )


def test_cost_uses_the_cached_price_when_there_is_one() -> None:
    usage = {
        "prompt_tokens": 1_000_000,
        "completion_tokens": 100_000,
        "prompt_tokens_details": {"cached_tokens": 400_000},
    }
    body = chat_body({"role": "assistant", "content": "x"}, usage=usage)
    pricing = ModelPricing(2.5, 10.0, cached_input_cost_per_million_tokens=1.25)
    cost = from_chat_response(body, pricing=pricing).usage.cost_usd
    assert cost == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 0.1 * 10.0)
    no_cache_price = ModelPricing(2.5, 10.0)
    cost = from_chat_response(body, pricing=no_cache_price).usage.cost_usd
    assert cost == pytest.approx(1.0 * 2.5 + 0.1 * 10.0)


def test_deepseek_cache_hits_count_as_cached() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 1, "prompt_cache_hit_tokens": 60}
    body = chat_body({"role": "assistant", "content": "x"}, usage=usage)
    assert from_chat_response(body, pricing=None).usage.cached_input_tokens == 60


def test_cost_without_usage_is_unknown_not_zero() -> None:
    body = chat_body({"role": "assistant", "content": "x"}, usage=None)
    assert from_chat_response(body, pricing=ModelPricing(1, 1)).usage.cost_usd is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ("oops", "expected a JSON object"),
        ({}, "no choices"),
        ({"choices": []}, "no choices"),
        ({"choices": "x"}, "no choices"),
        ({"choices": [5]}, "no message"),
        ({"choices": [{"finish_reason": "stop"}]}, "no message"),
        ({"choices": [{"message": "hi"}]}, "no message"),
    ],
)
def test_a_body_that_is_not_a_completion(body: Any, message: str) -> None:
    with pytest.raises(ResponseFormatError, match=message):
        from_chat_response(body, pricing=None)


def test_tolerates_missing_ids_and_odd_tool_calls() -> None:
    message = {"content": "x", "tool_calls": [5, {"function": None}, {"id": 7, "function": {}}]}
    body = {"choices": [{"message": message}]}
    response = from_chat_response(body, pricing=None)
    assert (response.id, response.model) == ("", "")
    [text, first, second] = response.content
    assert text == Text("x")
    assert isinstance(first, ToolUse) and isinstance(second, ToolUse)
    assert (first.name, first.input, second.name, second.input) == ("", {}, "", {})
    assert first.id.startswith("call_") and second.id.startswith("call_")
    assert first.id != second.id


# -- tool calls from real servers ---------------------------------------------------------


def test_tool_calls_win_over_a_legacy_function_call_copy() -> None:
    """Some servers send both forms of the same call: it is one tool use, not two."""
    call = {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [call],
        "function_call": {"name": "f", "arguments": "{}"},
    }
    response = from_chat_response(chat_body(message, "tool_calls"), pricing=None)
    assert response.content == [ToolUse("call_9", "f", {})]


def test_an_empty_tool_calls_list_falls_back_to_function_call() -> None:
    message = {"tool_calls": [], "function_call": {"name": "f", "arguments": '{"x": 1}'}}
    [call] = from_chat_response(chat_body(message, "function_call"), pricing=None).content
    assert isinstance(call, ToolUse) and (call.name, call.input) == ("f", {"x": 1})


def test_calls_without_ids_get_unique_ones() -> None:
    calls = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}] * 3
    response = from_chat_response(chat_body({"tool_calls": calls}, "tool_calls"), pricing=None)
    ids = [part.id for part in response.content if isinstance(part, ToolUse)]
    assert len(set(ids)) == 3 and all(id_.startswith("call_") for id_ in ids)
    again = from_chat_response(chat_body({"tool_calls": calls}, "tool_calls"), pricing=None)
    assert not set(ids) & {part.id for part in again.content if isinstance(part, ToolUse)}


def assistant_call_turn(*extra: Any) -> Message:
    return Message(Role.ASSISTANT, [*extra, ToolUse("call_1", "get_weather", {"city": "Paris"})])


def test_a_tool_call_turn_without_text_is_null_where_allowed_and_empty_elsewhere() -> None:
    allowed = body_of(Message.user("x"), assistant_call_turn(), rules=ModelRules())
    refused = body_of(
        Message.user("x"), assistant_call_turn(), rules=ModelRules(content_null=False)
    )
    assert allowed["messages"][1]["content"] is None
    assert refused["messages"][1]["content"] == ""
    validate_chat_request(refused)


def test_reasoning_content_is_read_as_a_thinking_part() -> None:
    message = {"role": "assistant", "content": "42", "reasoning_content": "Let me think."}
    response = from_chat_response(chat_body(message), pricing=None)
    assert response.content == [Thinking("Let me think."), Text("42")]


def test_thinking_goes_back_only_on_tool_call_turns_where_the_provider_wants_it() -> None:
    turn = assistant_call_turn(Thinking("I need the weather."))
    plain = Message(Role.ASSISTANT, [Thinking("hmm"), Text("Hello")])
    wanted = body_of(Message.user("x"), turn, plain, rules=ModelRules(reasoning_content=True))[
        "messages"
    ]
    assert wanted[1]["reasoning_content"] == "I need the weather."
    assert "reasoning_content" not in wanted[2]
    assert wanted[2]["content"] == [{"type": "text", "text": "Hello"}]
    unwanted = body_of(Message.user("x"), turn, rules=ModelRules())["messages"]
    assert "reasoning_content" not in unwanted[1]


# -- fields the official SDK sends --------------------------------------------------------


def test_the_sdk_fields_pass_through_under_their_own_names() -> None:
    fields: dict[str, Any] = {
        "seed": 7,
        "user": "user-1",
        "metadata": {"team": "a"},
        "store": True,
        "logprobs": True,
        "top_logprobs": 3,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logit_bias": {"50256": -100},
        "service_tier": "flex",
        "verbosity": "low",
        "prompt_cache_key": "prefix-1",
    }
    body = body_of(Message.user("x"), rules=ModelRules(), **fields)
    assert {key: body[key] for key in fields} == fields
    validate_chat_request(body)


def test_a_strict_tool_says_so() -> None:
    strict = Tool(name="now", input_schema={"type": "object", "properties": {}}, strict=True)
    body = body_of(Message.user("x"), tools=[strict, WEATHER])
    assert body["tools"][0]["function"]["strict"] is True
    assert "strict" not in body["tools"][1]["function"]


def test_system_fingerprint_and_request_id_are_kept() -> None:
    body = chat_body({"role": "assistant", "content": "x"}, system_fingerprint="fp_44709d6fcb")
    response = from_chat_response(body, pricing=None, request_id="req_123")
    assert (response.system_fingerprint, response.request_id) == ("fp_44709d6fcb", "req_123")
    bare = from_chat_response(chat_body({"role": "assistant", "content": "x"}), pricing=None)
    assert "system_fingerprint" not in serde.unstructure(bare)
    assert "request_id" not in serde.unstructure(bare)
