"""Reading the proxy's init state: defaults, partial configs, and errors that name the field."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from theater_py.errors import TheaterError
from theater_py_actors.genai_types import ModelInfo, ModelPricing
from theater_py_actors.openai_proxy.config import (
    ConfigError,
    ProxyConfig,
    ProxyInit,
    RetryConfig,
    Timeouts,
    parse_init,
)

SEED_INIT = {
    "store_id": "optional-store-id",
    "config": {
        "default_model": "gpt-4o",
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
        "content_format": "Array",
        "max_cache_size": 100,
        "timeout_ms": 30000,
        "retry_config": {
            "max_retries": 4,
            "initial_delay_ms": 1000,
            "max_delay_ms": 30000,
            "backoff_multiplier": 2.0,
            "max_total_timeout_ms": 120000,
        },
    },
}

URL_ERROR = (
    "config.base_url: expected an http(s) URL such as 'https://host/v1', "
    "without a query string, got "
)


def error_for(state: Any) -> ConfigError:
    """Parse a state that must fail, and return the error."""
    with pytest.raises(ConfigError) as info:
        parse_init(state)
    return info.value


def test_defaults_are_the_seed_s():
    config = ProxyConfig()
    assert config.default_model == "gpt-4o"
    assert config.base_url == "https://api.openai.com/v1"
    assert config.api_key_env == "OPENAI_API_KEY"
    assert config.content_format == "Array"
    assert config.max_cache_size == 100
    # Unset, the timeouts are the seed's (30 s and 120 s) for a chat model; a reasoning
    # model gets longer ones (see test_timeouts_*).
    assert config.timeout_ms is None
    assert config.timeouts_for(reasoning=False) == Timeouts(30000, 120000)
    assert config.retry_config == RetryConfig(
        max_retries=4,
        initial_delay_ms=1000,
        max_delay_ms=30000,
        backoff_multiplier=2.0,
        max_total_timeout_ms=None,
    )
    assert config.max_concurrent_requests == 64
    assert config.models == ()
    assert config.token_limit_param is None


def test_the_seed_s_full_example_reads_back_as_the_defaults():
    init = parse_init(SEED_INIT)
    # Spelled out, the seed's timeouts are set: they hold for reasoning models too.
    retry = RetryConfig(max_total_timeout_ms=120000)
    expected = ProxyConfig(timeout_ms=30000, retry_config=retry)
    assert init == ProxyInit(store_id="optional-store-id", config=expected)
    assert init.config.timeouts_for(reasoning=True) == Timeouts(30000, 120000)


@pytest.mark.parametrize("state", [None, {}, {"config": None}, {"config": {}}, b"", "  ", "{}"])
def test_an_absent_config_means_every_default(state: Any):
    assert parse_init(state) == ProxyInit()


def test_a_partial_config_keeps_the_other_defaults():
    init = parse_init({"config": {"default_model": "moonshot-v1-8k", "content_format": "String"}})
    assert init.config.default_model == "moonshot-v1-8k"
    assert init.config.content_format == "String"
    assert init.config.base_url == "https://api.openai.com/v1"
    assert init.store_id is None


def test_a_partial_retry_config_keeps_its_other_defaults():
    init = parse_init({"config": {"retry_config": {"max_retries": 0}}})
    assert init.config.retry_config == RetryConfig(max_retries=0)


def test_null_means_absent():
    init = parse_init({"store_id": None, "config": {"timeout_ms": None, "retry_config": None}})
    assert init == ProxyInit()


def test_json_text_and_bytes_are_read():
    text = json.dumps({"config": {"timeout_ms": 5000}})
    assert parse_init(text).config.timeout_ms == 5000
    assert parse_init(text.encode()).config.timeout_ms == 5000


def test_the_extensions_are_read():
    init = parse_init(
        {
            "config": {
                "max_concurrent_requests": 8,
                "token_limit_param": "max_completion_tokens",
                "models": [
                    {
                        "id": "llama-3-70b",
                        "display_name": "Llama 3 70B",
                        "max_tokens": 8192,
                        "provider": "groq",
                        "pricing": {
                            "input_cost_per_million_tokens": 0.59,
                            "output_cost_per_million_tokens": 0,
                        },
                    },
                    {"id": "local-model", "max_tokens": 32768},
                ],
            }
        }
    )
    assert init.config.max_concurrent_requests == 8
    assert init.config.token_limit_param == "max_completion_tokens"
    assert init.config.models == (
        ModelInfo(
            id="llama-3-70b",
            display_name="Llama 3 70B",
            max_tokens=8192,
            provider="groq",
            pricing=ModelPricing(
                input_cost_per_million_tokens=0.59, output_cost_per_million_tokens=0.0
            ),
        ),
        ModelInfo(
            id="local-model",
            display_name="local-model",
            max_tokens=32768,
            provider="custom",
            pricing=None,
        ),
    )


def test_a_cached_input_price_is_read():
    entry = {
        "id": "m",
        "max_tokens": 10,
        "pricing": {
            "input_cost_per_million_tokens": 2.5,
            "output_cost_per_million_tokens": 10,
            "cached_input_cost_per_million_tokens": 1.25,
        },
    }
    [model] = parse_init({"config": {"models": [entry]}}).config.models
    assert model.pricing is not None
    assert model.pricing.cached_input_cost_per_million_tokens == 1.25


def test_model_infos_are_accepted_in_python():
    model = ModelInfo(id="m", display_name="M", max_tokens=5, provider="p")
    assert ProxyConfig(models=[model]).models == (model,)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"retry_config": {"max_retries": -1}},
            "config.retry_config.max_retries: expected a non-negative integer, got -1",
        ),
        ({"defualt_model": "gpt-4o"}, "config.defualt_model: unknown key"),
        ({"retry_config": {"max_retry": 3}}, "config.retry_config.max_retry: unknown key"),
        ({"timeout_ms": 0}, "config.timeout_ms: expected a positive integer, got 0"),
        ({"timeout_ms": "5000"}, "config.timeout_ms: expected a positive integer, got '5000'"),
        ({"timeout_ms": 1.5}, "config.timeout_ms: expected a positive integer, got 1.5"),
        (
            {"max_cache_size": True},
            "config.max_cache_size: expected a non-negative integer, got True",
        ),
        (
            {"max_concurrent_requests": 0},
            "config.max_concurrent_requests: expected a positive integer, got 0",
        ),
        ({"default_model": ""}, "config.default_model: expected a non-empty string, got ''"),
        (
            {"api_key_env": 7},
            "config.api_key_env: expected an environment variable name (letters, digits and '_')",
        ),
        (
            {"base_url": "ftp://example.com/v1"},
            URL_ERROR + "'ftp://example.com/v1'",
        ),
        (
            {"base_url": "https:///v1"},
            URL_ERROR + "'https:///v1'",
        ),
        (
            {"base_url": "http://host:99999/v1"},
            URL_ERROR + "'http://host:99999/v1'",
        ),
        (
            {"content_format": "array"},
            "config.content_format: expected 'Array' or 'String', got 'array'",
        ),
        (
            {"token_limit_param": "max_output_tokens"},
            "config.token_limit_param: expected 'max_tokens' or 'max_completion_tokens', "
            "got 'max_output_tokens'",
        ),
        (
            {"retry_config": {"backoff_multiplier": 0.5}},
            "config.retry_config.backoff_multiplier: expected a number >= 1, got 0.5",
        ),
        (
            {"retry_config": {"max_total_timeout_ms": 0}},
            "config.retry_config.max_total_timeout_ms: expected a positive integer, got 0",
        ),
        (
            {"retry_config": {"initial_delay_ms": 5000, "max_delay_ms": 1000}},
            "config.retry_config.max_delay_ms: expected at least initial_delay_ms (5000), got 1000",
        ),
        ({"retry_config": [1]}, "config.retry_config: expected an object, got [1]"),
        (
            {"models": {"id": "x"}},
            "config.models: expected a list of model entries, got {'id': 'x'}",
        ),
        (
            {"models": [{"id": "a", "max_tokens": 10}, {"id": "", "max_tokens": 10}]},
            "config.models[1].id: expected a non-empty string, got ''",
        ),
        (
            {"models": [{"id": "a"}]},
            "config.models[0].max_tokens: "
            "expected the context window as a positive integer, got None",
        ),
        (
            {"models": [{"id": "a", "max_tokens": 10, "context": 5}]},
            "config.models[0].context: unknown key",
        ),
        (
            {
                "models": [
                    {"id": "a", "max_tokens": 10, "pricing": {"input_cost_per_million_tokens": -1}}
                ]
            },
            "config.models[0].pricing.input_cost_per_million_tokens: "
            "expected a non-negative number, got -1",
        ),
        (
            {"models": [{"id": "a", "max_tokens": 10, "pricing": {"currency": "EUR"}}]},
            "config.models[0].pricing.currency: unknown key",
        ),
        (
            {"models": [{"id": "a", "max_tokens": 10, "pricing": 3}]},
            "config.models[0].pricing: expected an object, got 3",
        ),
        (
            {"models": [{"id": "a", "max_tokens": 10, "provider": 3}]},
            "config.models[0].provider: expected a string, got 3",
        ),
    ],
)
def test_errors_name_the_field_and_the_problem(config: dict[str, Any], message: str):
    error = error_for({"config": config})
    # An unknown key's message goes on with the valid keys (tests/test_user_errors.py).
    assert str(error) == message or str(error).startswith(f"{message} (")
    assert error.path == message.split(":", 1)[0]


def test_config_errors_are_theater_errors_and_value_errors():
    error = error_for({"config": {"timeout_ms": -1}})
    assert isinstance(error, TheaterError)
    assert isinstance(error, ValueError)
    assert error.reason == "expected a positive integer, got -1"


def test_top_level_errors():
    assert str(error_for({"store": "x"})) == (
        "store: unknown key (did you mean 'store_id'? expected one of store_id, config)"
    )
    assert str(error_for({"store_id": 5})) == "store_id: expected a non-empty string, got 5"
    assert str(error_for({"config": "gpt-4o"})) == "config: expected an object, got 'gpt-4o'"
    assert str(error_for([1, 2])) == "expected an object, got [1, 2]"
    assert str(error_for("{not json")).startswith("init state is not valid JSON: ")


def test_a_long_bad_value_is_quoted_short():
    error = error_for({"config": {"default_model": ["x" * 500]}})
    assert len(str(error)) < 160


def test_direct_construction_is_checked_too():
    with pytest.raises(
        ConfigError, match=r"^max_retries: expected a non-negative integer, got -2$"
    ):
        RetryConfig(max_retries=-2)
    with pytest.raises(ConfigError, match=r"^content_format: "):
        ProxyConfig(content_format="Text")  # type: ignore[arg-type]


def test_configs_are_frozen():
    config = ProxyConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.timeout_ms = 1  # type: ignore[misc]


def test_a_key_pasted_as_api_key_env_is_refused_without_being_echoed():
    error = error_for({"config": {"api_key_env": "sk-proj-abc123"}})
    assert error.path == "config.api_key_env"
    assert "sk-proj" not in str(error)


def test_the_api_key_is_not_part_of_the_config():
    assert "api_key" not in attrs.fields_dict(ProxyConfig)
    message = str(error_for({"config": {"api_key": "sk-secret"}}))
    assert message.startswith("config.api_key: unknown key (did you mean 'api_key_env'?")
    assert "sk-secret" not in message


# --- organization, project, extra_headers, extra_query ----------------------------------


def test_organization_project_and_extra_headers_make_the_headers():
    config = parse_init(
        {
            "config": {
                "organization": "org-abc",
                "project": "proj_xyz",
                "extra_headers": {"OpenAI-Beta": "assistants=v2", "X-Team": "a b"},
                "extra_query": {"api-version": "2024-10-21"},
            }
        }
    ).config
    assert config.headers == {
        "OpenAI-Organization": "org-abc",
        "OpenAI-Project": "proj_xyz",
        "OpenAI-Beta": "assistants=v2",
        "X-Team": "a b",
    }
    assert config.extra_query == {"api-version": "2024-10-21"}
    assert ProxyConfig().headers == {}


@pytest.mark.parametrize("name", ["Authorization", "authorization", "AUTHORIZATION"])
def test_extra_headers_may_not_override_authorization(name: str):
    error = error_for({"config": {"extra_headers": {name: "Bearer sk-other-key-123"}}})
    assert error.path == f"config.extra_headers.{name}"
    assert "cannot be overridden" in error.reason
    assert "sk-other" not in str(error)


@pytest.mark.parametrize(
    ("headers", "path"),
    [
        ({"X-Key": "sk-secret-value\n"}, "config.extra_headers.X-Key"),
        ({"X-Key": "sk-secret\r\nX-Injected: 1"}, "config.extra_headers.X-Key"),
        ({"X-Key": "sk-secret\x00"}, "config.extra_headers.X-Key"),
        ({"X-Key": "sk-secret\u2028"}, "config.extra_headers.X-Key"),
        ({"X-Key": " sk-secret"}, "config.extra_headers.X-Key"),
        ({"X-Key": ""}, "config.extra_headers.X-Key"),
        ({"X-Key": 5}, "config.extra_headers.X-Key"),
        ({"X-Bad\nName": "v"}, "config.extra_headers"),
        ({"X Bad": "v"}, "config.extra_headers"),
        ({"": "v"}, "config.extra_headers"),
        (["X-Key"], "config.extra_headers"),
    ],
)
def test_a_header_with_control_characters_is_a_config_error_naming_the_field(
    headers: Any, path: str
):
    error = error_for({"config": {"extra_headers": headers}})
    assert error.path == path
    assert "sk-secret" not in str(error)  # a value is never echoed


@pytest.mark.parametrize("field", ["organization", "project"])
@pytest.mark.parametrize("value", ["org-1\n", "org\r\nX: y", "", 7])
def test_organization_and_project_are_checked_as_header_values(field: str, value: Any):
    assert error_for({"config": {field: value}}).path == f"config.{field}"


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"api-version": 2024}, "config.extra_query.api-version"),
        ({"sig": "abc\ndef"}, "config.extra_query.sig"),
        ({"": "x"}, "config.extra_query"),
        ("api-version=1", "config.extra_query"),
    ],
)
def test_bad_extra_query_is_a_config_error_naming_the_field(query: Any, path: str):
    error = error_for({"config": {"extra_query": query}})
    assert error.path == path
    assert "abc" not in str(error)


def test_secret_looking_header_and_query_values_are_masked_in_the_repr():
    config = ProxyConfig(
        extra_headers={"api-key": "azure-secret-1", "OpenAI-Beta": "assistants=v2"},
        extra_query={"api-version": "2024-10-21", "sig": "sas-secret-2", "code": "fn-secret-3"},
    )
    text = repr(config)
    for secret in ("azure-secret-1", "sas-secret-2", "fn-secret-3"):
        assert secret not in text
    assert "assistants=v2" in text
    assert "2024-10-21" in text


# --- timeouts: long for reasoning models, unless set ------------------------------------


def test_timeouts_are_long_for_a_reasoning_model_when_unset():
    config = ProxyConfig()
    assert config.timeouts_for(reasoning=True) == Timeouts(600_000, 1_200_000)
    assert config.timeouts_for(reasoning=False) == Timeouts(30_000, 120_000)


def test_timeouts_set_in_the_config_always_win():
    only_attempt = ProxyConfig(timeout_ms=5000)
    assert only_attempt.timeouts_for(reasoning=True) == Timeouts(5000, 1_200_000)
    only_total = ProxyConfig(retry_config=RetryConfig(max_total_timeout_ms=9000))
    assert only_total.timeouts_for(reasoning=True) == Timeouts(600_000, 9000)
    assert only_total.timeouts_for(reasoning=False) == Timeouts(30_000, 9000)
