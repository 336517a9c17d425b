"""Review of d6d3e68 (the router learns a model's chat-template input overhead): one odd
usage report must not poison a model for the rest of the run."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.raw_upstream import RawServer
from tests.router_fixtures import PRICED, model, provider, start_router
from theater_py import ActorHandle, Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    CompletionResponse,
    EndTurn,
    ErrorResponse,
    GenerateCompletion,
    Message,
    ModelInfo,
    ModelPricing,
    Text,
    Usage,
)
from theater_py_actors.openai_proxy.catalog import load_catalog
from theater_py_actors.router.config import Target
from theater_py_actors.router.dispatch import Dispatcher, Plan, Ticket
from theater_py_actors.router.estimate import UNLEARNED_INPUT_OVERHEAD, estimate_input, max_cost
from theater_py_actors.router.evolve import evolve
from theater_py_actors.router.ledger import BudgetLedger
from theater_py_actors.router.limiter import RateLimiter
from theater_py_actors.router.providers import Provider

PRICING = ModelPricing(**PRICED)
ABSURD = 10**9


class _Alive:
    """A stand-in for a child proxy's handle: alive, never called here."""

    def is_alive(self) -> bool:
        return True


def _dispatcher(
    window: int | None, *, ledger: BudgetLedger | None = None, tpm: int | None = None
) -> tuple[Dispatcher, Target]:
    models = (
        []
        if window is None
        else [
            ModelInfo(id="m", display_name="m", max_tokens=window, provider="sim", pricing=PRICING)
        ]
    )
    name = "m" if window is not None else "not-in-any-catalog-xyz"
    prov = Provider(
        "p", _Alive(), models, RateLimiter(tpm=tpm), load_catalog(), stream_idle_ms=1000
    )  # type: ignore[arg-type]
    target = Target("p", name)
    dispatcher = Dispatcher({"p": prov}, {}, frozenset(), ledger, threading.Event())
    return dispatcher, target


def _request(text: str = "hello there") -> CompletionRequest:
    return CompletionRequest(model="x", messages=[Message.user(text)])


def _plan(dispatcher: Dispatcher, target: Target, request: CompletionRequest) -> Plan:
    tokens, all_text = estimate_input(request)
    return Plan([target], dispatcher.clock() + 60, tokens, dispatcher.clock, all_text=all_text)


def _reply(input_tokens: int, output_tokens: int = 1) -> Completion:
    return Completion(
        CompletionResponse(
            content=[Text("hi")],
            id="c1",
            model="m",
            stop_reason=EndTurn(),
            usage=Usage(input_tokens, output_tokens),
        )
    )


def _call(dispatcher: Dispatcher, target: Target, input_tokens: int) -> Ticket | ErrorResponse:
    """Admit one request, settle it with a usage of ``input_tokens``, then admit another."""
    request = _request()
    ticket = dispatcher.admit(target, request, _plan(dispatcher, target, request))
    assert isinstance(ticket, Ticket), ticket
    dispatcher.settle(ticket, _reply(input_tokens))
    again = dispatcher.admit(target, request, _plan(dispatcher, target, request))
    assert not isinstance(again, float), again
    return again


def test_one_absurd_usage_does_not_skip_every_later_request_as_context_window_exceeded() -> None:
    """A provider reporting 10**9 input tokens once (more than the model's window: it
    cannot be true) made every later request to the model skipped, for the rest of the run:
    no request is admitted, so no completion can ever correct it."""
    dispatcher, target = _dispatcher(100_000, ledger=BudgetLedger(1e6))
    again = _call(dispatcher, target, ABSURD)
    assert isinstance(again, Ticket), again


def test_one_absurd_usage_does_not_refuse_every_later_request_at_the_rate_limit() -> None:
    """A model the router knows no window for, behind a tokens-per-minute limit: after one
    absurd usage, every later request needs more than a minute's tokens (rate_limit,
    forever)."""
    dispatcher, target = _dispatcher(None, tpm=200_000)
    again = _call(dispatcher, target, ABSURD)
    assert isinstance(again, Ticket), again


def test_a_small_request_stays_admissible_whatever_the_provider_reports() -> None:
    """Even a usage that fits the window (a provider that counts the window full) must not
    make a small request unadmittable: the learned overhead stays under half the window."""
    window = 8192
    dispatcher, target = _dispatcher(window, ledger=BudgetLedger(1e6))
    again = _call(dispatcher, target, window)
    assert isinstance(again, Ticket), again
    assert again.input_tokens <= window // 2 + estimate_input(_request())[0]


def test_a_negative_or_zero_usage_teaches_nothing() -> None:
    dispatcher, target = _dispatcher(100_000, ledger=BudgetLedger(1e6))
    for counted in (-5, 0):
        again = _call(dispatcher, target, counted)
        assert isinstance(again, Ticket), again
        assert dispatcher.providers["p"].input_overhead("m") == 0


def _answers(prompt_tokens: list[int]) -> Callable[[socket.socket, RawServer], None]:
    """An upstream answering its n-th request with a usage of ``prompt_tokens[n]`` in."""
    served = iter(prompt_tokens)
    lock = threading.Lock()

    def answer(connection: socket.socket, _: RawServer) -> None:
        with lock:
            count = next(served)
        body = json.dumps(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": count, "completion_tokens": 1},
            }
        ).encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        connection.sendall(head + body)

    return answer


def test_a_router_serves_on_after_one_absurd_usage_report(
    runtime: Runtime, start_proxy_at: Callable[..., ActorHandle]
) -> None:
    """End to end: the first answer claims 10**9 input tokens; the next request is still
    served (it was skipped as context_window_exceeded before the fix)."""
    ask = GenerateCompletion(
        CompletionRequest(model="raw:m", messages=[Message.user("hello")], max_tokens=8)
    )
    with RawServer(_answers([ABSURD, 20, 20])) as raw:
        router = start_router(
            runtime, {"raw": provider(raw.base_url, model("m"))}, budget={"usd": 1e6}
        )
        first = router.request(ask, timeout=20)
        assert isinstance(first, Completion), first
        second: Any = router.request(ask, timeout=20)
    assert isinstance(second, Completion), second


def test_a_digit_heavy_request_does_not_teach_a_template_overhead() -> None:
    """A tokenizer that splits digits (SmolLM2, Llama) counts 4000 digits as ~4000 tokens.
    At four ASCII characters a token the estimate said ~1000, and the ~3000-token excess
    was kept as the model's template overhead for the rest of the run: a later prose
    request that fits the 8192-token window was skipped as context_window_exceeded. The
    estimate now counts a digit as a token, so only the template's excess is learned."""
    window = 8192
    dispatcher, target = _dispatcher(window)
    digits = _request("0123456789" * 400)
    plan = _plan(dispatcher, target, digits)
    ticket = dispatcher.admit(target, digits, plan)
    assert isinstance(ticket, Ticket), ticket
    dispatcher.settle(ticket, _reply(4000 + 21))  # every digit a token, plus the template
    prose = evolve(_request("The cat sat on the mat. " * 833), max_tokens=256)
    admitted = dispatcher.admit(target, prose, _plan(dispatcher, target, prose))
    assert isinstance(admitted, Ticket), admitted


def test_a_first_answer_estimated_high_does_not_end_the_allowance() -> None:
    """A first prompt of symbols is estimated high (85 for 51 counted): nothing is learned
    of the template, so later reservations still hold the allowance beyond the estimate
    (before, the model counted as learned at 0, and a template's 21 tokens a call went
    unreserved)."""
    dispatcher, target = _dispatcher(100_000, ledger=BudgetLedger(1e6))
    symbols = _request("=" * 60 + " 3.14159265358979")
    plan = _plan(dispatcher, target, symbols)
    assert plan.input_tokens > 51
    ticket = dispatcher.admit(target, symbols, plan)
    assert isinstance(ticket, Ticket), ticket
    dispatcher.settle(ticket, _reply(51))
    hello = _request()
    again = dispatcher.admit(target, hello, _plan(dispatcher, target, hello))
    assert isinstance(again, Ticket), again
    estimate = estimate_input(hello)[0]
    assert again.input_tokens == estimate + UNLEARNED_INPUT_OVERHEAD
    assert again.reservation is not None
    assert again.reservation.amount >= PRICING.cost_usd(estimate + 21, 1)


def test_a_learned_overhead_above_the_allowance_replaces_it() -> None:
    dispatcher, target = _dispatcher(100_000, ledger=BudgetLedger(1e6))
    again = _call(dispatcher, target, estimate_input(_request())[0] + 1000)
    assert isinstance(again, Ticket), again
    assert again.input_tokens == estimate_input(_request())[0] + 1000


def test_a_stream_that_failed_after_text_is_charged_the_input_it_reserved() -> None:
    """Text flowed, so the input was billed: charged as reserved, the allowance for the
    template included, not the bare estimate."""
    ledger = BudgetLedger(1e6)
    dispatcher, target = _dispatcher(100_000, ledger=ledger)
    request = evolve(_request(), max_tokens=100)
    ticket = dispatcher.admit(target, request, _plan(dispatcher, target, request))
    assert isinstance(ticket, Ticket), ticket
    failed = ErrorResponse(error="server_error: 500", kind="server_error", status=500)
    dispatcher.settle(ticket, failed, partial_text="Hello")
    charged = ledger.spent
    estimate = estimate_input(request)[0]
    assert charged == pytest.approx(max_cost(estimate + UNLEARNED_INPUT_OVERHEAD, 2, PRICING))
