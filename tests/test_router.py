"""The router actor on loopback simulators: routes, fallbacks, skips and its replies."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.router_fixtures import model, provider, start_router
from theater_py import ActorHandle, Runtime, serde
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    Message,
    ModelList,
    TriedTarget,
)
from theater_py_actors.openai_proxy.simulator import OpenAISimulator


@pytest.fixture
def sims(sim_options: dict[str, Any]) -> Iterator[tuple[OpenAISimulator, OpenAISimulator]]:
    with OpenAISimulator(**sim_options) as alpha, OpenAISimulator(**sim_options) as beta:
        yield alpha, beta


@pytest.fixture
def router(
    runtime: Runtime,
    sims: tuple[OpenAISimulator, OpenAISimulator],
    start_proxy_at: Callable[..., ActorHandle],  # sets the key's variable
) -> Callable[..., ActorHandle]:
    alpha, beta = sims

    def start(**config: Any) -> ActorHandle:
        providers = config.pop(
            "providers",
            {
                "alpha": provider(alpha.base_url, model("model-a"), model("tiny", window=60)),
                "beta": provider(
                    beta.base_url,
                    model(
                        "model-b",
                        pricing={
                            "input_cost_per_million_tokens": 5.0,
                            "output_cost_per_million_tokens": 20.0,
                        },
                    ),
                ),
            },
        )
        routes = config.pop("routes", {"smart": ["alpha:model-a", "beta:model-b"]})
        return start_router(runtime, providers, routes, **config)

    return start


def ask(text: str = "hello", model_name: str = "smart", **fields: Any) -> GenerateCompletion:
    return GenerateCompletion(
        CompletionRequest(model=model_name, messages=[Message.user(text)], **fields)
    )


def test_a_route_is_served_by_its_first_target(router: Callable[..., ActorHandle]) -> None:
    reply = router().request(ask("hi there"), timeout=20)
    assert isinstance(reply, Completion)
    assert reply.served_by == "alpha:model-a"
    assert reply.tried == [
        TriedTarget(target="alpha:model-a", outcome="ok", kind=None, ms=reply.tried[0].ms)
    ]
    assert reply.completion.model == "model-a"
    wire = serde.unstructure(reply, Completion)
    assert wire["Completion"]["served_by"] == "alpha:model-a"
    assert wire["Completion"]["tried"][0]["kind"] is None


def test_a_500_falls_back_to_the_next_target_with_a_warning(
    router: Callable[..., ActorHandle],
    sims: tuple[OpenAISimulator, OpenAISimulator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    alpha, _ = sims
    handle = router()
    alpha.fail_next(status=500, times=10)
    with caplog.at_level(logging.WARNING, logger="theater_py_actors.router"):
        reply = handle.request(ask(), timeout=20)
    assert isinstance(reply, Completion)
    assert reply.served_by == "beta:model-b"
    assert [(t.target, t.outcome, t.kind) for t in reply.tried] == [
        ("alpha:model-a", "error", "server_error"),
        ("beta:model-b", "ok", None),
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "theater_py_actors.router"]
    assert any(
        "falling back from alpha:model-a (server_error) to beta:model-b" in w
        and "PRICED HIGHER" in w
        for w in warnings
    )


def test_invalid_request_never_falls_back(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, beta = sims
    handle = router()
    alpha.fail_next(status=400, times=1)
    reply = handle.request(ask(), timeout=20)
    assert isinstance(reply, ErrorResponse)
    assert reply.served_by is None
    assert [(t.target, t.outcome) for t in reply.tried or []] == [("alpha:model-a", "error")]
    assert beta.requests_seen == 0


def test_a_context_too_small_is_skipped_before_any_call(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, _ = sims
    handle = router(routes={"r": ["alpha:tiny", "alpha:model-a"]})
    reply = handle.request(ask("word " * 400, model_name="r"), timeout=20)
    assert isinstance(reply, Completion)
    assert [(t.target, t.outcome, t.kind) for t in reply.tried] == [
        ("alpha:tiny", "skipped", "context_window_exceeded"),
        ("alpha:model-a", "ok", None),
    ]
    assert alpha.requests_seen == 1
    assert alpha.last_body["model"] == "model-a"


def test_a_provider_model_target_and_unknown_models(router: Callable[..., ActorHandle]) -> None:
    handle = router()
    reply = handle.request(ask(model_name="beta:model-b"), timeout=20)
    assert isinstance(reply, Completion) and reply.served_by == "beta:model-b"
    for name in ("nope", "gamma:model-x"):
        error = handle.request(ask(model_name=name), timeout=20)
        assert isinstance(error, ErrorResponse) and error.kind == "invalid_request"
        assert "model" in error.error


def test_list_models_lists_routes_and_prefixed_provider_models(
    router: Callable[..., ActorHandle],
) -> None:
    listed = router().request(ListModels(), timeout=20)
    assert isinstance(listed, ModelList)
    ids = [m.id for m in listed.models]
    assert ids == ["smart", "alpha:model-a", "alpha:tiny", "beta:model-b"]
    assert listed.models[0].provider == "router"
