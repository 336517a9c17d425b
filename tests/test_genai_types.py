"""Tests of theater_py_actors.genai_types: the exact JSON of the wire format, both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from theater_py import serde
from theater_py.errors import MessageDecodeError
from theater_py_actors.genai_types import (
    ERROR_KINDS,
    Audio,
    Base64Source,
    Completion,
    CompletionRequest,
    CompletionResponse,
    Delta,
    EndTurn,
    ErrorResponse,
    GenerateCompletion,
    Image,
    ListModels,
    MaxTokens,
    Message,
    MessageContent,
    ModelInfo,
    ModelList,
    ModelPricing,
    OtherStop,
    ProxyRequest,
    ProxyResponse,
    ProxyStreamMessage,
    ReasoningDelta,
    Retrying,
    Role,
    StopReason,
    StopSequence,
    Text,
    Tool,
    ToolAudio,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolContent,
    ToolImage,
    ToolResource,
    ToolResult,
    ToolText,
    ToolUse,
    ToolUseDelta,
    ToolUseStop,
    UrlSource,
    Usage,
)

# The conftest's autouse fixtures do not matter to these pure functions.
property_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}

# -- the examples of wire-format.md, exactly --------------------------------------------

MESSAGE_CONTENT_EXAMPLES = [
    {"type": "text", "text": "Hello"},
    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
    {
        "type": "tool_result",
        "tool_use_id": "call_1",
        "content": [{"type": "text", "text": "18C"}],
        "is_error": None,
    },
    {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.png"},
        "detail": None,
    },
    {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "aGVsbG8="},
        "detail": "low",
    },
    {"type": "audio", "data": "UklGRg==", "format": "wav"},
]

TOOL_CONTENT_EXAMPLES = [
    {"type": "text", "text": "18C"},
    {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
    {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
    {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "hi", "n": [1, 2.5, None]}},
]

TOOL_EXAMPLES = [
    {
        "name": "get_weather",
        "description": "Get the weather",
        "input_schema": WEATHER_SCHEMA,
        "annotations": {"readOnlyHint": True},
    },
    {"name": "get_weather", "input_schema": WEATHER_SCHEMA},
]

TOOL_CHOICE_EXAMPLES = [
    {"type": "auto"},
    {"type": "any"},
    {"type": "none"},
    {"type": "tool", "name": "get_weather"},
]

STOP_REASON_EXAMPLES = [
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    {"other": "content_filter"},
]

MODEL_INFO = {
    "id": "gpt-4o",
    "display_name": "GPT-4o",
    "max_tokens": 128000,
    "provider": "openai",
    "pricing": {"input_cost_per_million_tokens": 2.5, "output_cost_per_million_tokens": 10.0},
}

COMPLETION_REQUEST = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": MESSAGE_CONTENT_EXAMPLES},
        {"role": "assistant", "content": [{"type": "text", "text": "Hi"}]},
    ],
    "max_tokens": 1024,
    "temperature": 0.7,
    "system": "You are a helpful AI assistant.",
    "tools": TOOL_EXAMPLES,
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "disable_parallel_tool_use": True,
}

COMPLETION_REQUEST_WITH_EXTENSIONS = {
    **COMPLETION_REQUEST,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": WEATHER_SCHEMA, "strict": True},
    },
    "reasoning_effort": "high",
    "stop_sequences": ["\n\n", "END"],
    "top_p": 0.9,
}

COMPLETION_RESPONSE = {
    "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
    "id": "chatcmpl-123",
    "model": "gpt-4o-2024-08-06",
    "role": "assistant",
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "type": "message",
    "usage": {"input_tokens": 15, "output_tokens": 10},
}

PROXY_REQUEST_EXAMPLES = [
    "ListModels",
    {"ListModels": {"live": True}},
    {"GenerateCompletion": {"request": COMPLETION_REQUEST}},
    {"GenerateCompletion": {"request": COMPLETION_REQUEST_WITH_EXTENSIONS}},
]

PROXY_RESPONSE_EXAMPLES = [
    {"ListModels": {"models": [MODEL_INFO, {**MODEL_INFO, "id": "custom", "pricing": None}]}},
    {"Completion": {"completion": COMPLETION_RESPONSE}},
    {
        "Completion": {
            "completion": {
                **COMPLETION_RESPONSE,
                "stop_reason": {"other": "content_filter"},
                "usage": {
                    "input_tokens": 15,
                    "output_tokens": 10,
                    "cached_input_tokens": 5,
                    "reasoning_tokens": 4,
                    "cost_usd": 0.000125,
                },
            }
        }
    },
    {"Error": {"error": "human readable message"}},
    {
        "Error": {
            "error": "rate limited",
            "kind": "rate_limit",
            "status": 429,
            "retry_after_ms": 1500,
            "request_id": "req_123",
            "provider_code": "rate_limit_exceeded",
            "attempts": 3,
        }
    },
]


def round_trip(wire: Any, cls: Any) -> Any:
    obj = serde.structure(wire, cls)
    assert serde.unstructure(obj, cls) == wire
    assert serde.loads(serde.dumps(obj, cls), cls) == obj
    return obj


@pytest.mark.parametrize("wire", PROXY_REQUEST_EXAMPLES)
def test_proxy_request_examples_round_trip(wire: Any) -> None:
    round_trip(wire, ProxyRequest)


@pytest.mark.parametrize("wire", PROXY_RESPONSE_EXAMPLES)
def test_proxy_response_examples_round_trip(wire: Any) -> None:
    round_trip(wire, ProxyResponse)


@pytest.mark.parametrize("wire", MESSAGE_CONTENT_EXAMPLES)
def test_message_content_examples_round_trip(wire: Any) -> None:
    round_trip(wire, MessageContent)


@pytest.mark.parametrize("wire", TOOL_CONTENT_EXAMPLES)
def test_tool_content_examples_round_trip(wire: Any) -> None:
    round_trip(wire, ToolContent)


@pytest.mark.parametrize(
    ("wire", "cls"),
    [
        *((tool, Tool) for tool in TOOL_EXAMPLES),
        *((choice, ToolChoice) for choice in TOOL_CHOICE_EXAMPLES),
        *((reason, StopReason) for reason in STOP_REASON_EXAMPLES),
        (MODEL_INFO, ModelInfo),
        (COMPLETION_RESPONSE, CompletionResponse),
    ],
)
def test_other_examples_round_trip(wire: Any, cls: Any) -> None:
    round_trip(wire, cls)


def test_list_models_reads_bare_or_live_and_writes_bare_unless_live() -> None:
    """The unit variant grew an extension: old writers' and readers' JSON still works."""
    for bare in ("ListModels", {"ListModels": None}, {"ListModels": {}}):
        assert serde.structure(bare, ProxyRequest) == ListModels()
    assert serde.structure({"ListModels": {"live": True}}, ProxyRequest) == ListModels(live=True)
    assert serde.unstructure(ListModels(), ProxyRequest) == "ListModels"
    assert serde.unstructure(ListModels(live=False), ProxyRequest) == {
        "ListModels": {"live": False}
    }
    assert serde.unstructure(ListModels(live=True), ProxyRequest) == {"ListModels": {"live": True}}


def test_examples_read_as_the_expected_objects() -> None:
    """The JSON reads into the classes a Python user expects."""
    assert serde.structure("ListModels", ProxyRequest) == ListModels()
    request = serde.structure(PROXY_REQUEST_EXAMPLES[2], ProxyRequest)
    assert isinstance(request, GenerateCompletion)
    user = request.request.messages[1]
    assert user.role is Role.USER
    assert user.content == [
        Text("Hello"),
        ToolUse("call_1", "get_weather", {"city": "Paris"}),
        ToolResult("call_1", [ToolText("18C")]),
        Image(UrlSource("https://example.com/a.png")),
        Image(Base64Source("image/png", "aGVsbG8="), detail="low"),
        Audio("UklGRg==", "wav"),
    ]
    assert request.request.tool_choice == ToolChoiceTool("get_weather")
    assert request.request.max_tokens == 1024
    assert [serde.structure(c, ToolChoice) for c in TOOL_CHOICE_EXAMPLES] == [
        ToolChoiceAuto(),
        ToolChoiceAny(),
        ToolChoiceNone(),
        ToolChoiceTool("get_weather"),
    ]
    assert [serde.structure(r, StopReason) for r in STOP_REASON_EXAMPLES] == [
        EndTurn(),
        MaxTokens(),
        StopSequence(),
        ToolUseStop(),
        OtherStop("content_filter"),
    ]
    image = serde.structure(TOOL_CONTENT_EXAMPLES[1], ToolContent)
    assert image == ToolImage("aGVsbG8=", mime_type="image/png")


def test_completion_response_type_key() -> None:
    """``type`` on the wire is ``message_type`` in Python (``type`` is a builtin)."""
    response = serde.structure(COMPLETION_RESPONSE, CompletionResponse)
    assert response.message_type == "message"
    assert response.stop_reason == EndTurn()
    assert response.usage == Usage(15, 10)


def test_python_constructors_make_the_wire_json() -> None:
    request = GenerateCompletion(CompletionRequest(messages=[Message.user("Hello, GPT!")]))
    assert serde.unstructure(request) == {
        "GenerateCompletion": {
            "request": {
                "model": "",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Hello, GPT!"}]}
                ],
                "temperature": None,
                "system": None,
                "tools": None,
                "tool_choice": None,
                "disable_parallel_tool_use": None,
            }
        }
    }
    assert Message.assistant("a").role is Role.ASSISTANT
    assert Message.system("s") == Message(Role.SYSTEM, [Text("s")])


def test_error_extensions_are_omitted_while_unset() -> None:
    assert serde.unstructure(ErrorResponse("boom")) == {"Error": {"error": "boom"}}
    assert serde.unstructure(ErrorResponse("boom", kind="timeout", attempts=1)) == {
        "Error": {"error": "boom", "kind": "timeout", "attempts": 1}
    }


def test_error_kinds_are_those_of_the_reference() -> None:
    assert (
        frozenset(
            [
                "authentication",
                "permission",
                "not_found",
                "bad_request",
                "context_window_exceeded",
                "content_policy",
                "rate_limit",
                "quota_exhausted",
                "overloaded",
                "server_error",
                "timeout",
                "connection",
                "invalid_response",
                "invalid_request",
                "configuration",
                "cancelled",
                "budget_exceeded",
            ]
        )
        == ERROR_KINDS
    )


def test_an_unknown_error_kind_still_reads() -> None:
    """A newer writer's kind must not make an old reader fail the whole reply."""
    reply = serde.structure({"Error": {"error": "x", "kind": "brand_new"}}, ProxyResponse)
    assert reply == ErrorResponse("x", kind="brand_new")


# -- absent and null --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "required", "optional"),
    [
        (
            CompletionRequest,
            {"messages": []},
            [
                "max_tokens",
                "temperature",
                "system",
                "tools",
                "tool_choice",
                "disable_parallel_tool_use",
                "response_format",
                "reasoning_effort",
                "stop_sequences",
                "top_p",
                "seed",
                "user",
                "metadata",
                "store",
                "logprobs",
                "top_logprobs",
                "presence_penalty",
                "frequency_penalty",
                "logit_bias",
                "service_tier",
                "verbosity",
                "prompt_cache_key",
                "allow_unknown",
            ],
        ),
        (
            Usage,
            {"input_tokens": 1, "output_tokens": 2},
            ["cached_input_tokens", "reasoning_tokens", "cost_usd", "cached"],
        ),
        (
            ModelPricing,
            {"input_cost_per_million_tokens": 1, "output_cost_per_million_tokens": 2},
            ["cached_input_cost_per_million_tokens", "source", "as_of"],
        ),
        (
            ErrorResponse,
            {"error": "x"},
            ["kind", "status", "retry_after_ms", "request_id", "provider_code", "attempts"],
        ),
        (
            ModelInfo,
            {"id": "m", "display_name": "M", "max_tokens": 1, "provider": "p"},
            ["pricing"],
        ),
        (Tool, {"name": "t", "input_schema": {}}, ["description", "annotations", "strict"]),
        (
            CompletionResponse,
            {
                "content": [],
                "id": "i",
                "model": "m",
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
            ["stop_sequence", "system_fingerprint", "request_id"],
        ),
    ],
)
def test_absent_and_null_mean_the_same(
    cls: Any, required: dict[str, Any], optional: list[str]
) -> None:
    if cls is ErrorResponse:
        absent = serde.structure({"Error": required}, ProxyResponse)
        null = serde.structure({"Error": required | dict.fromkeys(optional)}, ProxyResponse)
    else:
        absent = serde.structure(required, cls)
        null = serde.structure(required | dict.fromkeys(optional), cls)
    assert absent == null
    assert all(getattr(absent, name) is None for name in optional)


def test_tool_result_and_image_optionals() -> None:
    assert serde.structure({"type": "tool_result", "tool_use_id": "c"}, MessageContent) == (
        ToolResult("c", [])
    )
    image = {"type": "image", "source": {"type": "url", "url": "u"}}
    assert serde.structure(image, MessageContent) == Image(UrlSource("u"))


def test_model_defaults_to_empty_and_max_tokens_to_none() -> None:
    request = serde.structure({"messages": []}, CompletionRequest)
    assert (request.model, request.max_tokens) == ("", None)
    assert "max_tokens" not in serde.unstructure(request)


# -- decode errors name paths -----------------------------------------------------------


def bad_request(tag: Any = "txet") -> dict[str, Any]:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "a"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
        {"role": "user", "content": [{"type": tag, "text": "c"}]},
    ]
    return {"model": "gpt-4o", "messages": messages, "max_tokens": 10}


def test_unknown_content_type_path_through_the_proxy_request() -> None:
    with pytest.raises(MessageDecodeError) as info:
        serde.structure({"GenerateCompletion": {"request": bad_request()}}, ProxyRequest)
    assert info.value.path == "GenerateCompletion.request.messages[2].content[0].type"
    assert 'unknown type "txet"' in info.value.reason


def test_unknown_content_type_path_in_a_request() -> None:
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(bad_request(), CompletionRequest)
    assert info.value.path == "messages[2].content[0].type"


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        ({"max_tokens": "10"}, "max_tokens", 'expected an integer, got "10"'),
        ({"temperature": "hot"}, "temperature", 'expected a number, got "hot"'),
        ({"tool_choice": {"type": "some"}}, "tool_choice.type", "unknown type"),
        ({"tools": [{"name": "t"}]}, "tools[0].input_schema", "required field missing"),
        ({"tools": [{"name": "t", "input_schema": []}]}, "tools[0].input_schema", "an object"),
        ({"messages": [{"role": "bot", "content": []}]}, "messages[0].role", '"user"'),
        ({"stop_sequences": ["a", 1]}, "stop_sequences[1]", "expected a string, got 1"),
        ({"response_format": "json"}, "response_format", "expected an object"),
    ],
)
def test_request_errors_name_the_field(change: dict[str, Any], path: str, reason: str) -> None:
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(bad_request("text") | change, CompletionRequest)
    assert info.value.path == path
    assert reason in info.value.reason


def test_response_errors_name_the_json_key() -> None:
    wire = {"Completion": {"completion": {**COMPLETION_RESPONSE, "type": 5}}}
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(wire, ProxyResponse)
    assert info.value.path == "Completion.completion.type"
    wire = {"Completion": {"completion": {**COMPLETION_RESPONSE, "stop_reason": "tired"}}}
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(wire, ProxyResponse)
    assert info.value.path == "Completion.completion.stop_reason"
    assert '"end_turn"' in info.value.reason


def test_tool_content_mime_type_path() -> None:
    wire = {"type": "tool_result", "tool_use_id": "c", "content": [{"type": "image", "data": "x"}]}
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(wire, MessageContent)
    assert (info.value.path, info.value.reason) == ("content[0].mimeType", "required field missing")


# -- property round trips ---------------------------------------------------------------

texts = st.text(max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(min_value=0, max_value=2**40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(texts, json_values, max_size=3)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


tool_contents = st.one_of(
    st.builds(ToolText, texts),
    st.builds(ToolImage, texts, mime_type=texts),
    st.builds(ToolAudio, texts, mime_type=texts),
    st.builds(ToolResource, json_values),
)
image_sources = st.builds(UrlSource, texts) | st.builds(Base64Source, texts, texts)
message_contents = st.one_of(
    st.builds(Text, texts),
    st.builds(ToolUse, texts, texts, json_values),
    st.builds(ToolResult, texts, st.lists(tool_contents, max_size=3), maybe(st.booleans())),
    st.builds(Image, image_sources, maybe(st.sampled_from(["low", "high", "auto"]))),
    st.builds(Audio, texts, st.sampled_from(["wav", "mp3"])),
)
messages = st.builds(Message, st.sampled_from(Role), st.lists(message_contents, max_size=3))
tools = st.builds(
    Tool,
    name=texts,
    description=maybe(texts),
    input_schema=json_objects,
    annotations=maybe(json_objects),
)
tool_choices = st.one_of(
    st.builds(ToolChoiceAuto),
    st.builds(ToolChoiceAny),
    st.builds(ToolChoiceNone),
    st.builds(ToolChoiceTool, texts),
)
completion_requests = st.builds(
    CompletionRequest,
    model=texts,
    messages=st.lists(messages, max_size=3),
    max_tokens=maybe(counts),
    temperature=maybe(floats),
    system=maybe(texts),
    tools=maybe(st.lists(tools, max_size=2)),
    tool_choice=maybe(tool_choices),
    disable_parallel_tool_use=maybe(st.booleans()),
    response_format=maybe(json_objects),
    reasoning_effort=maybe(st.sampled_from(["low", "medium", "high"])),
    stop_sequences=maybe(st.lists(texts, max_size=4)),
    top_p=maybe(floats),
)
stop_reasons = st.one_of(
    st.builds(EndTurn),
    st.builds(MaxTokens),
    st.builds(StopSequence),
    st.builds(ToolUseStop),
    st.builds(OtherStop, texts),
)
usages = st.builds(
    Usage,
    counts,
    counts,
    cached_input_tokens=maybe(counts),
    reasoning_tokens=maybe(counts),
    cost_usd=maybe(floats),
)
completion_responses = st.builds(
    CompletionResponse,
    content=st.lists(message_contents, max_size=3),
    id=texts,
    model=texts,
    role=st.sampled_from(Role),
    stop_reason=stop_reasons,
    stop_sequence=maybe(texts),
    message_type=texts,
    usage=usages,
)
pricings = st.builds(ModelPricing, floats, floats, maybe(floats))
model_infos = st.builds(
    ModelInfo,
    id=texts,
    display_name=texts,
    max_tokens=counts,
    provider=texts,
    pricing=maybe(pricings),
)
proxy_requests = st.builds(ListModels) | st.builds(GenerateCompletion, completion_requests)
proxy_responses = st.one_of(
    st.builds(ModelList, st.lists(model_infos, max_size=3)),
    st.builds(Completion, completion_responses),
    st.builds(
        ErrorResponse,
        texts,
        kind=maybe(st.sampled_from(sorted(ERROR_KINDS))),
        status=maybe(st.integers(100, 599)),
        retry_after_ms=maybe(counts),
        request_id=maybe(texts),
        provider_code=maybe(texts),
        attempts=maybe(st.integers(1, 10)),
    ),
)


def assert_round_trips(obj: Any, cls: Any) -> None:
    wire = serde.unstructure(obj, cls)
    assert serde.structure(wire, cls) == obj
    # Through JSON text too: the wire value holds JSON types only.
    assert serde.loads(json.dumps(wire), cls) == obj


@property_settings
@given(proxy_requests)
def test_proxy_requests_round_trip(request: Any) -> None:
    assert_round_trips(request, ProxyRequest)


@property_settings
@given(proxy_responses)
def test_proxy_responses_round_trip(response: Any) -> None:
    assert_round_trips(response, ProxyResponse)


@property_settings
@given(
    st.one_of(
        message_contents.map(lambda value: (value, MessageContent)),
        tool_contents.map(lambda value: (value, ToolContent)),
        tool_choices.map(lambda value: (value, ToolChoice)),
        stop_reasons.map(lambda value: (value, StopReason)),
        usages.map(lambda value: (value, Usage)),
        tools.map(lambda value: (value, Tool)),
        messages.map(lambda value: (value, Message)),
        pricings.map(lambda value: (value, ModelPricing)),
    )
)
def test_parts_round_trip(case: tuple[Any, Any]) -> None:
    assert_round_trips(*case)


@property_settings
@given(completion_requests)
def test_extensions_appear_only_when_set(request: CompletionRequest) -> None:
    wire = serde.unstructure(request)
    for name in ("max_tokens", "response_format", "reasoning_effort", "stop_sequences", "top_p"):
        assert (name in wire) == (getattr(request, name) is not None)
    for name in ("temperature", "system", "tools", "tool_choice", "disable_parallel_tool_use"):
        assert name in wire


# -- unknown fields in a request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("max_token", "did you mean 'max_tokens'?"),
        ("temprature", "did you mean 'temperature'?"),
        ("stop", "did you mean 'stop_sequences'?"),
        ("max_completion_tokens", "did you mean 'max_tokens'?"),
        ("frobnicate", "(expected one of model, messages,"),
    ],
)
def test_an_unknown_request_field_is_named_with_the_closest_known_one(key: str, hint: str):
    message = {"GenerateCompletion": {"request": {"messages": [], key: 5}}}
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(message, ProxyRequest)
    assert str(info.value).startswith(f"GenerateCompletion.request: unknown field '{key}'")
    assert hint in str(info.value)
    assert '"allow_unknown": true' in str(info.value)


def test_allow_unknown_ignores_unknown_fields():
    request = {"messages": [], "max_token": 5, "allow_unknown": True}
    read = serde.structure(request, CompletionRequest)
    assert (read.max_tokens, read.allow_unknown) == (None, True)
    assert serde.unstructure(read)["allow_unknown"] is True


def test_the_openai_sdk_fields_round_trip():
    request = CompletionRequest(
        messages=[],
        seed=7,
        user="u-1",
        metadata={"team": "a"},
        store=True,
        logprobs=True,
        top_logprobs=3,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        service_tier="flex",
        verbosity="low",
        prompt_cache_key="k",
    )
    assert serde.loads(serde.dumps(request), CompletionRequest) == request


def test_an_openai_shaped_tool_keeps_strict():
    openai_tool = {
        "type": "function",
        "function": {"name": "now", "parameters": {"type": "object"}, "strict": True},
    }
    assert serde.structure(openai_tool, Tool).strict is True


STREAM_EXAMPLES: list[tuple[Any, Any]] = [
    ({"Delta": {"index": 0, "text": "Hel"}}, Delta(0, "Hel")),
    (
        {"ToolUseDelta": {"index": 1, "id": "call_1", "name": "get_weather", "input_json": ""}},
        ToolUseDelta(1, "call_1", "get_weather", ""),
    ),
    (
        {"ToolUseDelta": {"index": 1, "input_json": '{"city"'}},
        ToolUseDelta(1, input_json='{"city"'),
    ),
    ({"ReasoningDelta": {"text": "Let me"}}, ReasoningDelta("Let me")),
    (
        {"Retrying": {"delay_s": 1.7, "reason": "429 rate limit", "attempt": 2, "max_attempts": 5}},
        Retrying(1.7, "429 rate limit", 2, 5),
    ),
    (
        {"Error": {"error": "cut", "kind": "connection", "partial_text": "Hel"}},
        ErrorResponse("cut", kind="connection", partial_text="Hel"),
    ),
    (
        {"Error": {"error": "stopped", "kind": "cancelled"}},
        ErrorResponse("stopped", kind="cancelled"),
    ),
]


@pytest.mark.parametrize(("wire", "value"), STREAM_EXAMPLES)
def test_stream_messages_have_the_exact_wire_json(wire: Any, value: Any) -> None:
    assert serde.unstructure(value, ProxyStreamMessage) == wire
    assert serde.structure(wire, ProxyStreamMessage) == value


def test_a_retry_notice_reads_as_the_line_the_proxy_logs() -> None:
    assert Retrying(1.7, "429 rate limit", 2, 5).line() == (
        "retrying in 1.7 s: 429 rate limit (attempt 2 of 5)"
    )
    assert Retrying(0.0123456, "timeout: read", 3, 3).line() == (
        "retrying in 0.0123 s: timeout: read (attempt 3 of 3)"
    )


def test_a_streamed_completion_reads_as_the_plain_reply() -> None:
    wire = {
        "Completion": {
            "completion": {
                "content": [{"type": "text", "text": "hi"}],
                "id": "c",
                "model": "m",
                "role": "assistant",
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        }
    }
    message = serde.structure(wire, ProxyStreamMessage)
    assert message == serde.structure(wire, ProxyResponse)
    assert serde.unstructure(message, ProxyStreamMessage) == serde.unstructure(
        message, ProxyResponse
    )


def test_an_unknown_stream_message_is_refused_by_name() -> None:
    with pytest.raises(MessageDecodeError, match="Deltaa"):
        serde.structure({"Deltaa": {"index": 0, "text": ""}}, ProxyStreamMessage)
