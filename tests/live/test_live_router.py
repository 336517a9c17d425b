"""The router in front of a real llama-cpp-python server running SmolLM2-135M.

Run with ``make test-live``. The router's fallback, budget and streams against a provider
we did not write; as in the proxy's live tests, nothing asserts on what the model says.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Callable
from typing import Any

import pytest

from tests.live.conftest import KEY, KEY_ENV
from tests.live.server import MODEL_ALIAS, LlamaServer
from tests.live.test_live_proxy import completion, text_of, user
from theater_py import ActorHandle, Runtime
from theater_py_actors.genai_types import CompletionRequest, Message
from theater_py_actors.router.estimate import UNLEARNED_INPUT_OVERHEAD, estimate_tokens

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

PRICING = {"input_cost_per_million_tokens": 1.0, "output_cost_per_million_tokens": 2.0}
PROMPT = "Say hello."


def _proxy_config(base_url: str, n_ctx: int) -> dict[str, Any]:
    return {
        "config": {
            "base_url": base_url,
            "api_key_env": KEY_ENV,
            "content_format": "String",
            "models": [
                {
                    "id": MODEL_ALIAS,
                    "max_tokens": n_ctx,
                    "provider": "llama-cpp",
                    "pricing": PRICING,
                }
            ],
            "max_cache_size": 0,
            "timeout_ms": 60000,
            "retry_config": {"max_retries": 0},
        }
    }


@pytest.fixture
def start_router(
    runtime: Runtime, server: LlamaServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., ActorHandle]:
    """Start the shipped router: provider ``live`` is the server, ``dead`` a closed port."""
    monkeypatch.setenv(KEY_ENV, KEY)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"

    def start(**config: Any) -> ActorHandle:
        providers = {
            "live": {"init": _proxy_config(server.base_url, server.n_ctx)},
            "dead": {"init": _proxy_config(dead_url, server.n_ctx)},
        }
        init = {"config": {"providers": providers, **config}}
        return runtime.start_actor("openai-router", init)

    return start


def ask(model: str, text: str = PROMPT, max_tokens: int = 8) -> dict[str, Any]:
    request = {"model": model, "messages": [user(text)], "max_tokens": max_tokens}
    return {"GenerateCompletion": {"request": {**request, "temperature": 0}}}


def test_the_router_falls_back_from_a_dead_provider_to_the_live_server(start_router):
    router = start_router(routes={"smart": [f"dead:{MODEL_ALIAS}", f"live:{MODEL_ALIAS}"]})
    reply = router.request_json(ask("smart"), timeout=150)
    assert text_of(completion(reply))
    body = reply["Completion"]
    assert body["served_by"] == f"live:{MODEL_ALIAS}"
    assert [(t["target"], t["outcome"], t["kind"]) for t in body["tried"]] == [
        (f"dead:{MODEL_ALIAS}", "error", "connection"),
        (f"live:{MODEL_ALIAS}", "ok", None),
    ]


def test_the_router_learns_what_the_live_chat_template_adds(
    start_router, caplog: pytest.LogCaptureFixture
):
    """SmolLM2's template injects a system prompt the estimate cannot see: the first
    completion's reservation holds it (the allowance for a template not learned yet), and
    teaches the router the excess, which later estimates add."""
    router = start_router(budget={"usd": 1.0})
    estimate = estimate_tokens(CompletionRequest(model="m", messages=[Message.user(PROMPT)]))
    with caplog.at_level(logging.INFO, logger="theater_py_actors.router"):
        first = completion(router.request_json(ask(f"live:{MODEL_ALIAS}"), timeout=150))
        counted = first["usage"]["input_tokens"]
        assert estimate < counted <= estimate + UNLEARNED_INPUT_OVERHEAD  # the real phenomenon
        second = completion(router.request_json(ask(f"live:{MODEL_ALIAS}"), timeout=150))
    assert second["usage"]["input_tokens"] == counted
    messages = [record.getMessage() for record in caplog.records]
    learned = [m for m in messages if "chat template" in m]
    assert len(learned) == 1, messages
    assert re.search(rf"up to {counted - estimate} more input tokens", learned[0]), learned
    assert not [m for m in messages if "more than the" in m], messages  # never over


def test_a_stream_through_the_router_from_the_live_server(start_router):
    router = start_router(routes={"smart": [f"dead:{MODEL_ALIAS}", f"live:{MODEL_ALIAS}"]})
    with router.open_channel_json(
        ask("smart", "Count from one to five.", 12), timeout=150
    ) as channel:
        messages = list(channel)
    *deltas, last = messages
    assert deltas and all(set(message) == {"Delta"} for message in deltas), deltas
    assert "".join(message["Delta"]["text"] for message in deltas) == text_of(completion(last))
    assert last["Completion"]["served_by"] == f"live:{MODEL_ALIAS}"
    assert [t["outcome"] for t in last["Completion"]["tried"]] == ["error", "ok"]


def test_the_live_router_bench_measures_every_contender():
    from bench.live import overhead_live

    result = overhead_live(count=2, repeats=1, max_tokens=1)
    contenders = result["contenders"]
    assert set(contenders) == {"proxy", "forward", "router", "router_budget"}
    assert all("median_us" in entry and "error" not in entry for entry in contenders.values())
    assert set(result["added"]) == {"forward", "router", "router_budget"}
    assert all(added["break_even_ms"] is None for added in result["added"].values())
