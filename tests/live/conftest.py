"""Fixtures of the live suite: one llama-cpp-python server for the session, a proxy per test.

Importing this file needs nothing beyond the test extras, so the default run (which
deselects the ``live`` marker) collects it without llama-cpp-python installed.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live.server import MODEL_ALIAS, LlamaServer, model_path
from theater_py import ActorHandle, Runtime

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "openai-proxy.toml"
KEY_ENV = "LIVE_LLAMA_KEY"
KEY = "sk-live-dummy-0123456789"  # a dummy: the server is ours, on loopback
# Quick retries: the live server answers in well under a second when it is up.
RETRIES = {
    "max_retries": 1,
    "initial_delay_ms": 50,
    "max_delay_ms": 200,
    "backoff_multiplier": 2.0,
    "max_total_timeout_ms": 120000,
}


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """The server, started once; it is killed at the end of the session whatever happens."""
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    server = LlamaServer(model_path(), KEY, log)
    atexit.register(server.kill)  # even if pytest itself is torn down abruptly
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(llama_server: LlamaServer) -> LlamaServer:
    """The session's server, restarted first if an earlier test left it dead."""
    if not llama_server.running():
        llama_server.start()
    return llama_server


@pytest.fixture
def start_proxy(
    runtime: Runtime, server: LlamaServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., ActorHandle]:
    """Start the shipped proxy manifest against the live server; ``key`` overrides the key."""

    def start(*, key: str = KEY, **config: Any) -> ActorHandle:
        monkeypatch.setenv(KEY_ENV, key)
        settings = {
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "default_model": MODEL_ALIAS,
            "models": [{"id": MODEL_ALIAS, "max_tokens": server.n_ctx, "provider": "llama-cpp"}],
            "max_cache_size": 0,  # every call reaches the server
            "timeout_ms": 60000,
            "retry_config": RETRIES,
            **config,
        }
        return runtime.start_actor(MANIFEST, {"config": settings})

    return start
