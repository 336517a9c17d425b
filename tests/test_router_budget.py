"""The router's budget against loopback simulators: refusals without a call, no overspend
under concurrency, and spend kept across a whole-run restart."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.raw_upstream import RawServer
from tests.router_fixtures import PRICED, model, provider, start_router
from theater_py import ActorHandle, Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    Image,
    Message,
    ModelPricing,
    Role,
    Text,
    UrlSource,
)
from theater_py_actors.openai_proxy.catalog import load_catalog
from theater_py_actors.openai_proxy.simulator import OpenAISimulator
from theater_py_actors.router.estimate import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    UNLEARNED_INPUT_OVERHEAD,
    estimate_input,
    estimate_tokens,
    max_cost,
    text_tokens,
)
from theater_py_actors.router.limiter import RateLimiter
from theater_py_actors.router.providers import Provider

PRICING = ModelPricing(**PRICED)


def ask(
    max_tokens: int | None, model_name: str = "sim:model-a", text: str = "hello"
) -> GenerateCompletion:
    return GenerateCompletion(
        CompletionRequest(model=model_name, messages=[Message.user(text)], max_tokens=max_tokens)
    )


def reservation(max_tokens: int | None) -> float:
    """A request's reservation before its model's template overhead is learned."""
    estimate = estimate_tokens(ask(max_tokens).request)
    return max_cost(estimate + UNLEARNED_INPUT_OVERHEAD, max_tokens, PRICING)


def _stream(handle: ActorHandle, message: GenerateCompletion) -> list[Any]:
    with handle.open_channel(message, timeout=20) as channel:
        return list(channel)


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


def test_a_call_that_timed_out_keeps_its_reservation(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """The provider may bill a call the router stopped waiting for: the budget counts it
    at its most, so the next request no longer fits."""
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("model-a"))},
        budget={"usd": reservation(1000) * 1.5},
        max_total_timeout_ms=500,
    )
    sim.fail_next(fault="stall=30000")
    first = router.request(ask(1000), timeout=20)
    assert isinstance(first, ErrorResponse) and first.kind == "timeout"
    second = router.request(ask(1000), timeout=20)
    assert isinstance(second, ErrorResponse) and second.kind == "budget_exceeded"
    assert sim.requests_seen == 1


def test_a_completion_without_usage_keeps_its_whole_reservation(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """A provider that reports no usage (a stream without include_usage, a local server)
    still bills the call: its cost is unknown, so the reservation is kept."""
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("model-a"))},
        budget={"usd": reservation(1000) * 1.5},  # fits one request's reservation
    )
    sim.fail_next(fault="no_usage", times=5)
    finals = [_stream(router, ask(1000))[-1] for _ in range(5)]
    assert isinstance(finals[0], Completion)
    assert finals[0].completion.usage.cost_usd is None  # the cost is unknown, not 0
    assert all(isinstance(f, ErrorResponse) and f.kind == "budget_exceeded" for f in finals[1:]), (
        finals[1:]
    )
    assert sim.requests_seen == 1


def _completion(
    output_tokens: int, prompt_tokens: int = 10, wait_s: float = 0.0
) -> Callable[[socket.socket, RawServer], None]:
    """An upstream that answers every request (after ``wait_s``) with a completion whose
    usage counts ``prompt_tokens`` in and ``output_tokens`` out."""
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
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens},
        }
    ).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    def answer(connection: socket.socket, server: RawServer) -> None:
        if wait_s:
            server.stopping.wait(wait_s)
        connection.sendall(head + body)

    return answer


SMOLLM2_TEMPLATE_TOKENS = 21
"""What SmolLM2's chat template (a default system prompt) added to a short prompt's
estimate on a real llama-cpp-python server: 32 counted, 11 estimated (docs/router.md)."""
TEMPLATE_TOKENS = UNLEARNED_INPUT_OVERHEAD + 144
"""A template larger than what a budget reserves before a model's overhead is learned."""


def test_the_first_concurrent_calls_reserve_for_a_template_not_learned_yet(
    runtime: Runtime, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """Before any completion has taught the router a model's template, concurrent calls to
    it reserve :data:`UNLEARNED_INPUT_OVERHEAD` more input each: a budget that would fit
    10 by the estimate alone is not passed by a template's 21 tokens per call."""
    estimate = estimate_tokens(ask(1000, "raw:m").request)
    real_cost = PRICING.cost_usd(estimate + SMOLLM2_TEMPLATE_TOKENS, 1000)
    budget = max_cost(estimate, 1000, PRICING) * 10.001  # 10 by the estimate alone
    assert real_cost * 10 > budget
    answer = _completion(1000, prompt_tokens=estimate + SMOLLM2_TEMPLATE_TOKENS, wait_s=0.5)
    with RawServer(answer) as raw:
        router = start_router(
            runtime, {"raw": provider(raw.base_url, model("m"))}, budget={"usd": budget}
        )
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            replies = list(
                pool.map(lambda _: router.request(ask(1000, "raw:m"), timeout=20), range(12))
            )
        sent = len(raw.bodies)
    served = [r for r in replies if isinstance(r, Completion)]
    assert len(served) == sent
    assert 1 <= sent < 10
    assert real_cost * sent <= budget  # what the provider billed


def test_a_model_s_chat_template_overhead_is_learned_so_reservations_cover_it(
    runtime: Runtime,
    start_proxy_at: Callable[..., ActorHandle],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A provider that counts more input than the estimate and the allowance for an unlearned
    template (its template injects a long system prompt) is under-reserved once: from its
    first completion on, the router adds what it counted beyond the estimate, so 10
    concurrent requests never spend past the budget."""
    estimate = estimate_tokens(ask(1, "raw:m").request)
    counted = estimate + TEMPLATE_TOKENS
    real_cost = PRICING.cost_usd(counted, 1)
    assert max_cost(estimate, 1, PRICING) < real_cost / 2  # the estimate alone is far short
    budget = real_cost * 3.0001  # the first request and two more
    with RawServer(_completion(1, prompt_tokens=counted, wait_s=0.3)) as raw:
        router = start_router(
            runtime, {"raw": provider(raw.base_url, model("m"))}, budget={"usd": budget}
        )
        with caplog.at_level(logging.INFO, logger="theater_py_actors.router"):
            first = router.request(ask(1, "raw:m"), timeout=20)
        assert isinstance(first, Completion), first
        assert any("more than the" in r.getMessage() for r in caplog.records), caplog.text
        learned = [r.getMessage() for r in caplog.records if "chat template" in r.getMessage()]
        assert learned and f"up to {TEMPLATE_TOKENS} more" in learned[0], caplog.text
        caplog.clear()
        with concurrent.futures.ThreadPoolExecutor(10) as pool, caplog.at_level(logging.WARNING):
            replies = list(
                pool.map(lambda _: router.request(ask(1, "raw:m"), timeout=20), range(10))
            )
        sent = len(raw.bodies)
    served = [r for r in replies if isinstance(r, Completion)]
    assert len(served) == 2, replies  # each reservation now holds a whole request's cost
    assert {r.kind for r in replies if isinstance(r, ErrorResponse)} == {"budget_exceeded"}
    assert sent == 3
    assert real_cost * sent <= budget  # what the provider billed
    assert not any("more than the" in r.getMessage() for r in caplog.records), caplog.text


def test_the_learned_overhead_only_grows_and_only_from_all_text_requests() -> None:
    provider_ = Provider("p", None, [], RateLimiter(), load_catalog(), stream_idle_ms=1000)
    assert provider_.input_overhead("m") == 0
    provider_.observe_input("m", estimated=50, counted=40)  # the estimate erred high
    assert provider_.input_overhead("m") == 0
    provider_.observe_input("m", estimated=50, counted=75)
    provider_.observe_input("m", estimated=50, counted=60)  # a smaller excess is not kept
    assert (provider_.input_overhead("m"), provider_.input_overhead("other")) == (25, 0)
    image = Image(UrlSource("https://example.com/cat.png"))
    with_image = CompletionRequest(model="m", messages=[Message(Role.USER, [Text("a"), image])])
    assert estimate_input(with_image)[1] is False  # its count cannot teach the template
    assert estimate_input(ask(1).request) == (estimate_tokens(ask(1).request), True)


def test_a_request_without_max_tokens_is_sent_capped_at_its_reserved_output(
    runtime: Runtime,
    start_proxy_at: Callable[..., ActorHandle],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a budget, the output a reservation assumes is the cap the provider gets; an
    upstream that ignores it (and writes 30k tokens) is logged at WARNING."""
    budget = max_cost(estimate_tokens(ask(None, "raw:m").request), None, PRICING) * 1.5
    with RawServer(_completion(30_000)) as raw:
        router = start_router(
            runtime, {"raw": provider(raw.base_url, model("m"))}, budget={"usd": budget}
        )
        with caplog.at_level(logging.WARNING, logger="theater_py_actors.router"):
            reply = router.request(ask(None, "raw:m"), timeout=20)
        sent = raw.bodies[0]
    assert isinstance(reply, Completion)
    cap = sent.get("max_completion_tokens", sent.get("max_tokens"))
    assert cap == DEFAULT_MAX_OUTPUT_TOKENS, sorted(sent)
    assert any("more than the" in r.getMessage() for r in caplog.records), caplog.text


def test_a_non_latin_prompt_is_estimated_at_a_token_a_character_or_more() -> None:
    """CJK text runs near one token a character: 4 characters a token would err 4x low,
    for both the reservation and the context-window skip."""
    text = "请总结以下文件的内容。" * 400  # 4400 characters
    assert estimate_tokens(ask(None, text=text).request) >= len(text)
    english = "Please summarise the following document. " * 100
    assert estimate_tokens(ask(None, text=english).request) < len(english) // 3


def test_digits_and_symbols_are_estimated_at_a_token_each() -> None:
    """Tokenizers split numbers (Llama's and SmolLM2's digit by digit) and most
    punctuation: at four characters a token, numbers and code would be estimated 2-4x low."""
    assert text_tokens("0123456789" * 10) == 100
    assert text_tokens('{"a":1,"b":[2,3]}') == 15  # 15 symbols and digits; "a", "b": 0
    assert text_tokens("def f(x): return x") == 3 + 3  # 15 letters and spaces; ( ) :
    assert text_tokens("Hello there") == 11 // 4


def test_a_malformed_200_keeps_its_reservation(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """The provider answered 200, so it generated (and bills) the answer, though the proxy
    could not read it: only an error status or a request that never left costs nothing."""
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("model-a"), retry_config={"max_retries": 0})},
        budget={"usd": reservation(1000) * 1.5},
    )
    sim.fail_next(fault="malformed")
    first = router.request(ask(1000), timeout=20)
    assert isinstance(first, ErrorResponse) and first.kind == "invalid_response", first
    second = router.request(ask(1000), timeout=20)
    assert isinstance(second, ErrorResponse) and second.kind == "budget_exceeded", second
    assert sim.requests_seen == 1


def test_an_error_status_or_a_refused_connection_releases_the_reservation(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """A 500 was not billed, nor a request whose connection was never made: the budget for
    one request still serves one after each."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"  # bound, not listening
        router = start_router(
            runtime,
            {
                "dead": provider(dead_url, model("model-a"), retry_config={"max_retries": 0}),
                "sim": provider(sim.base_url, model("model-a"), retry_config={"max_retries": 0}),
            },
            {"r": ["dead:model-a", "sim:model-a"]},
            budget={"usd": reservation(1000) * 1.5},
        )
        sim.fail_next(status=500)
        failed = router.request(ask(1000), timeout=20)
        assert isinstance(failed, ErrorResponse) and failed.kind == "server_error", failed
        reply = router.request(ask(1000, "r"), timeout=20)
    assert isinstance(reply, Completion), reply
    assert [(t.target, t.outcome, t.kind) for t in reply.tried] == [
        ("dead:model-a", "error", "connection"),
        ("sim:model-a", "ok", None),
    ]


def test_a_stream_closed_before_its_first_delta_keeps_its_reservation(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """The request reached the provider before the caller left: it may be billed."""
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("model-a"))},
        budget={"usd": reservation(1000) * 1.5},
    )
    sim.fail_next(fault="latency=1500")
    channel = router.open_channel(ask(1000), timeout=20)
    deadline = time.monotonic() + 5
    while sim.requests_seen == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.requests_seen == 1  # the request reached the provider
    channel.close()
    # Until the provider is done with it, and a while after: nothing more is served.
    ends = time.monotonic() + 3.0
    while time.monotonic() < ends:
        again = router.request(ask(1000), timeout=20)
        assert isinstance(again, ErrorResponse) and again.kind == "budget_exceeded", again
        time.sleep(0.05)
    assert sim.requests_seen == 1


def test_one_reservation_covers_one_billed_attempt(
    runtime: Runtime, sim: OpenAISimulator, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """The router reserves one call's most; the child proxy never retries an attempt the
    provider answered 200 (generated, so billed) whose body then timed out."""
    router = start_router(
        runtime,
        {"sim": provider(sim.base_url, model("model-a"), timeout_ms=300)},
        budget={"usd": reservation(1000) * 1.5},
        max_total_timeout_ms=5000,
    )
    sim.fail_next(fault="stall_body=3000", times=4)
    reply = router.request(ask(1000), timeout=20)
    assert isinstance(reply, ErrorResponse) and reply.kind == "timeout", reply
    assert sim.requests_seen == 1
    second = router.request(ask(1000), timeout=20)  # the 200 keeps its reservation
    assert isinstance(second, ErrorResponse) and second.kind == "budget_exceeded", second
