"""The router's init state: its providers, routes, fallback kinds, deadline, limits, budget.

```json
{"store_id": "router-budget",
 "config": {
   "providers": {"openai": {"init": {"config": {"default_model": "gpt-4.1"}}}},
   "routes": {"smart": ["openai:gpt-4.1", "local:llama3"]},
   "fallback_on": ["rate_limit", "overloaded", "server_error", "timeout", "connection",
                   "context_window_exceeded"],
   "max_total_timeout_ms": 120000,
   "rate_limits": {"openai": {"rpm": 500, "tpm": 200000}},
   "budget": {"usd": 5.0, "per": "run"}}}
```

Every mistake is a :class:`~theater_py_actors.openai_proxy.config.ConfigError` naming
its field (``config.routes.smart[1]: unknown provider 'locl'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from theater_py import serde
from theater_py._suggest import expected_keys
from theater_py.errors import MessageDecodeError
from theater_py_actors.genai_types import ERROR_KINDS
from theater_py_actors.openai_proxy.config import ConfigError, ProxyInit, parse_init

__all__ = [
    "DEFAULT_FALLBACK_ON",
    "NEVER_FALL_BACK",
    "Budget",
    "ProviderSpec",
    "RateLimits",
    "RouterConfig",
    "RouterInit",
    "Target",
    "parse_router_init",
]

DEFAULT_FALLBACK_ON: tuple[str, ...] = (
    "rate_limit",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "context_window_exceeded",
)
"""The error kinds that move a request on to its next target unless the config says."""

NEVER_FALL_BACK: frozenset[str] = frozenset({"invalid_request", "cancelled", "budget_exceeded"})
"""Kinds no target can fix: the request itself is at fault, or its caller left."""

Period = Literal["run", "day", "month"]


@attrs.frozen(kw_only=True)
class ProviderSpec:
    """One provider: a child proxy actor.

    Attributes:
        init: the child's init state, as the proxy takes it (``{"config": {...}}``).
        manifest: the child's manifest (a shipped name or a path).
    """

    init: serde.JsonObject = attrs.field(factory=dict)
    manifest: str = "openai-proxy"


@attrs.frozen(kw_only=True)
class RateLimits:
    """A provider's limits per minute; ``None`` leaves that one to the provider's headers."""

    rpm: int | None = None
    tpm: int | None = None


@attrs.frozen(kw_only=True)
class Budget:
    """The most the router spends, in US dollars, per ``run`` (the store's life), ``day``
    or ``month`` (UTC)."""

    usd: float
    per: Period = "run"


@attrs.frozen(kw_only=True)
class RouterConfig:
    """The router's settings (see the module docstring)."""

    providers: dict[str, ProviderSpec]
    routes: dict[str, list[str]] = attrs.field(factory=dict)
    fallback_on: list[str] = attrs.field(factory=lambda: list(DEFAULT_FALLBACK_ON))
    max_total_timeout_ms: int = 120_000
    rate_limits: dict[str, RateLimits] = attrs.field(factory=dict)
    budget: Budget | None = None
    max_concurrent_requests: int = 64


@attrs.frozen(kw_only=True)
class RouterInit:
    """The router's init state: a store for the budget's ledger, and the config."""

    store_id: str | None = None
    config: RouterConfig


@attrs.frozen
class Target:
    """A ``provider:model`` pair."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_router_init(state: Any) -> tuple[RouterInit, dict[str, ProxyInit]]:
    """Read and check the router's init state.

    Returns:
        The init state, and each provider's proxy init, parsed (so that a bad provider
        config fails the router's start, naming the provider).

    Raises:
        ConfigError: a field is unknown or invalid; the error names its path.
    """
    if isinstance(state, bytes | bytearray | str):
        try:
            state = json.loads(state)
        except ValueError as exc:
            raise ConfigError("", f"init state is not valid JSON: {exc}") from None
    if not isinstance(state, Mapping):
        raise ConfigError("", "the router's init state is an object with a config")
    if "config" not in state:
        raise ConfigError("config", "required: the router's providers and routes")
    try:
        init = serde.structure_config(dict(state), RouterInit)
    except MessageDecodeError as exc:
        raise ConfigError(exc.path, exc.reason) from None
    _check(init.config)
    proxies: dict[str, ProxyInit] = {}
    for name, spec in init.config.providers.items():
        try:
            proxies[name] = parse_init(spec.init)
        except ConfigError as exc:
            raise ConfigError(f"config.providers.{name}.init.{exc.path}", exc.reason) from None
    return init, proxies


def parse_target(text: str, providers: Mapping[str, object], where: str) -> Target:
    """Read ``provider:model``; the provider must be one of ``providers``."""
    provider, sep, model = text.partition(":")
    if not sep or not provider or not model:
        raise ConfigError(where, f"expected 'provider:model', got {text!r}")
    if provider not in providers:
        raise ConfigError(
            where, f"unknown provider {provider!r} ({expected_keys(provider, list(providers))})"
        )
    return Target(provider, model)


def _check(config: RouterConfig) -> None:
    if not config.providers:
        raise ConfigError("config.providers", "name at least one provider")
    for name in config.providers:
        if not name or ":" in name:
            raise ConfigError(f"config.providers.{name}", "a provider's name has no ':'")
    _check_routes(config)
    _check_limits(config)


def _check_routes(config: RouterConfig) -> None:
    for route, targets in config.routes.items():
        if ":" in route:
            raise ConfigError(f"config.routes.{route}", "a route's name has no ':'")
        if not targets:
            raise ConfigError(f"config.routes.{route}", "name at least one target")
        for index, text in enumerate(targets):
            parse_target(text, config.providers, f"config.routes.{route}[{index}]")
    for index, kind in enumerate(config.fallback_on):
        where = f"config.fallback_on[{index}]"
        if kind not in ERROR_KINDS:
            raise ConfigError(where, f"unknown error kind {kind!r}")
        if kind in NEVER_FALL_BACK:
            raise ConfigError(where, f"{kind} is never a reason to try another target")


def _check_limits(config: RouterConfig) -> None:
    if config.max_total_timeout_ms < 1:
        raise ConfigError("config.max_total_timeout_ms", "expected a positive integer")
    if config.max_concurrent_requests < 1:
        raise ConfigError("config.max_concurrent_requests", "expected a positive integer")
    for provider, limits in config.rate_limits.items():
        where = f"config.rate_limits.{provider}"
        if provider not in config.providers:
            raise ConfigError(where, f"unknown provider {provider!r}")
        for field, value in (("rpm", limits.rpm), ("tpm", limits.tpm)):
            if value is not None and value < 1:
                raise ConfigError(f"{where}.{field}", "expected a positive integer")
    if config.budget is not None and not config.budget.usd >= 0:
        raise ConfigError("config.budget.usd", "expected a non-negative number")
