"""The OpenAI proxy actor on a loopback simulator: the fixtures the proxy tests share.

``tests/conftest.py`` registers the fixtures: ``start_proxy`` starts a proxy on the ``sim``
simulator, ``start_proxy_at`` on any upstream. A test file changes what varies by overriding
one of the two small fixtures below: ``sim_options`` (the simulator's key and models) or
``proxy_defaults`` (the config every proxy it starts gets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from theater_py import ActorHandle, Runtime
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "openai-proxy.toml"
KEY = "sk-sim-0123456789-secret"
KEY_ENV = "SIM_KEY"
FAST_RETRIES = {
    "max_retries": 3,
    "initial_delay_ms": 1,
    "max_delay_ms": 5,
    "backoff_multiplier": 2.0,
    "max_total_timeout_ms": 20000,
}


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """The simulator's keyword arguments; ``api_key`` is also the key the proxy reads."""
    return {"api_key": KEY}


@pytest.fixture
def sim(sim_options: dict[str, Any]) -> Iterator[OpenAISimulator]:
    with OpenAISimulator(**sim_options) as simulator:
        yield simulator


@pytest.fixture
def proxy_defaults() -> dict[str, Any]:
    """The config a started proxy gets unless the test names the field itself."""
    return {"retry_config": FAST_RETRIES}


@pytest.fixture
def start_proxy_at(
    runtime: Runtime,
    sim_options: dict[str, Any],
    proxy_defaults: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., ActorHandle]:
    """Start the shipped proxy manifest on any upstream, reading its key from ``$SIM_KEY``.

    ``start(base_url, retry=None, name="proxy", store_id=None, key=None, **config)``:
    ``retry`` is laid over the default's ``retry_config`` fields; ``key`` puts another key
    in the variable; any other keyword is a config field that replaces the default's.
    """
    monkeypatch.setenv(KEY_ENV, sim_options["api_key"])

    def start(
        base_url: str,
        retry: dict[str, Any] | None = None,
        name: str = "proxy",
        store_id: str | None = None,
        key: str | None = None,
        **config: Any,
    ) -> ActorHandle:
        if key is not None:
            monkeypatch.setenv(KEY_ENV, key)
        settings = {
            "base_url": base_url,
            "api_key_env": KEY_ENV,
            **proxy_defaults,
            "retry_config": {**proxy_defaults.get("retry_config", {}), **(retry or {})},
            **config,
        }
        init: dict[str, Any] = {"config": settings}
        if store_id is not None:
            init["store_id"] = store_id
        return runtime.start_actor(MANIFEST, init, name=name)

    return start


@pytest.fixture
def start_proxy(
    start_proxy_at: Callable[..., ActorHandle], sim: OpenAISimulator
) -> Callable[..., ActorHandle]:
    """:func:`start_proxy_at` on ``sim``, unless a ``base_url`` is given.

    ``start(name="proxy", store_id=None, key=None, **config)``: ``retry_config`` is laid
    over the default's fields, as ``retry`` is in :func:`start_proxy_at`.
    """

    def start(
        name: str = "proxy", store_id: str | None = None, key: str | None = None, **config: Any
    ) -> ActorHandle:
        base_url = config.pop("base_url", sim.base_url)
        retry = config.pop("retry_config", None)
        return start_proxy_at(base_url, retry, name, store_id, key, **config)

    return start
