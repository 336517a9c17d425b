"""The router actor on loopback simulators: routes, fallbacks, skips and its replies."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile_upstream import TrickleServer
from tests.proxy_fixtures import KEY
from tests.raw_upstream import RawServer
from tests.router_fixtures import model, provider, start_router
from theater_py import ActorFailed, ActorHandle, ActorStartError, ActorStopped, Runtime, serde
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    Message,
    ModelList,
    ProxyRequest,
    RateLimitInfo,
    Retrying,
    TriedTarget,
)
from theater_py_actors.openai_proxy.simulator import OpenAISimulator


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


def test_one_deadline_spans_every_target(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    """A stalled first target uses up the whole deadline: the next is not given a new one.

    The proxies' own deadline is 20 s and the caller waits 10 s: only the router's 800 ms,
    passed down to the child, can end the request in time.
    """
    alpha, beta = sims
    handle = router(max_total_timeout_ms=800)
    alpha.fail_next(fault="stall=30000")
    reply = handle.request(ask(), timeout=10)
    assert isinstance(reply, ErrorResponse)
    assert reply.kind == "timeout"
    assert [(t.target, t.outcome, t.kind) for t in reply.tried or []] == [
        ("alpha:model-a", "error", "timeout"),
        ("beta:model-b", "skipped", "timeout"),
    ]
    assert beta.requests_seen == 0


def test_the_callers_own_max_total_timeout_ms_is_honoured(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    """A caller that swaps a proxy for the router keeps its own deadline: the shorter of
    the router's (120 s by default) and the message's."""
    alpha, beta = sims
    handle = router()
    alpha.fail_next(fault="stall=30000")
    message = GenerateCompletion(ask().request, max_total_timeout_ms=300)
    reply = handle.request(message, timeout=5)
    assert isinstance(reply, ErrorResponse) and reply.kind == "timeout", reply
    assert [(t.target, t.kind) for t in reply.tried or []] == [
        ("alpha:model-a", "timeout"),
        ("beta:model-b", "timeout"),
    ]
    assert beta.requests_seen == 0


def test_a_429_with_retry_after_falls_back_and_closes_the_provider_for_that_long(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    """A wait past the deadline (30 s of 5 s) is not waited: the next target serves."""
    alpha, _ = sims
    handle = router(max_total_timeout_ms=5000)
    alpha.fail_next(status=429, retry_after="30")
    first = handle.request(ask(), timeout=20)
    assert isinstance(first, Completion) and first.served_by == "beta:model-b"
    assert first.tried[0].kind == "rate_limit"
    second = handle.request(ask(), timeout=20)
    assert isinstance(second, Completion) and second.served_by == "beta:model-b"
    assert [(t.outcome, t.kind) for t in second.tried] == [("skipped", "rate_limit"), ("ok", None)]
    assert alpha.requests_seen == 1  # it is known to refuse: not sent
    only_alpha = handle.request(ask(model_name="alpha:model-a"), timeout=20)
    assert isinstance(only_alpha, ErrorResponse) and only_alpha.kind == "rate_limit"
    assert only_alpha.retry_after_ms is not None and 20_000 < only_alpha.retry_after_ms <= 30_000
    assert alpha.requests_seen == 1


def test_a_rate_limit_that_frees_up_within_the_deadline_is_waited_for(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, beta = sims
    handle = router(max_total_timeout_ms=10_000)
    alpha.fail_next(status=429, retry_after_ms="300", times=5)
    first = handle.request(ask(model_name="alpha:model-a"), timeout=20)
    assert isinstance(first, ErrorResponse) and first.kind == "rate_limit"
    second = handle.request(ask(), timeout=20)
    assert isinstance(second, Completion) and second.served_by == "alpha:model-a"
    assert beta.requests_seen == 0


def test_a_429_without_retry_after_is_retried_by_the_proxy_then_falls_back(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, _ = sims
    handle = router()
    alpha.fail_next(status=429, times=10)
    reply = handle.request(ask(), timeout=20)
    assert isinstance(reply, Completion) and reply.served_by == "beta:model-b"
    assert alpha.requests_seen == 4  # the proxy's own retries: 1 + max_retries 3


def test_a_stream_falls_back_before_its_first_delta(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, _ = sims
    handle = router()
    alpha.fail_next(status=500, times=10)
    with handle.open_channel(ask("one two three"), timeout=20) as channel:
        items = list(channel)
    last = items[-1]
    assert isinstance(last, Completion) and last.served_by == "beta:model-b"
    assert [(t.outcome, t.kind) for t in last.tried] == [("error", "server_error"), ("ok", None)]
    # alpha's proxy retried before it gave up: its notices reach the caller, and are no
    # delta that would forbid the fallback.
    assert any(isinstance(item, Retrying) for item in items)
    text = "".join(getattr(item, "text", "") for item in items[:-1])
    assert text == "You said: one two three"


def test_a_stream_whose_caller_left_during_a_rate_limit_wait_calls_no_other_target(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    """Closing the channel ends the job's wait for beta's limit: beta is never called."""
    alpha, beta = sims
    no_retries = {"max_retries": 0}
    handle = router(
        providers={
            "alpha": provider(alpha.base_url, model("model-a"), retry_config=no_retries),
            "beta": provider(beta.base_url, model("model-b"), retry_config=no_retries),
        },
        max_total_timeout_ms=10_000,
    )
    beta.fail_next(status=429, retry_after="2")
    primed = handle.request(ask(model_name="beta:model-b"), timeout=20)  # beta closed for 2 s
    assert isinstance(primed, ErrorResponse) and primed.kind == "rate_limit"
    alpha.fail_next(status=500)
    channel = handle.open_channel(ask(), timeout=20)
    assert alpha.wait_for_requests(1, timeout=5)  # alpha failed; the job waits for beta
    time.sleep(0.2)
    channel.close()
    time.sleep(2.5)  # past beta's 2 s
    assert beta.requests_seen == 1  # the priming request only


def test_no_target_restarts_the_requests_retry_budget(
    runtime: Runtime, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """Issue 13: "no target restarts the clock or the retry budget". The first target's
    retries (max_retries 3) are the whole request's: each further target gets its first
    attempt and what is left, here nothing more (6 attempts, not 3 x 4)."""
    with (
        OpenAISimulator(api_key=KEY) as a,
        OpenAISimulator(api_key=KEY) as b,
        OpenAISimulator(api_key=KEY) as c,
    ):
        handle = start_router(
            runtime,
            {
                "a": provider(a.base_url, model("m")),
                "b": provider(b.base_url, model("m")),
                "c": provider(c.base_url, model("m")),
            },
            {"r": ["a:m", "b:m", "c:m"]},
        )
        for sim in (a, b, c):
            sim.fail_next(status=500, times=10)
        reply = handle.request(ask(model_name="r"), timeout=20)
        seen = (a.requests_seen, b.requests_seen, c.requests_seen)
    assert isinstance(reply, ErrorResponse) and reply.kind == "server_error"
    assert seen == (4, 1, 1)


def test_rate_limit_waits_queued_on_the_pool_end_at_the_moment_they_were_given(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    """Three waits of 1.5 s (each fits the 2.5 s deadline) on a pool of one thread: each
    ends 1.5 s after its admission, not 1.5 s after the thread took it (4.5 s, too late)."""
    alpha, _ = sims
    handle = router(
        providers={
            "alpha": provider(alpha.base_url, model("model-a"), retry_config={"max_retries": 0})
        },
        routes={},
        max_total_timeout_ms=2500,
        max_concurrent_requests=1,
    )
    alpha.fail_next(status=429, retry_after="1.5")
    first = handle.request(ask(model_name="alpha:model-a"), timeout=20)  # closed for 1.5 s
    assert isinstance(first, ErrorResponse) and first.kind == "rate_limit"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(
                lambda _: handle.request(ask(model_name="alpha:model-a"), timeout=20), range(3)
            )
        )
    assert all(isinstance(r, Completion) for r in replies), replies


def test_a_request_in_flight_when_the_router_crashes_is_cancelled(
    router: Callable[..., ActorHandle],
    sims: tuple[OpenAISimulator, OpenAISimulator],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The router's children stop with it: its in-flight request is `cancelled`, not a
    `provider_down` of a provider "given up" for crashing too often (none did)."""
    alpha, beta = sims
    handle = router()
    alpha.fail_next(fault="latency=1500")
    with (
        caplog.at_level(logging.WARNING, logger="theater_py_actors.router"),
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(handle.request, ask(), 20)
        assert alpha.wait_for_requests(1, timeout=5)
        handle.crash("test: a crash while a request is in flight")
        reply = pending.result(timeout=20)
    assert isinstance(reply, ErrorResponse) and reply.kind == "cancelled", reply
    assert not [r for r in caplog.records if "given up" in r.getMessage()]
    assert beta.requests_seen == 0


def test_a_routed_error_says_nobody_served_it(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, beta = sims
    handle = router()
    alpha.fail_next(status=500, times=10)
    beta.fail_next(status=500, times=10)
    wire = handle.request_json(serde.unstructure(ask(), ProxyRequest), timeout=20)
    error = wire["Error"]
    assert error["kind"] == "server_error"
    assert "served_by" in error and error["served_by"] is None
    assert [t["target"] for t in error["tried"]] == ["alpha:model-a", "beta:model-b"]
    assert list(error)[-2:] == ["served_by", "tried"]


def test_a_stream_that_fails_after_its_first_delta_ends_without_fallback(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, beta = sims
    handle = router()
    alpha.fail_next(fault="stream_error")
    with handle.open_channel(ask("one two three"), timeout=20) as channel:
        items = list(channel)
    last = items[-1]
    assert isinstance(last, ErrorResponse)
    assert last.partial_text
    assert [(t.target, t.outcome) for t in last.tried or []] == [("alpha:model-a", "error")]
    assert beta.requests_seen == 0


def test_the_proxy_surfaces_the_providers_rate_limit_headers(
    start_proxy_at: Callable[..., ActorHandle],
) -> None:
    headers = (
        "x-ratelimit-limit-requests: 500\r\nx-ratelimit-remaining-requests: 499\r\n"
        "x-ratelimit-limit-tokens: 200000\r\nx-ratelimit-remaining-tokens: 150000\r\n"
        "x-ratelimit-reset-requests: 120ms\r\nx-ratelimit-reset-tokens: 1m30s\r\n"
    )
    with RawServer(_reply_with_headers(headers)) as server:
        proxy = start_proxy_at(server.base_url)
        reply = proxy.request(ask(model_name="m"), timeout=20)
    assert isinstance(reply, Completion)
    assert reply.rate_limit == RateLimitInfo(
        limit_requests=500,
        limit_tokens=200_000,
        remaining_requests=499,
        remaining_tokens=150_000,
        reset_requests_ms=120,
        reset_tokens_ms=90_000,
    )


def test_an_error_reply_carries_the_rate_limit_headers_too(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
) -> None:
    proxy = start_proxy()
    sim.fail_next(
        status=429,
        retry_after="30",
        headers={"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20s"},
    )
    reply = proxy.request(ask(model_name="gpt-4o"), timeout=20)
    assert isinstance(reply, ErrorResponse) and reply.kind == "rate_limit"
    assert reply.rate_limit == RateLimitInfo(remaining_tokens=0, reset_tokens_ms=20_000)


def test_the_proxy_takes_a_deadline_per_request(
    start_proxy: Callable[..., ActorHandle], sim: OpenAISimulator
) -> None:
    proxy = start_proxy()
    sim.fail_next(fault="stall=30000")
    message = GenerateCompletion(ask(model_name="gpt-4o").request, max_total_timeout_ms=300)
    reply = proxy.request(message, timeout=10)
    assert isinstance(reply, ErrorResponse)
    assert reply.kind == "timeout"
    assert "(300)" in reply.error


def test_a_provider_that_keeps_crashing_is_given_up_and_the_others_serve(
    runtime: Runtime, router: Callable[..., ActorHandle], caplog: pytest.LogCaptureFixture
) -> None:
    handle = router()
    child = runtime.handle("router-alpha")
    with caplog.at_level(logging.ERROR, logger="theater_py_actors.router"):
        for _ in range(10):  # past the runtime's 3 restarts in 5 s
            if not child.is_alive():
                break
            with contextlib.suppress(ActorStopped, ActorFailed):
                child.crash("test: crash loop")
                child.request(ListModels(), timeout=10)  # waits for the restart
        assert not child.is_alive()
        reply = handle.request(ask(), timeout=20)
    assert isinstance(reply, Completion) and reply.served_by == "beta:model-b"
    assert [(t.outcome, t.kind) for t in reply.tried] == [
        ("skipped", "provider_down"),
        ("ok", None),
    ]
    assert any("provider alpha was given up" in r.getMessage() for r in caplog.records)


_UNSET_KEY_ENV = "THEATER_TEST_KEY_NOBODY_SETS"


def test_a_provider_without_its_key_is_reported_and_the_others_serve(
    runtime: Runtime,
    router: Callable[..., ActorHandle],
    sims: tuple[OpenAISimulator, OpenAISimulator],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_UNSET_KEY_ENV, raising=False)
    alpha, beta = sims
    providers = {
        "alpha": provider(alpha.base_url, model("model-a"), api_key_env=_UNSET_KEY_ENV),
        "beta": provider(beta.base_url, model("model-b")),
    }
    with caplog.at_level(logging.ERROR):
        handle = router(providers=providers)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("provider alpha could not start" in m and _UNSET_KEY_ENV in m for m in logged)
    reply = handle.request(ask(), timeout=20)
    assert isinstance(reply, Completion) and reply.served_by == "beta:model-b"
    assert [(t.outcome, t.kind) for t in reply.tried] == [
        ("skipped", "provider_down"),
        ("ok", None),
    ]
    alone = handle.request(ask(model_name="alpha:model-a"), timeout=20)
    assert isinstance(alone, ErrorResponse) and alone.kind == "provider_down"
    assert "could not start" in alone.error and _UNSET_KEY_ENV in alone.error
    listed = handle.request(ListModels(), timeout=20)
    assert isinstance(listed, ModelList)
    assert "beta:model-b" in {m.id for m in listed.models}
    assert alpha.requests_seen == 0  # nothing was sent its way


@pytest.mark.parametrize("mistake", ["no such manifest", "no such component"])
def test_a_providers_manifest_mistake_fails_the_start_naming_it(
    router: Callable[..., ActorHandle],
    sims: tuple[OpenAISimulator, OpenAISimulator],
    tmp_path: Path,
    mistake: str,
) -> None:
    alpha, beta = sims
    manifest = tmp_path / "proxy.toml"
    if mistake == "no such component":
        manifest.write_text(
            'name = "typo"\nversion = "0.1.0"\n'
            'component = "theater_py_actors.openai_proxy:OpenAIProxyActr"\n'
            '[[handler]]\ntype = "message-server"\n'
        )
    typo = {**provider(beta.base_url, model("model-b")), "manifest": str(manifest)}
    providers = {"alpha": provider(alpha.base_url, model("model-a")), "beta": typo}
    with pytest.raises(ActorStartError, match=re.escape("config.providers.beta.manifest")):
        router(providers=providers)


def test_a_router_none_of_whose_providers_can_start_fails_naming_each(
    router: Callable[..., ActorHandle],
    sims: tuple[OpenAISimulator, OpenAISimulator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_UNSET_KEY_ENV, raising=False)
    alpha, beta = sims
    providers = {
        "alpha": provider(alpha.base_url, model("model-a"), api_key_env=_UNSET_KEY_ENV),
        "beta": provider(beta.base_url, model("model-b"), api_key_env=_UNSET_KEY_ENV),
    }
    with pytest.raises(ActorStartError, match="no provider could start") as raised:
        router(providers=providers)
    assert "alpha:" in str(raised.value) and "beta:" in str(raised.value)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"routes": {"smart": ["alpha:model-a", "gamma:x"]}}, "config.routes.smart[1]"),
        ({"fallback_on": ["server_error", "invalid_request"]}, "config.fallback_on[1]"),
        ({"fallback_on": ["server_error", "content_policy"]}, "config.fallback_on[1]"),
        ({"budget": {"usd": 1.0, "per": "week"}}, "config.budget.per"),
        ({"rate_limits": {"alpha": {"rpm": 0}}}, "config.rate_limits.alpha.rpm"),
    ],
)
def test_a_bad_config_fails_the_start_naming_the_field(
    router: Callable[..., ActorHandle], config: dict[str, Any], named: str
) -> None:
    with pytest.raises(ActorStartError, match=re.escape(named)):
        router(**config)


def test_closing_a_routed_stream_hangs_up_on_the_provider(
    router: Callable[..., ActorHandle], sims: tuple[OpenAISimulator, OpenAISimulator]
) -> None:
    alpha, beta = sims
    handle = router()
    alpha.fail_next(fault="token_ms=1000")
    channel = handle.open_channel(ask("one two three four five six seven"), timeout=20)
    first = next(iter(channel))
    assert getattr(first, "text", None)
    channel.close()
    # The simulator notices at its second write after the hang-up (2 s); the stream would
    # have taken 8 s.
    assert alpha.wait_for_idle(timeout=5)  # the proxy hung up long before the stream's end
    assert beta.requests_seen == 0


def _reply_with_headers(extra: str) -> Callable[[socket.socket, RawServer], None]:
    body = json.dumps(
        {
            "id": "c1",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def answer(connection: socket.socket, _: RawServer) -> None:
        connection.sendall(head + body)

    return answer


def test_a_provider_that_says_it_has_no_requests_left_is_not_sent_more(
    runtime: Runtime,
    sims: tuple[OpenAISimulator, OpenAISimulator],
    start_proxy_at: Callable[..., ActorHandle],
) -> None:
    """Its own x-ratelimit-* headers, passed on by its proxy, close it until their reset."""
    _, beta = sims
    empty = "x-ratelimit-limit-requests: 100\r\nx-ratelimit-remaining-requests: 0\r\n"
    empty += "x-ratelimit-reset-requests: 1m\r\n"
    with RawServer(_reply_with_headers(empty)) as raw:
        handle = start_router(
            runtime,
            {
                "raw": provider(raw.base_url, model("m")),
                "beta": provider(beta.base_url, model("b")),
            },
            {"r": ["raw:m", "beta:b"]},
            max_total_timeout_ms=5000,
        )
        first = handle.request(ask(model_name="r"), timeout=20)
        second = handle.request(ask(model_name="r"), timeout=20)
        assert len(raw.bodies) == 1
    assert isinstance(first, Completion) and first.served_by == "raw:m"
    assert first.rate_limit is not None and first.rate_limit.remaining_requests == 0
    assert isinstance(second, Completion) and second.served_by == "beta:b"
    assert [(t.outcome, t.kind) for t in second.tried] == [("skipped", "rate_limit"), ("ok", None)]


def test_a_trickling_provider_is_cut_at_the_routers_deadline(
    runtime: Runtime,
    sims: tuple[OpenAISimulator, OpenAISimulator],
    start_proxy_at: Callable[..., ActorHandle],
) -> None:
    _, beta = sims
    with TrickleServer(interval=0.25) as trickle:
        handle = start_router(
            runtime,
            {"slow": provider(trickle.base_url, model("m")), "beta": provider(beta.base_url)},
            {"r": ["slow:m", "beta:model-b"]},
            max_total_timeout_ms=1500,
        )
        reply = handle.request(ask(model_name="r"), timeout=10)
        assert trickle.hung_up.wait(10)  # the proxy shut the socket at the deadline
    assert isinstance(reply, ErrorResponse) and reply.kind == "timeout"
    assert [(t.outcome, t.kind) for t in reply.tried or []] == [
        ("error", "timeout"),
        ("skipped", "timeout"),
    ]
    assert beta.requests_seen == 0
