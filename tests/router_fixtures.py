"""The router on loopback upstreams: helpers the router tests share.

``start_router(runtime, {"alpha": url, ...}, routes, **config)`` starts the shipped
``openai-router`` with one child proxy per upstream, each reading the simulator's key
from ``$SIM_KEY`` (set it first: the ``start_proxy_at`` fixture's monkeypatch does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.proxy_fixtures import FAST_RETRIES, KEY_ENV
from theater_py import ActorHandle, Runtime
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

PRICED = {"input_cost_per_million_tokens": 1.0, "output_cost_per_million_tokens": 2.0}
"""The prices of the models :func:`model` describes unless told otherwise."""


def model(
    model_id: str, window: int = 100_000, pricing: Mapping[str, float] | None = PRICED
) -> dict[str, Any]:
    """A proxy config's ``models`` entry: a model with this context window and pricing."""
    return {
        "id": model_id,
        "display_name": model_id,
        "max_tokens": window,
        "provider": "sim",
        "pricing": None if pricing is None else dict(pricing),
    }


def provider(base_url: str, *models: dict[str, Any], **config: Any) -> dict[str, Any]:
    """A router config's provider entry: a proxy at ``base_url`` with fast retries."""
    settings = {
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "retry_config": {**FAST_RETRIES, **config.pop("retry_config", {})},
        "models": list(models),
        **config,
    }
    return {"init": {"config": settings}}


def start_router(
    runtime: Runtime,
    providers: Mapping[str, dict[str, Any]],
    routes: Mapping[str, list[str]] | None = None,
    name: str = "router",
    store_id: str | None = None,
    **config: Any,
) -> ActorHandle:
    """Start the shipped router with these providers (see :func:`provider`) and routes."""
    init: dict[str, Any] = {
        "config": {"providers": dict(providers), "routes": dict(routes or {}), **config}
    }
    if store_id is not None:
        init["store_id"] = store_id
    return runtime.start_actor("openai-router", init, name=name)


@pytest.fixture
def sims(sim_options: dict[str, Any]) -> Iterator[tuple[OpenAISimulator, OpenAISimulator]]:
    """Two simulators, alpha and beta, for a router's two providers."""
    with OpenAISimulator(**sim_options) as alpha, OpenAISimulator(**sim_options) as beta:
        yield alpha, beta
