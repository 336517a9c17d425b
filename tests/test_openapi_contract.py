"""Bodies theater_py_actors.openai_proxy.convert makes conform to CreateChatCompletionRequest."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.contract import derive_schema
from tests.openapi_contract import (
    validate_chat_request,
    validate_list_models_response,
    validator_for,
)
from theater_py_actors.genai_types import (
    Audio,
    Base64Source,
    CompletionRequest,
    Image,
    Message,
    Role,
    Text,
    Tool,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolImage,
    ToolResource,
    ToolResult,
    ToolText,
    ToolUse,
    UrlSource,
)
from theater_py_actors.openai_proxy.catalog import load_catalog
from theater_py_actors.openai_proxy.convert import to_chat_request
from theater_py_actors.openai_proxy.rules import ModelRules
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = Tool(name="get_weather", description="Get the weather", input_schema=SCHEMA)

CONVERSATION = [
    Message.user("What's the weather in Paris?"),
    Message(
        Role.ASSISTANT,
        [Text("Let me check."), ToolUse("call_1", "get_weather", {"city": "Paris"})],
    ),
    Message(
        Role.USER,
        [
            ToolResult("call_1", [ToolText("18C"), ToolResource({"uri": "x"})]),
            ToolResult("call_2", [ToolImage("AAAA", mime_type="image/png")], is_error=True),
            Text("And this picture?"),
            Image(UrlSource("https://example.com/a.png"), detail="low"),
            Image(Base64Source("image/png", "AAAA")),
            Audio("UklGRg==", "mp3"),
        ],
    ),
    Message(Role.ASSISTANT, [ToolUse("call_3", "get_weather", "{not json")]),
    Message(Role.SYSTEM, [Text("Answer in French.")]),
    Message(Role.USER, []),
]

EXAMPLES = {
    "minimal": CompletionRequest(messages=[Message.user("Hi")]),
    "conversation": CompletionRequest(
        model="gpt-4o",
        messages=CONVERSATION,
        max_tokens=1024,
        temperature=0.7,
        system="You are a helpful AI assistant.",
        tools=[WEATHER, Tool(name="now", input_schema={"type": "object", "properties": {}})],
        tool_choice=ToolChoiceTool("get_weather"),
        disable_parallel_tool_use=True,
    ),
    "extensions": CompletionRequest(
        messages=[Message.user("Give me JSON")],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
        },
        reasoning_effort="high",
        stop_sequences=["END", "\n\n"],
        top_p=0.9,
        temperature=0,
    ),
    "json_object": CompletionRequest(
        messages=[Message.user("JSON please")], response_format={"type": "json_object"}
    ),
    "sdk_fields": CompletionRequest(
        messages=[Message.user("Hi")],
        tools=[Tool(name="now", input_schema={"type": "object", "properties": {}}, strict=True)],
        seed=7,
        user="user-1",
        metadata={"team": "a"},
        store=True,
        logprobs=True,
        top_logprobs=3,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logit_bias={"50256": -100},
        service_tier="flex",
        verbosity="low",
        prompt_cache_key="prefix-1",
    ),
    **{
        f"choice_{type(choice).__name__}": CompletionRequest(
            messages=[Message.user("x")], tools=[WEATHER], tool_choice=choice
        )
        for choice in (ToolChoiceAuto(), ToolChoiceAny(), ToolChoiceNone())
    },
}

RULES = load_catalog()
OPTIONS = [
    {"content_format": "Array", "rules": ModelRules(token_limit_param="max_completion_tokens")},
    {"content_format": "String", "rules": ModelRules()},
    {"content_format": "Array", "rules": RULES.rules_for("https://api.openai.com/v1", "o3")},
    {
        "content_format": "Array",
        "rules": RULES.rules_for("https://api.moonshot.ai/v1", "kimi-k2.6"),
    },
    {"content_format": "Array", "rules": RULES.rules_for("http://127.0.0.1/v1", "local")},
]


@pytest.mark.parametrize("options", OPTIONS, ids=["parts", "string", "o3", "kimi", "local"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_bodies_conform(name: str, options: dict[str, Any]) -> None:
    body = to_chat_request(EXAMPLES[name], default_model="gpt-4o", **options).body
    validate_chat_request(body)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "top_p": 3}, "top_p"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "any"},
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
            },
            "messages",
        ),
    ],
)
def test_the_validator_catches_bad_bodies(body: dict[str, Any], where: str) -> None:
    """The contract check itself works: these bodies break the spec."""
    with pytest.raises(jsonschema.ValidationError) as info:
        validate_chat_request(body)
    assert where in info.value.json_path or where in info.value.message


# -- the committed schema ----------------------------------------------------------------


@pytest.mark.parametrize("root", derive_schema.ROOTS)
def test_the_committed_schema_is_self_contained_and_says_where_it_came_from(root: str) -> None:
    schema = validator_for(root).schema
    source = schema["x-source"]
    assert source["roots"] == [root]
    assert schema["$ref"] == f"#/$defs/{root}"
    assert source["repository"] == "https://github.com/openai/openai-openapi"
    assert source["commit"] == derive_schema.SOURCE_COMMIT
    assert source["license"] == "MIT"
    assert len(source["sha256"]) == 64
    refs = {
        match
        for match in _refs(schema)
        if not match.startswith("#/$defs/") or match.removeprefix("#/$defs/") not in schema["$defs"]
    }
    assert refs == set(), "every $ref resolves inside the file"


def _refs(node: Any) -> list[str]:
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    if not isinstance(node, dict):
        return []
    own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
    return own + [ref for value in node.values() for ref in _refs(value)]


@pytest.mark.skipif(
    not derive_schema.DEFAULT_SPEC.is_file(),
    reason=f"the OpenAI OpenAPI spec is not at {derive_schema.DEFAULT_SPEC}",
)
def test_the_committed_schemas_are_derived_from_the_spec() -> None:
    """Regenerating from the spec beside the repository gives the committed files, byte for
    byte."""
    spec = derive_schema.DEFAULT_SPEC.read_bytes()
    for root, path in derive_schema.SCHEMAS.items():
        derived = derive_schema.render(derive_schema.derive(spec, root=root))
        committed = path.read_text(encoding="utf-8")
        assert derived == committed, f"{path.name}: run python -m tests.contract.derive_schema"


def test_nullable_and_discriminators_are_adapted() -> None:
    spec_node = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "nullable": True, "enum": ["x"]},
            "b": {"$ref": "#/components/schemas/B", "nullable": True},
            "c": {"oneOf": [{"type": "string"}], "discriminator": {"propertyName": "kind"}},
        },
    }
    assert derive_schema.adapt(spec_node) == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"], "enum": ["x", None]},
            "b": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}]},
            "c": {"oneOf": [{"type": "string"}]},
        },
    }


# -- properties -------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
texts = st.text(max_size=20)
user_parts = st.one_of(
    st.builds(Text, texts),
    st.builds(
        Image,
        st.builds(UrlSource, st.just("https://example.com/a.png"))
        | st.builds(Base64Source, st.sampled_from(["image/png", "image/jpeg"]), texts),
        st.none() | st.sampled_from(["auto", "low", "high"]),
    ),
    st.builds(Audio, texts, st.sampled_from(["wav", "mp3"])),
    st.builds(
        ToolResult,
        names,
        st.lists(
            st.builds(ToolText, texts) | st.builds(ToolImage, texts, mime_type=texts), max_size=2
        ),
        st.none() | st.booleans(),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | texts,
    lambda children: st.lists(children, max_size=2) | st.dictionaries(texts, children, max_size=2),
    max_leaves=5,
)
assistant_parts = st.builds(Text, texts) | st.builds(
    ToolUse, names, names, json_values | st.dictionaries(texts, json_values, max_size=2)
)
messages = st.one_of(
    st.builds(Message, st.just(Role.USER), st.lists(user_parts, max_size=3)),
    st.builds(Message, st.just(Role.ASSISTANT), st.lists(assistant_parts, max_size=3)),
    st.builds(Message, st.just(Role.SYSTEM), st.lists(st.builds(Text, texts), max_size=2)),
)
tools = st.builds(
    Tool,
    name=names,
    description=st.none() | texts,
    input_schema=st.just(SCHEMA) | st.just({"type": "object", "properties": {}}),
)
tool_choices = st.one_of(
    st.builds(ToolChoiceAuto),
    st.builds(ToolChoiceAny),
    st.builds(ToolChoiceNone),
    st.builds(ToolChoiceTool, names),
)
response_formats = st.sampled_from(
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}},
    ]
)
requests = st.builds(
    CompletionRequest,
    model=st.sampled_from(["", "gpt-4o", "o3-mini", "moonshot-v1-8k"]),
    messages=st.lists(messages, min_size=1, max_size=4),
    max_tokens=st.none() | st.integers(1, 100_000),
    temperature=st.none() | st.floats(0, 2),
    system=st.none() | texts,
    tools=st.none() | st.lists(tools, max_size=3),
    tool_choice=st.none() | tool_choices,
    disable_parallel_tool_use=st.none() | st.booleans(),
    response_format=st.none() | response_formats,
    reasoning_effort=st.none() | st.sampled_from(["minimal", "low", "medium", "high"]),
    stop_sequences=st.none() | st.lists(texts, max_size=4),
    top_p=st.none() | st.floats(0, 1),
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests,
    st.sampled_from(["Array", "String"]),
    st.sampled_from([options["rules"] for options in OPTIONS]),
)
def test_generated_bodies_conform(
    request: CompletionRequest, content_format: Any, rules: ModelRules
) -> None:
    result = to_chat_request(
        request, default_model="gpt-4o", content_format=content_format, rules=rules
    )
    validate_chat_request(result.body)


# -- GET /models: the reply the proxy parses ---------------------------------------------

# The shape of OpenAI's reply, as its API reference shows it.
OPENAI_MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
        {
            "id": "gpt-4o-2024-08-06",
            "object": "model",
            "created": 1722814719,
            "owned_by": "system",
            "shutdown_date": None,
        },
        {"id": "o3", "object": "model", "created": 1744225308, "owned_by": "system"},
    ],
}


def test_a_canned_openai_models_reply_conforms_and_is_merged_with_the_catalog() -> None:
    validate_list_models_response(OPENAI_MODELS)
    models = load_catalog().merge_live("https://api.openai.com/v1", OPENAI_MODELS["data"])
    assert [(m.id, m.provider, m.max_tokens) for m in models] == [
        ("gpt-4o", "openai", 128000),
        ("gpt-4o-2024-08-06", "openai", 128000),
        ("o3", "openai", 200000),
    ]
    assert all(model.pricing is not None for model in models)


def test_the_simulator_s_models_reply_conforms() -> None:
    with OpenAISimulator() as simulator:
        url = f"{simulator.base_url}/models"
        with urllib.request.urlopen(url, timeout=10) as reply:
            status, body = reply.status, json.load(reply)
    assert status == 200
    validate_list_models_response(body)


@pytest.mark.parametrize(
    ("reply", "where"),
    [
        ({"data": []}, "object"),
        ({"object": "list", "data": [{"id": "x", "object": "model"}]}, "created"),
        (
            {
                "object": "list",
                "data": [{"id": 5, "object": "model", "created": 1, "owned_by": "a"}],
            },
            "id",
        ),
    ],
)
def test_the_models_validator_catches_bad_replies(reply: dict[str, Any], where: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=where):
        validate_list_models_response(reply)
