"""One plain request's way through its targets, driven by the child proxies' replies.

No thread waits on a child: each call is a ``request_future`` whose done callback (on the
child's thread) settles the call and either answers the caller or moves on to the next
target. Only a wait for a rate limit (which fits the deadline) runs on the router's pool.
The caller leaving (the runtime cancels the reply future) cancels the running child call.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from theater_py import ActorFailed, ActorNotFound, ActorStopped, RequestTimeout
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    ProxyResponse,
)
from theater_py_actors.router.evolve import evolve

if TYPE_CHECKING:
    from theater_py_actors.router.dispatch import Dispatcher, Plan, Ticket

__all__ = ["Routing", "call_failed", "timed_out"]

logger = logging.getLogger("theater_py_actors.router")

_NO_REPLY = (ActorStopped, ActorFailed, RequestTimeout, ActorNotFound)


class Routing:
    """Routes one request; :meth:`start` it, and read :attr:`reply`.

    Args:
        dispatcher: the router's checks and accounting.
        request: the caller's request.
        plan: its targets and deadline.
        wait_on_pool: runs a function on the router's pool (for rate-limit waits); returns
            ``False`` if the pool is gone.
        stopping: set when the router stops (ends a rate-limit wait).
    """

    __slots__ = (
        "_child",
        "_dispatcher",
        "_index",
        "_last",
        "_lock",
        "_plan",
        "_request",
        "_started",
        "_stopping",
        "_ticket",
        "_wait_on_pool",
        "reply",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        request: CompletionRequest,
        plan: Plan,
        wait_on_pool: Callable[[Callable[[], None]], bool],
        stopping: threading.Event,
    ) -> None:
        self._dispatcher = dispatcher
        self._request = request
        self._plan = plan
        self._wait_on_pool = wait_on_pool
        self._stopping = stopping
        self._index = 0
        self._last: ErrorResponse | None = None
        self._ticket: Ticket | None = None
        self._child: concurrent.futures.Future[Any] | None = None
        self._started = 0.0
        self._lock = threading.Lock()
        self.reply: concurrent.futures.Future[ProxyResponse] = concurrent.futures.Future()
        """The reply, for the runtime to wait on; cancelling it abandons the request."""
        self.reply.add_done_callback(self._caller_left)

    def start(self) -> None:
        """Try the first target (on the calling thread, without waiting on anything)."""
        self._next()

    def _caller_left(self, reply: concurrent.futures.Future[ProxyResponse]) -> None:
        if reply.cancelled():
            with self._lock:
                child = self._child
            if child is not None:
                child.cancel()

    def _next(self) -> None:
        """Call the next target that passes the checks, or answer the caller."""
        dispatcher = self._dispatcher
        plan = self._plan
        targets = plan.targets
        while self._index < len(targets):
            if self.reply.done():
                return  # the caller left
            if self._stopping.is_set():
                self._answer(
                    ErrorResponse(
                        error="cancelled: the router was stopped",
                        kind="cancelled",
                        tried=plan.tried,
                    )
                )
                return
            target = targets[self._index]
            started = dispatcher.clock()
            if plan.left_ms() <= 0:
                self._skip(timed_out(plan), started)
                continue
            admitted = dispatcher.admit(target, self._request, plan)
            if isinstance(admitted, float):
                until = dispatcher.clock() + admitted  # the pool may start the wait late
                if not self._wait_on_pool(functools.partial(self._after_wait, until)):
                    self._answer(
                        ErrorResponse(error="connection: the router is stopping", kind="connection")
                    )
                return
            if isinstance(admitted, ErrorResponse):
                self._skip(admitted, started)
                continue
            self._call(admitted, started)
            return
        last = self._last
        assert last is not None
        self._answer(evolve(last, tried=plan.tried))

    def _after_wait(self, until: float) -> None:
        # Until the moment admit() named, not that long from now: a wait queued behind
        # others on the pool must not overrun the deadline it was found to fit.
        left = until - self._dispatcher.clock()
        if left > 0:
            self._stopping.wait(left)
        self._next()

    def _skip(self, error: ErrorResponse, started: float) -> None:
        plan = self._plan
        target = plan.targets[self._index]
        plan.record(target, "skipped", error.kind, started)
        self._last = error
        plan.warn_fallback(target, error.kind or "skipped", self._index, self._dispatcher)
        self._index += 1

    def _call(self, ticket: Ticket, started: float) -> None:
        message = self._plan.message_for(ticket.request_for(self._request))
        self._ticket = ticket
        self._started = started
        try:
            child = ticket.provider.handle.request_future(message)
        except _NO_REPLY as exc:
            self._replied_with(
                call_failed(ticket, exc, stopping=self._stopping.is_set()), reached=False
            )
            return
        with self._lock:
            self._child = child
        if self.reply.cancelled():
            child.cancel()
        child.add_done_callback(self._replied)

    def _replied(self, child: concurrent.futures.Future[Any]) -> None:
        # On the child's thread (or this one, if it answered at once). Nothing may escape.
        try:
            with self._lock:
                self._child = None
            ticket = self._ticket
            assert ticket is not None
            try:  # one look at the done future (each of its methods takes its lock)
                reply = child.result()
            except BaseException as error:  # noqa: BLE001 -- the call's failure, handled here
                if child.cancelled():  # the caller gave up; the proxy may have sent it on
                    self._dispatcher.settle(ticket, None, unknown=True)
                    return
                failed = call_failed(ticket, error, stopping=self._stopping.is_set())
                self._replied_with(failed, reached=False, unknown=True)
            else:
                self._replied_with(reply, reached=True)
        except Exception as exc:  # noqa: BLE001 -- a callback's exception would be lost
            logger.error("routing a reply failed unexpectedly: %s", type(exc).__name__)
            self._answer(
                ErrorResponse(
                    error=f"invalid_response: the router could not handle a reply "
                    f"({type(exc).__name__})",
                    kind="invalid_response",
                )
            )

    def _replied_with(self, reply: Any, *, reached: bool, unknown: bool = False) -> None:
        dispatcher = self._dispatcher
        plan = self._plan
        ticket = self._ticket
        assert ticket is not None
        if not isinstance(reply, Completion | ErrorResponse):
            reply = ErrorResponse(
                error=f"invalid_response: {ticket.target} answered {type(reply).__name__}",
                kind="invalid_response",
            )
        dispatcher.settle(ticket, reply if reached else None, unknown=unknown)
        if isinstance(reply, ErrorResponse):
            plan.spent_attempts(reply.attempts if reached else None)
        target = ticket.target
        if isinstance(reply, Completion):
            plan.record(target, "ok", None, self._started)
            self._answer(evolve(reply, served_by=str(target), tried=plan.tried))
            return
        plan.record(target, "error", reply.kind, self._started)
        if not dispatcher.falls_back(reply.kind):
            self._answer(evolve(reply, tried=plan.tried))
            return
        self._last = reply
        plan.warn_fallback(target, reply.kind or "error", self._index, dispatcher)
        self._index += 1
        self._next()

    def _answer(self, reply: ProxyResponse) -> None:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.reply.set_result(reply)


def timed_out(plan: Plan) -> ErrorResponse:
    """The error of a request whose deadline passed before its next target."""
    return ErrorResponse(
        error=f"timeout: max_total_timeout_ms passed after {len(plan.tried)} target(s)",
        kind="timeout",
    )


def call_failed(ticket: Ticket, exc: BaseException, *, stopping: bool = False) -> ErrorResponse:
    """The error of a call its child proxy never answered: it timed out, crashed or is gone.

    ``stopping``: the router is stopping (or crashed), so its children are being stopped
    with it: the call is ``cancelled``, and the provider is not given up.
    """
    provider = ticket.provider
    if stopping:
        return ErrorResponse(error="cancelled: the router was stopped", kind="cancelled")
    if isinstance(exc, RequestTimeout):
        return ErrorResponse(error=f"timeout: {ticket.target} did not answer", kind="timeout")
    if isinstance(exc, ActorStopped | ActorNotFound) or provider.down:
        provider.give_up()
        kind = "provider_down"
    else:
        kind = "provider_crashed"
    return ErrorResponse(
        error=f"{kind}: the proxy of {ticket.target} {type(exc).__name__}", kind=kind
    )
