"""Errors a new user meets outside the CLI: each names the field and says the fix."""

from __future__ import annotations

import pytest

from theater_py import serde
from theater_py.errors import ActorStartError, MessageDecodeError
from theater_py.runtime import load_component
from theater_py_actors.genai_types import CompletionRequest, GenerateCompletion, ProxyRequest, Tool
from theater_py_actors.openai_proxy.config import ConfigError, parse_init

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": WEATHER_PARAMETERS,
        "strict": True,
    },
}


# -- OpenAI-style tools ----------------------------------------------------------------


def request_with(tool: object) -> dict[str, object]:
    return {
        "GenerateCompletion": {
            "request": {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                "tools": [tool],
            }
        }
    }


def test_an_openai_style_tool_reads_as_the_wire_formats_tool() -> None:
    message = serde.structure(request_with(OPENAI_TOOL), ProxyRequest)

    assert isinstance(message, GenerateCompletion)
    assert message.request.tools == [
        Tool(
            name="get_weather",
            description="Weather in a city",
            input_schema=WEATHER_PARAMETERS,
            strict=True,  # kept: OpenAI's structured outputs for function calling
        )
    ]


def test_an_openai_style_tool_without_parameters_takes_no_arguments() -> None:
    tool = serde.structure({"type": "function", "function": {"name": "now"}}, Tool)

    assert tool == Tool(name="now", input_schema={"type": "object", "properties": {}})


def test_the_wire_formats_tool_stays_canonical() -> None:
    canonical = {"name": "get_weather", "input_schema": WEATHER_PARAMETERS}
    tool = serde.structure(canonical, Tool)

    assert serde.unstructure(tool) == canonical  # written in its own shape, not OpenAI's
    request = CompletionRequest(messages=[], tools=[tool])
    assert serde.unstructure(request)["tools"][0]["input_schema"] == WEATHER_PARAMETERS


def test_a_tool_of_neither_shape_says_which_shapes_are_expected() -> None:
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(request_with({"type": "function", "function": {}}), ProxyRequest)

    message = str(info.value)
    assert message.startswith("GenerateCompletion.request.tools[0]: function.name: required")
    assert "{name, description, input_schema}" in message
    assert '{"type": "function", "function": {name, description, parameters}}' in message


# -- the proxy's config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "path", "listed"),
    [
        (
            {"config": {"defualt_model": "x"}},
            "config.defualt_model",
            "did you mean 'default_model'? expected one of default_model, base_url,",
        ),
        (
            {"config": {"retry_config": {"max_retrys": 1}}},
            "config.retry_config.max_retrys",
            "did you mean 'max_retries'? expected one of max_retries, initial_delay_ms,",
        ),
        (
            {"config": {"models": [{"id": "m", "max_tokens": 1, "pricng": {}}]}},
            "config.models[0].pricng",
            "did you mean 'pricing'? expected one of pricing, id, display_name,",
        ),
        (
            {"config": {"models": [{"id": "m", "max_tokens": 1, "pricing": {"in": 1}}]}},
            "config.models[0].pricing.in",
            "expected one of input_cost_per_million_tokens, output_cost_per_million_tokens,",
        ),
    ],
)
def test_an_unknown_config_key_lists_the_valid_keys_closest_first(
    state: object, path: str, listed: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_init(state)

    assert info.value.path == path
    assert info.value.reason.startswith(f"unknown key ({listed}")


# -- a manifest's component ---------------------------------------------------------------


def test_a_missing_class_is_said_not_to_exist_and_the_modules_actors_are_listed() -> None:
    with pytest.raises(ActorStartError) as info:
        load_component("tests.sample_actors:Ecko")

    message = str(info.value)
    assert "tests.sample_actors.Ecko does not exist (its Actor subclasses: " in message
    assert "Echo, " in message


def test_a_class_that_is_no_actor_is_said_so() -> None:
    with pytest.raises(ActorStartError) as info:
        load_component("tests.test_user_errors:ConfigError")

    assert "ConfigError is not a theater_py.Actor subclass (it has no Actor subclass)" in str(
        info.value
    )
