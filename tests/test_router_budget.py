"""The router's budget against loopback simulators: refusals without a call, no overspend
under concurrency, and spend kept across a whole-run restart."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.router_fixtures import PRICED, model, provider, start_router
from theater_py import ActorHandle, Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    Message,
    ModelPricing,
)
from theater_py_actors.openai_proxy.simulator import OpenAISimulator
from theater_py_actors.router.estimate import estimate_tokens, max_cost

PRICING = ModelPricing(**PRICED)


def ask(max_tokens: int, model_name: str = "sim:model-a") -> GenerateCompletion:
    return GenerateCompletion(
        CompletionRequest(model=model_name, messages=[Message.user("hello")], max_tokens=max_tokens)
    )


def reservation(max_tokens: int) -> float:
    return max_cost(estimate_tokens(ask(max_tokens).request), max_tokens, PRICING)


def test_64_concurrent_requests_against_a_budget_that_fits_10(
    runtime: Runtime,
    sim: OpenAISimulator,
    start_proxy_at: Callable[..., ActorHandle],  # sets the key's variable
) -> None:
    budget = reservation(1000) * 10.5
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("model-a"))},
        budget={"usd": budget},
    )
    sim.fail_next(fault="latency=1500", times=64)  # all 64 arrive before any settles
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(lambda _: router.request(ask(1000), timeout=30), range(64)))
    served = [r for r in replies if isinstance(r, Completion)]
    refused = [r for r in replies if isinstance(r, ErrorResponse)]
    assert len(served) + len(refused) == 64
    assert len(served) >= 10
    assert refused, "a budget that fits 10 cannot serve 64 at once"
    assert {r.kind for r in refused} == {"budget_exceeded"}
    assert all(r.tried and r.tried[0].outcome == "skipped" for r in refused)
    assert sim.requests_seen == len(served)  # no call for a refused request
    assert sim.max_in_flight <= 10  # never more reserved at once than the budget holds
    assert sum(r.completion.usage.cost_usd or 0 for r in served) <= budget


def test_a_target_over_budget_falls_back_to_one_that_fits(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    dear = {"input_cost_per_million_tokens": 1000.0, "output_cost_per_million_tokens": 1000.0}
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("dear", pricing=dear), model("model-a"))},
        {"r": ["sim:dear", "sim:model-a"]},
        budget={"usd": reservation(1000) * 2},
    )
    reply = router.request(ask(1000, "r"), timeout=20)
    assert isinstance(reply, Completion)
    assert [(t.target, t.outcome, t.kind) for t in reply.tried] == [
        ("sim:dear", "skipped", "budget_exceeded"),
        ("sim:model-a", "ok", None),
    ]


def test_spend_survives_a_whole_run_restart_with_the_same_store_id(
    tmp_path: Path, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    budget = reservation(1000)  # exactly one big request's reservation
    providers: dict[str, Any] = {"sim": provider(sim.base_url, model("model-a"))}
    with Runtime(home=tmp_path / "home") as first_run:
        router = start_router(first_run, providers, store_id="spend", budget={"usd": budget})
        small = router.request(ask(10), timeout=20)
        assert isinstance(small, Completion)
        assert (small.completion.usage.cost_usd or 0) > 0
    with Runtime(home=tmp_path / "home") as second_run:
        router = start_router(second_run, providers, store_id="spend", budget={"usd": budget})
        refused = router.request(ask(1000), timeout=20)
        assert isinstance(refused, ErrorResponse) and refused.kind == "budget_exceeded"
        fresh = start_router(
            second_run, providers, name="fresh", store_id="other", budget={"usd": budget}
        )
        assert isinstance(fresh.request(ask(1000), timeout=20), Completion)
    assert sim.requests_seen == 2
