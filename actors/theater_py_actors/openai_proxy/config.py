"""The OpenAI proxy's init state: its configuration and how it is read.

The init state is ``{"store_id": ..., "config": {...}}`` as in the Rust actor. Every key is
optional, ``null`` means the same as absent, and an unknown key is an error (a typo such as
``defualt_model`` would otherwise be ignored silently). Errors name the path of the field at
fault: ``config.retry_config.max_retries: expected a non-negative integer, got -1``.

The checks live on the classes as attrs validators, so a config built in Python is checked
exactly like one read from JSON. The converter that reads JSON therefore passes primitives
through untouched instead of coercing them (cattrs would turn ``"5"`` into ``5``) and leaves
the judging to the validators.

The API key is not part of the config: the actor reads it once, at init, from the
environment variable that ``api_key_env`` names.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeGuard, TypeVar, get_args
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from theater_py._http import url_without_secrets
from theater_py._suggest import expected_keys
from theater_py.errors import TheaterError
from theater_py_actors.genai_types import ModelInfo, ModelPricing
from theater_py_actors.openai_proxy.errors import excerpt

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_STREAM_IDLE_TIMEOUT_MS",
    "DEFAULT_TIMEOUT_MS",
    "DEFAULT_TOTAL_TIMEOUT_MS",
    "REASONING_TIMEOUT_MS",
    "REASONING_TOTAL_TIMEOUT_MS",
    "ConfigError",
    "ContentFormat",
    "ProxyConfig",
    "ProxyInit",
    "RetryConfig",
    "Timeouts",
    "TokenLimitParam",
    "looks_secret",
    "masked_repr",
    "parse_init",
    "read_api_key",
]

DEFAULT_TIMEOUT_MS = 30_000
"""The timeout of one attempt when ``timeout_ms`` is not set (the seed's)."""
DEFAULT_TOTAL_TIMEOUT_MS = 120_000
"""The deadline of a request when ``max_total_timeout_ms`` is not set (the seed's)."""
REASONING_TIMEOUT_MS = 600_000
"""Those two for a reasoning model: an attempt may think for 600 s (the OpenAI SDK's
default timeout)..."""
REASONING_TOTAL_TIMEOUT_MS = 1_200_000
"""...and the whole request, a retry included, 1200 s."""
DEFAULT_STREAM_IDLE_TIMEOUT_MS = 60_000
"""The longest silence within a streamed completion when ``stream_idle_timeout_ms`` is
not set."""
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""The largest reply body read when ``max_response_bytes`` is not set: 32 MiB."""

ContentFormat = Literal["Array", "String"]
"""How message content goes out: a list of parts, or one string (older Moonshot models)."""

TokenLimitParam = Literal["max_tokens", "max_completion_tokens"]
"""The request key that carries the output token limit."""

_T = TypeVar("_T")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


class ConfigError(TheaterError, ValueError):
    """The proxy's init state is invalid.

    Attributes:
        path: the dotted path of the field at fault (``config.retry_config.max_retries``),
            or ``""`` for the whole init state.
        reason: what is wrong there.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


def _describe(value: object) -> str:
    # URL credentials and secret query parameters are masked before anything else (a
    # cut could keep part of one); then the echo is capped: a value can be a large blob.
    return excerpt(repr(value), None, limit=80)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(minimum: int, what: str) -> _Validator:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not _is_int(value) or value < minimum:
            raise ConfigError(attribute.name, f"expected {what}, got {_describe(value)}")

    return check


def _non_empty_str(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(attribute.name, f"expected a non-empty string, got {_describe(value)}")


def _env_var_name(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    # Never echo the value: a key pasted here by mistake must not end up in a log.
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ConfigError(
            attribute.name, "expected an environment variable name (letters, digits and '_')"
        )


def _http_url(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            ok = ok and not parts.query and not parts.fragment and parts.port != 0
        except ValueError:  # an invalid port or bracketed host
            ok = False
        if ok:
            return
    raise ConfigError(
        attribute.name,
        "expected an http(s) URL such as 'https://host/v1', without a query string, "
        f"got {_describe(_without_userinfo(value) if isinstance(value, str) else value)}",
    )


# RFC 9110's token: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Names whose values may be credentials: masked in reprs (Azure's ``api-key`` header, a
# SAS ``sig``, Azure Functions' ``code``); ``api-version`` and ``OpenAI-Beta`` are shown.
_SECRET_NAME = re.compile(r"(?i)key|token|secret|sig|auth|pass|code|cred|cookie")


def looks_secret(name: str) -> bool:
    """Whether a header or query parameter named ``name`` may carry a credential."""
    return _SECRET_NAME.search(name) is not None


def unsendable(text: str) -> bool:
    """Whether ``text`` holds a character no HTTP header (or query value) should carry."""
    return any(not " " <= char <= "\xff" or "\x7f" <= char <= "\x9f" for char in text)


def _header_value_problem(value: Any) -> str | None:
    # The value is never echoed: it may be a credential (Azure's api-key header).
    if not isinstance(value, str) or not value:
        return f"expected a non-empty string, got {type(value).__name__}"
    if unsendable(value):
        return "holds a control character or one outside latin-1, which a header cannot carry"
    if value != value.strip():
        return "starts or ends with whitespace"
    return None


def _header_value(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    problem = _header_value_problem(value)
    if problem is not None:
        raise ConfigError(attribute.name, problem)


def _to_headers(value: Any) -> dict[str, str]:
    # Runs as the field's converter: every name and value is checked here.
    if not isinstance(value, Mapping):
        raise ConfigError(
            "extra_headers", f"expected an object of header names to values, got {_describe(value)}"
        )
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(
                "extra_headers",
                f"invalid header name {_describe(name)}: a name is letters, digits and "
                "!#$%&'*+-.^_`|~, without spaces or control characters",
            )
        if name.lower() == "authorization":
            raise ConfigError(
                f"extra_headers.{name}",
                "Authorization carries the key read from api_key_env and cannot be overridden",
            )
        problem = _header_value_problem(text)
        if problem is not None:
            raise ConfigError(f"extra_headers.{name}", problem)
    return dict(value)


def _to_query(value: Any) -> dict[str, str]:
    # Runs as the field's converter. Values are never echoed: one may be a signature.
    if not isinstance(value, Mapping):
        raise ConfigError(
            "extra_query",
            f"expected an object of parameter names to values, got {_describe(value)}",
        )
    for name, text in value.items():
        if not isinstance(name, str) or not name or unsendable(name):
            raise ConfigError(
                "extra_query",
                f"invalid parameter name {_describe(name)}: expected a non-empty string "
                "without control characters",
            )
        if not isinstance(text, str) or unsendable(text):
            raise ConfigError(
                f"extra_query.{name}",
                "expected a string without control characters, "
                f"got {'a string with one' if isinstance(text, str) else type(text).__name__}",
            )
    return dict(value)


def masked_repr(pairs: Mapping[str, Any]) -> str:
    """The repr of headers or query parameters, with values that may be secret masked."""
    return repr(
        {name: "[redacted]" if looks_secret(name) else text for name, text in pairs.items()}
    )


def _bool(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(attribute.name, f"expected true or false, got {_describe(value)}")


def _without_userinfo(url: str) -> str:
    # Everything before the last "@" may be credentials, wherever urlsplit ends the
    # host: an unencoded password can hold "/", "?", "#", "@" or a space.
    if "@" not in url:
        return url
    scheme, separator, _ = url.partition("://")
    return f"{scheme}{separator}[redacted]@{url.rpartition('@')[2]}"


def _multiplier(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _is_number(value) or value < 1:
        raise ConfigError(attribute.name, f"expected a number >= 1, got {_describe(value)}")


def _one_of(literal: Any) -> _Validator:
    choices = tuple(choice for choice in get_args(literal) if choice is not None)
    expected = " or ".join(repr(choice) for choice in choices)

    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise ConfigError(attribute.name, f"expected {expected}, got {_describe(value)}")

    return check


_MODEL_KEYS = ("id", "display_name", "max_tokens", "provider", "pricing")
_PRICE_KEYS = ("input_cost_per_million_tokens", "output_cost_per_million_tokens")
_OPTIONAL_PRICE_KEYS = ("cached_input_cost_per_million_tokens",)


def _unknown_key(path: str, key: object, valid: Iterable[str]) -> ConfigError:
    """The error of an unknown key: the valid keys there, the closest match first."""
    # From Python, a key need not be a string ({1: ...}): name it by its repr.
    name = key if isinstance(key, str) else repr(key)
    return ConfigError(_join(path, name), f"unknown key ({expected_keys(name, valid)})")


def _price(path: str, value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise ConfigError(path, f"expected a non-negative number, got {_describe(value)}")
    return float(value)


def _model_pricing(path: str, pricing: Any) -> ModelPricing:
    if not isinstance(pricing, Mapping):
        raise ConfigError(path, f"expected an object, got {_describe(pricing)}")
    unknown = sorted(set(pricing) - {*_PRICE_KEYS, *_OPTIONAL_PRICE_KEYS}, key=str)
    if unknown:
        raise _unknown_key(path, unknown[0], (*_PRICE_KEYS, *_OPTIONAL_PRICE_KEYS))
    prices: dict[str, Any] = {key: _price(f"{path}.{key}", pricing.get(key)) for key in _PRICE_KEYS}
    for key in _OPTIONAL_PRICE_KEYS:
        if pricing.get(key) is not None:
            prices[key] = _price(f"{path}.{key}", pricing[key])
    return ModelPricing(**prices)


def _model_info(path: str, entry: Any) -> ModelInfo:
    """Read one custom catalog entry, filling in its optional keys.

    Raises:
        ConfigError: the entry is not shaped like a genai ``ModelInfo``.
    """
    if isinstance(entry, ModelInfo):
        return entry
    if not isinstance(entry, Mapping):
        raise ConfigError(path, f"expected an object, got {_describe(entry)}")
    unknown = sorted(set(entry).difference(_MODEL_KEYS), key=str)
    if unknown:
        raise _unknown_key(path, unknown[0], _MODEL_KEYS)
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ConfigError(f"{path}.id", f"expected a non-empty string, got {_describe(model_id)}")
    context = entry.get("max_tokens")
    if not _is_int(context) or context < 1:
        raise ConfigError(
            f"{path}.max_tokens",
            f"expected the context window as a positive integer, got {_describe(context)}",
        )
    display_name = entry.get("display_name")
    provider = entry.get("provider")
    for key, text in (("display_name", display_name), ("provider", provider)):
        if text is not None and not isinstance(text, str):
            raise ConfigError(f"{path}.{key}", f"expected a string, got {_describe(text)}")
    pricing = entry.get("pricing")
    return ModelInfo(
        id=model_id,
        display_name=model_id if display_name is None else display_name,
        max_tokens=context,
        provider="custom" if provider is None else provider,
        pricing=None if pricing is None else _model_pricing(f"{path}.pricing", pricing),
    )


def _to_models(value: Any) -> tuple[ModelInfo, ...]:
    # Runs as the field's converter, so the entries are checked before the validators see them.
    if not isinstance(value, list | tuple):
        raise ConfigError("models", f"expected a list of model entries, got {_describe(value)}")
    return tuple(_model_info(f"models[{index}]", entry) for index, entry in enumerate(value))


@attrs.frozen
class Timeouts:
    """The time limits of one request, in milliseconds.

    Attributes:
        attempt_ms: the timeout of one HTTP attempt.
        total_ms: the deadline of the whole request.
    """

    attempt_ms: int
    total_ms: int


@attrs.frozen
class RetryConfig:
    """How the HTTP client retries a failed request.

    Attributes:
        max_retries: retries after the first attempt (0 disables retries).
        initial_delay_ms: the backoff before the first retry, before jitter.
        max_delay_ms: the cap on a computed backoff.
        backoff_multiplier: the growth of the backoff from one retry to the next.
        max_total_timeout_ms: the deadline of the whole request, retries and waits
            included; ``None``: decided by the model (see :meth:`ProxyConfig.timeouts_for`).
    """

    max_retries: int = attrs.field(default=4, validator=_int_at_least(0, "a non-negative integer"))
    initial_delay_ms: int = attrs.field(
        default=1000, validator=_int_at_least(0, "a non-negative integer")
    )
    max_delay_ms: int = attrs.field(
        default=30000, validator=_int_at_least(0, "a non-negative integer")
    )
    backoff_multiplier: float = attrs.field(default=2.0, validator=_multiplier)
    max_total_timeout_ms: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_int_at_least(1, "a positive integer"))
    )

    def __attrs_post_init__(self) -> None:
        if self.max_delay_ms < self.initial_delay_ms:
            raise ConfigError(
                "max_delay_ms",
                f"expected at least initial_delay_ms ({self.initial_delay_ms}), "
                f"got {self.max_delay_ms}",
            )


@attrs.frozen
class ProxyConfig:
    """The OpenAI proxy's settings; every one has a default.

    Attributes:
        default_model: the model used when a request names none.
        base_url: the provider's API root, up to and including ``/v1``.
        api_key_env: the environment variable that holds the API key.
        content_format: ``"Array"`` sends content parts, ``"String"`` one string.
        max_cache_size: how many responses the actor caches (0 disables the cache).
        timeout_ms: the timeout of one HTTP attempt; ``None``: decided by the model (see
            :meth:`timeouts_for`).
        retry_config: the retry policy.
        max_concurrent_requests: how many requests the actor runs upstream at once.
        max_queued_requests: how many more may wait for one of those; past that, a
            request is answered ``overloaded`` at once. ``None``: 4 x
            ``max_concurrent_requests`` (see :attr:`queued_limit`).
        models: extra catalog entries for custom providers, read as genai ``ModelInfo``
            objects (``id`` and ``max_tokens``, the context window, are required;
            ``display_name`` defaults to the id, ``provider`` to ``"custom"``, ``pricing``
            to ``None``).
        token_limit_param: the key that carries the output token limit, or ``None`` to
            decide by provider and model.
        strict_params: refuse (``invalid_request``) a request the model's rules would
            change by dropping or clamping a parameter, instead of adapting it.
        organization: sent as the ``OpenAI-Organization`` header, as the official SDK does.
        project: sent as the ``OpenAI-Project`` header.
        extra_headers: more headers for every request; they win over the proxy's own,
            except ``Authorization``, which they may not name.
        extra_query: query parameters added to every request's URL (Azure's
            ``api-version``).
        stream_idle_timeout_ms: the longest silence a streamed completion may keep
            between two reads; past it the stream ends with ``kind: timeout``.
        max_stream_ms: a cap on a whole streamed completion, from its start; ``None``:
            none (once text flows, only the idle timeout applies).
        max_response_bytes: the largest reply body the proxy reads (a whole reply, or
            one line of a stream); past it, ``kind: invalid_response`` naming the limit.
    """

    default_model: str = attrs.field(default="gpt-4o", validator=_non_empty_str)
    base_url: str = attrs.field(
        default="https://api.openai.com/v1",
        validator=_http_url,
        repr=lambda url: repr(url_without_secrets(url)),
    )
    api_key_env: str = attrs.field(default="OPENAI_API_KEY", validator=_env_var_name)
    content_format: ContentFormat = attrs.field(default="Array", validator=_one_of(ContentFormat))
    max_cache_size: int = attrs.field(
        default=100, validator=_int_at_least(0, "a non-negative integer")
    )
    timeout_ms: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_int_at_least(1, "a positive integer"))
    )
    retry_config: RetryConfig = attrs.field(
        factory=RetryConfig, validator=attrs.validators.instance_of(RetryConfig)
    )
    max_concurrent_requests: int = attrs.field(
        default=64, validator=_int_at_least(1, "a positive integer")
    )
    max_queued_requests: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(_int_at_least(0, "a non-negative integer")),
    )
    models: tuple[ModelInfo, ...] = attrs.field(default=(), converter=_to_models)
    token_limit_param: TokenLimitParam | None = attrs.field(
        default=None, validator=attrs.validators.optional(_one_of(TokenLimitParam))
    )
    strict_params: bool = attrs.field(default=False, validator=_bool)
    organization: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_header_value)
    )
    project: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_header_value)
    )
    extra_headers: dict[str, str] = attrs.field(
        factory=dict, converter=_to_headers, repr=masked_repr
    )
    extra_query: dict[str, str] = attrs.field(factory=dict, converter=_to_query, repr=masked_repr)
    stream_idle_timeout_ms: int = attrs.field(
        default=DEFAULT_STREAM_IDLE_TIMEOUT_MS, validator=_int_at_least(1, "a positive integer")
    )
    max_stream_ms: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_int_at_least(1, "a positive integer"))
    )
    max_response_bytes: int = attrs.field(
        default=DEFAULT_MAX_RESPONSE_BYTES, validator=_int_at_least(1, "a positive integer")
    )

    @property
    def headers(self) -> dict[str, str]:
        """The headers every request carries besides the proxy's own: ``OpenAI-Organization``
        and ``OpenAI-Project`` when set, then ``extra_headers``."""
        headers = {}
        if self.organization is not None:
            headers["OpenAI-Organization"] = self.organization
        if self.project is not None:
            headers["OpenAI-Project"] = self.project
        headers.update(self.extra_headers)
        return headers

    def timeouts_for(self, reasoning: bool) -> Timeouts:
        """The timeouts of a request to a model, reasoning or not.

        ``timeout_ms`` and ``retry_config.max_total_timeout_ms`` win when set; otherwise a
        reasoning model (as the catalog's rules say) gets :data:`REASONING_TIMEOUT_MS` and
        :data:`REASONING_TOTAL_TIMEOUT_MS`, any other :data:`DEFAULT_TIMEOUT_MS` and
        :data:`DEFAULT_TOTAL_TIMEOUT_MS`.
        """
        attempt, total = self.timeout_ms, self.retry_config.max_total_timeout_ms
        if attempt is None:
            attempt = REASONING_TIMEOUT_MS if reasoning else DEFAULT_TIMEOUT_MS
        if total is None:
            total = REASONING_TOTAL_TIMEOUT_MS if reasoning else DEFAULT_TOTAL_TIMEOUT_MS
        return Timeouts(attempt, total)

    @property
    def queued_limit(self) -> int:
        """``max_queued_requests``, or its default, 4 x ``max_concurrent_requests``."""
        if self.max_queued_requests is None:
            return 4 * self.max_concurrent_requests
        return self.max_queued_requests


@attrs.frozen
class ProxyInit:
    """The proxy actor's init state.

    Attributes:
        store_id: the content store the actor keeps its state in, if any.
        config: the proxy's settings.
    """

    store_id: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_empty_str)
    )
    config: ProxyConfig = attrs.field(
        factory=ProxyConfig, validator=attrs.validators.instance_of(ProxyConfig)
    )


def _passthrough(value: _T, _: object) -> _T:
    return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)
    for primitive in (int, float, str, bool):
        converter.register_structure_hook(primitive, _passthrough)
    # The validators judge the literals, and the models field's converter its entries.
    passed_through = (
        ContentFormat,
        TokenLimitParam | None,
        tuple[ModelInfo, ...],
        dict[str, str],
        int | None,
        str | None,
    )
    converter.register_structure_hook_func(lambda t: t in passed_through, _passthrough)

    def object_hook(cls: type[_T]) -> Callable[[Any, type[_T]], _T]:
        structure = converter.gen_structure_attrs_fromdict(cls)

        def hook(value: Any, _: type[_T]) -> _T:
            if not isinstance(value, Mapping):
                raise ConfigError("", f"expected an object, got {_describe(value)}")
            return structure({k: v for k, v in value.items() if v is not None}, cls)

        return hook

    converter.register_structure_hook_factory(attrs.has, object_hook)
    return converter


_converter = _make_converter()


def _join(path: str, name: str) -> str:
    if not path:
        return name
    if not name:
        return path
    return path + name if name.startswith("[") else f"{path}.{name}"


def _first_error(exc: BaseException, path: str) -> ConfigError:
    """Turn cattrs' nested exception groups into one error that names its path."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for inner, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                return _first_error(inner, _join(path, note.name))
            if isinstance(note, IterableValidationNote):
                return _first_error(inner, f"{path}[{note.index}]")
        for inner in without_notes:
            return _first_error(inner, path)
    if isinstance(exc, ForbiddenExtraKeysError):
        key = sorted(exc.extra_fields, key=str)[0]
        return _unknown_key(path, key, attrs.fields_dict(exc.cl))
    if isinstance(exc, ConfigError):
        return ConfigError(_join(path, exc.path), exc.reason)
    return ConfigError(path, str(exc))


def read_api_key(variable: str, value: str | None) -> str:
    """Check the API key read from the environment variable ``variable``.

    Surrounding whitespace is stripped: a key read from a file or a Kubernetes secret
    often ends with a newline, which ``http.client`` would refuse in a header with an
    error quoting the whole header, key included.

    Args:
        variable: the variable's name, the only thing an error names.
        value: the variable's value, or ``None`` when it is unset.

    Returns:
        The key, stripped.

    Raises:
        ConfigError: the variable is unset or blank, or the key holds a control character
            or one outside latin-1 (an HTTP header cannot carry it); the error names the
            variable, never the value.
    """
    key = (value or "").strip()
    if not key:
        raise ConfigError(
            "config.api_key_env", f"environment variable {variable} is not set or is empty"
        )
    if unsendable(key):
        raise ConfigError(
            "config.api_key_env",
            f"environment variable {variable} holds a control character or one outside "
            "latin-1, which an HTTP header cannot carry: check the key's value",
        )
    return key


def parse_init(state: Any) -> ProxyInit:
    """Read the proxy's init state.

    Args:
        state: the init state: ``None``, a JSON object as a dict, or its JSON text
            (``str`` or ``bytes``).

    Returns:
        The init state with every absent field at its default.

    Raises:
        ConfigError: the state is not valid JSON, or a field is unknown or invalid; the
            error names the field's path.
    """
    if isinstance(state, bytes | bytearray | str):
        if not state.strip():
            return ProxyInit()
        try:
            state = json.loads(state)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise ConfigError("", f"init state is not valid JSON: {exc}") from None
    if state is None:
        return ProxyInit()
    try:
        return _converter.structure(state, ProxyInit)
    except ConfigError:
        raise
    except BaseValidationError as exc:
        raise _first_error(exc, "") from None
