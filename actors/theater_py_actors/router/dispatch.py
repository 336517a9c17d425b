"""What happens around each target's call: the checks before it, the accounting after.

Before a call, :meth:`Dispatcher.admit` skips a target whose provider is down, whose
context window cannot hold the request, whose reservation does not fit the budget, or
whose rate limit would not free up before the request's deadline (a wait that fits is
waited). After it, :meth:`Dispatcher.settle` replaces the reservation with the actual
cost and tells the limiter what the provider said. Plain requests and streams share both.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    ModelPricing,
    TriedTarget,
)
from theater_py_actors.openai_proxy.config import ConfigError
from theater_py_actors.router.config import Target, parse_target
from theater_py_actors.router.estimate import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    UNLEARNED_INPUT_OVERHEAD,
    completion_cost,
    max_cost,
    text_tokens,
)
from theater_py_actors.router.evolve import evolve

if TYPE_CHECKING:
    from theater_py_actors.router.ledger import BudgetLedger, Reservation
    from theater_py_actors.router.providers import Provider

__all__ = ["Dispatcher", "Plan", "Ticket", "never_sent"]

logger = logging.getLogger("theater_py_actors.router")

ALWAYS_FALL_BACK = frozenset({"provider_down", "provider_crashed"})
"""The router's own failures: another provider may well serve the request."""


@attrs.frozen
class Ticket:
    """A target admitted for a call: what it holds of the budget and the rate limit."""

    target: Target
    provider: Provider
    reservation: Reservation | None
    tokens: int
    pricing: ModelPricing | None
    input_tokens: int
    """The input the call's reservation holds: the estimate and the model's learned
    overhead, or, with a budget, :data:`UNLEARNED_INPUT_OVERHEAD` if that is more."""
    max_tokens: int | None
    """The output cap to send: the request's own, or (with a budget) the one reserved."""
    estimated: int | None = None
    """The request's own estimate, when it is all text (the provider's count of its input
    then teaches the model's overhead); ``None`` otherwise."""

    def request_for(self, request: CompletionRequest) -> CompletionRequest:
        """``request`` as this target's child proxy is to get it."""
        return evolve(request, model=self.target.model, max_tokens=self.max_tokens)


class Plan:
    """One request's way through its targets: the deadline, what was tried, the log.

    Args:
        targets: the request's targets, in order.
        deadline: when the whole request must be over, on ``clock``.
        input_tokens: the estimate of the request's input.
        retries: the retries the whole request may make, across all its targets (each
            target gets its first attempt, and what is left of these).
        all_text: the request has no block the estimate can only guess at (an image,
            audio): its targets' counts of its input teach their overhead.
    """

    __slots__ = (
        "_clock",
        "all_text",
        "deadline",
        "input_tokens",
        "retries_left",
        "targets",
        "tried",
    )

    def __init__(
        self,
        targets: Sequence[Target],
        deadline: float,
        input_tokens: int,
        clock: Callable[[], float],
        retries: int = 0,
        *,
        all_text: bool = False,
    ) -> None:
        self.targets = targets
        self.deadline = deadline
        self.input_tokens = input_tokens
        self.all_text = all_text
        self.retries_left = retries
        self.tried: list[TriedTarget] = []
        self._clock = clock

    def message_for(self, request: CompletionRequest) -> GenerateCompletion:
        """The message to a target's proxy: the time and the retries the request has left."""
        return GenerateCompletion(
            request=request,
            max_total_timeout_ms=max(self.left_ms(), 1),
            max_attempts=1 + self.retries_left,
        )

    def spent_attempts(self, attempts: int | None) -> None:
        """Count a target's HTTP attempts (``None``: unknown, counted as one) against the
        request's retries."""
        retried = max((attempts or 1) - 1, 0)
        self.retries_left = max(self.retries_left - retried, 0)

    def left_ms(self) -> int:
        """Milliseconds left before the deadline (0 when it has passed)."""
        return max(0, math.floor((self.deadline - self._clock()) * 1000))

    def record(self, target: Target, outcome: str, kind: str | None, started: float) -> None:
        """Add a ``tried`` entry for ``target``."""
        ms = round((self._clock() - started) * 1000)
        self.tried.append(TriedTarget(target=str(target), outcome=outcome, kind=kind, ms=ms))

    def warn_fallback(self, failed: Target, kind: str, index: int, prices: Dispatcher) -> None:
        """Log the move from ``failed`` to the next target, if there is one, at WARNING."""
        if index + 1 >= len(self.targets):
            return
        following = self.targets[index + 1]
        price = prices.blended_price(following)
        first = prices.blended_price(self.targets[0])
        dearer = ""
        if price is not None and first is not None and price > first:
            dearer = f" (PRICED HIGHER than the first target, {self.targets[0]})"
        logger.warning("falling back from %s (%s) to %s%s", failed, kind, following, dearer)


class Dispatcher:
    """The checks and the accounting of the router's calls (thread-safe)."""

    def __init__(
        self,
        providers: dict[str, Provider],
        routes: dict[str, list[Target]],
        fallback_on: frozenset[str],
        ledger: BudgetLedger | None,
        stopping: threading.Event,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = providers
        self.routes = routes
        self.fallback_on = fallback_on | ALWAYS_FALL_BACK
        self.ledger = ledger
        self.clock = clock
        self._stopping = stopping

    def targets_for(self, model: str) -> list[Target] | ErrorResponse:
        """The targets of a request for ``model``: a route, or one ``provider:model``."""
        route = self.routes.get(model)
        if route is not None:
            return route
        if not model and self.routes:
            return next(iter(self.routes.values()))
        if ":" in model:
            try:
                return [parse_target(model, self.providers, "model")]
            except ConfigError as exc:
                return _invalid(f"GenerateCompletion.request.{exc}")
        names = ", ".join(self.routes) or "none"
        return _invalid(
            f"GenerateCompletion.request.model: {model!r} is neither a route ({names}) nor "
            "'provider:model'"
        )

    def blended_price(self, target: Target) -> float | None:
        """Input plus output price per million tokens, to compare targets."""
        pricing = self.providers[target.provider].pricing(target.model)
        if pricing is None:
            return None
        return pricing.input_cost_per_million_tokens + pricing.output_cost_per_million_tokens

    def falls_back(self, kind: str | None) -> bool:
        """Whether an error of ``kind`` moves the request on to its next target."""
        return kind is not None and kind in self.fallback_on

    def admit(
        self, target: Target, request: CompletionRequest, plan: Plan
    ) -> Ticket | ErrorResponse | float:
        """Check ``target`` for ``request``: the ticket to call it, why not (a skip), or
        the seconds to wait for its rate limit, when that wait ends before the deadline
        (then admit it again after the wait)."""
        provider = self.providers[target.provider]
        if provider.down:
            return ErrorResponse(
                error=f"provider_down: provider {target.provider} {provider.why_down}",
                kind="provider_down",
            )
        max_tokens = request.max_tokens
        window = provider.context_window(target.model)
        learned = provider.input_overhead(target.model)
        input_tokens = plan.input_tokens + learned
        if max_tokens is None and self.ledger is not None:
            # The reservation is for this much output: it must be the most the call can
            # generate, so it is the cap the provider gets.
            max_tokens = DEFAULT_MAX_OUTPUT_TOKENS
            if window is not None and window - input_tokens > 0:
                max_tokens = min(max_tokens, window - input_tokens)
        need = input_tokens + (max_tokens or 0)
        if window is not None and need > window:
            return ErrorResponse(
                error=f"context_window_exceeded: {target} holds {window} tokens; the request "
                f"needs about {need} (its messages, estimated, plus max_tokens)",
                kind="context_window_exceeded",
            )
        waited = self._take(target, need, plan)
        if waited is not None:
            return waited
        pricing = provider.pricing(target.model)
        reservation = None
        reserved_input = input_tokens
        ledger = self.ledger
        if ledger is not None:
            refusal = None
            if pricing is None:
                refusal = (
                    f"{target} has no known price, so a budget cannot cover it (give the "
                    "provider's models with pricing)"
                )
            else:
                # What was learned may understate the template (an estimate that erred
                # high hides part of it), and nothing is learned before the first answer:
                # the reservation holds at least the allowance beyond the estimate.
                reserved_input = plan.input_tokens + max(learned, UNLEARNED_INPUT_OVERHEAD)
                amount = max_cost(reserved_input, max_tokens, pricing)
                reservation = ledger.reserve(amount)
                if reservation is None:
                    left = max(ledger.remaining(), 0.0)
                    refusal = (
                        f"{target} may cost up to {amount:.6f} USD; {left:.6f} of the "
                        f"{ledger.usd:g} USD budget per {ledger.per} is left"
                    )
            if refusal is not None:
                provider.limiter.give_back(need)
                return ErrorResponse(error=f"budget_exceeded: {refusal}", kind="budget_exceeded")
        estimated = plan.input_tokens if plan.all_text else None
        return Ticket(
            target, provider, reservation, need, pricing, reserved_input, max_tokens, estimated
        )

    def _take(self, target: Target, need: int, plan: Plan) -> ErrorResponse | float | None:
        """Take ``need`` tokens of ``target``'s rate limit: ``None`` when taken, else the
        seconds to wait (a wait that ends before the deadline), else the refusal."""
        provider = self.providers[target.provider]
        wait = provider.limiter.take(need)
        if wait == math.inf:
            return ErrorResponse(
                error=f"rate_limit: the request needs about {need} tokens, more than "
                f"{target.provider}'s tokens per minute",
                kind="rate_limit",
            )
        if wait > 0:
            if self.clock() + wait < plan.deadline and not self._stopping.is_set():
                return wait
            return ErrorResponse(
                error=f"rate_limit: {target.provider}'s rate limit frees up in "
                f"{math.ceil(wait * 1000)} ms, after the request's deadline",
                kind="rate_limit",
                retry_after_ms=max(1, math.ceil(wait * 1000)),
            )
        return None

    def admit_waiting(
        self,
        target: Target,
        request: CompletionRequest,
        plan: Plan,
        abandoned: threading.Event | None = None,
    ) -> Ticket | ErrorResponse:
        """:meth:`admit`, waiting for the rate limit here when that fits the deadline.

        ``abandoned`` (set when the caller leaves, and at the router's stop) ends the wait:
        the answer is then ``cancelled``, and nothing is taken.
        """
        event = self._stopping if abandoned is None else abandoned
        while True:
            admitted = self.admit(target, request, plan)
            if not isinstance(admitted, float):
                return admitted
            if event.wait(admitted):
                return ErrorResponse(
                    error="cancelled: the caller left while waiting for a rate limit",
                    kind="cancelled",
                )

    def settle(
        self,
        ticket: Ticket,
        reply: Completion | ErrorResponse | None,
        partial_text: str = "",
        *,
        unknown: bool = False,
    ) -> None:
        """Account for a call's outcome: the actual cost, and what the provider said.

        ``reply`` ``None``: no answer from the provider's proxy. ``unknown``: the call may
        have reached the provider all the same (the child timed out, crashed or was
        abandoned after taking it). An error releases the reservation only when the
        provider answered it with an error status (4xx, 5xx) or the request provably never
        left (:func:`never_sent`); any other (a ``timeout``, an unreadable ``200``, a
        connection lost after sending, a cancelled call, an unknown outcome) keeps the
        whole reservation: the provider may have billed it, and a budget must err towards
        never being passed.
        """
        limiter = ticket.provider.limiter
        info = None if reply is None else reply.rate_limit
        cost: float | None
        if isinstance(reply, Completion):
            usage = reply.completion.usage
            cost = completion_cost(reply.completion, ticket.pricing)
            used = usage.input_tokens + usage.output_tokens
            if ticket.estimated is not None and usage.input_tokens:
                ticket.provider.observe_input(
                    ticket.target.model, ticket.estimated, usage.input_tokens
                )
            limiter.give_back(ticket.tokens, used or ticket.tokens)  # 0: usage unknown
        else:
            refused = reply is not None and reply.status is not None and reply.status >= 400
            unsent = (reply is None and not unknown) or (reply is not None and never_sent(reply))
            cost = None  # see above: keep the whole hold
            if refused or unsent:
                cost = 0.0
                if partial_text and ticket.pricing is not None:
                    # Text flowed before the stream failed: it was generated, so billed.
                    output = text_tokens(partial_text) + 1
                    cost = max_cost(ticket.input_tokens, output, ticket.pricing)
            limiter.give_back(ticket.tokens, None if unsent else 0)
            if reply is not None and reply.kind == "rate_limit" and reply.retry_after_ms:
                limiter.close_for(reply.retry_after_ms / 1000)
        if info is not None:
            limiter.observe(info)
        if ticket.reservation is not None and self.ledger is not None:
            if cost is None:  # no price or no usage known for it: keep the whole hold
                cost = ticket.reservation.amount
            elif cost > ticket.reservation.amount * (1 + 1e-9):
                logger.warning(
                    "%s cost %.6f USD, more than the %.6f USD reserved for it (the token "
                    "estimate was low, or the provider ignored max_tokens)",
                    ticket.target,
                    cost,
                    ticket.reservation.amount,
                )
            self.ledger.settle(ticket.reservation, cost)


_NEVER_SENT_KINDS = frozenset({"invalid_request", "configuration", "overloaded"})
"""Errors a proxy answers without a provider's status only before it sends anything: its
own validation, a config it cannot send with, its own pool being full."""
_UNREACHED = ("NewConnectionError", "NameResolutionError", "the proxy is stopping")
"""In a ``connection`` error's text: the connection was never made, so nothing was sent."""


def never_sent(reply: ErrorResponse) -> bool:
    """Whether ``reply`` proves its request never reached the provider (so costs nothing)."""
    if reply.status is not None:
        return False
    if reply.kind in _NEVER_SENT_KINDS:
        return True
    return reply.kind == "connection" and any(sign in reply.error for sign in _UNREACHED)


def _invalid(message: str) -> ErrorResponse:
    return ErrorResponse(error=f"invalid request: {message}", kind="invalid_request")
