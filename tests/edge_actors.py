"""Actors the runtime edge-case tests start (component = tests.edge_actors:X).

They are scripted by their init state and their messages, and they tell the test
where they are through named signals, so every interleaving a test needs is forced
with events, never with sleeps.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import defaultdict
from typing import Any

from theater_py import IGNORE, Actor, ActorContext

# Shared with the tests; reset by the `edge` fixture of tests/test_runtime_edge_cases.py.
GATES: dict[str, threading.Event] = {}
LOG: list[tuple[Any, ...]] = []
CONTEXTS: dict[str, ActorContext] = {}
FUTURES: list[concurrent.futures.Future[Any]] = []
INCARNATIONS: dict[str, int] = defaultdict(int)
_LOCK = threading.Lock()
_SIGNALS: dict[str, threading.Event] = {}


def note(*item: Any) -> None:
    """Append an entry to the shared log."""
    with _LOCK:
        LOG.append(item)


def signal(key: str) -> threading.Event:
    """Return the event named ``key``, created on first use."""
    with _LOCK:
        event = _SIGNALS.get(key)
        if event is None:
            event = _SIGNALS[key] = threading.Event()
        return event


def reset() -> None:
    """Forget every gate, log entry, signal and counter."""
    with _LOCK:
        GATES.clear()
        LOG.clear()
        CONTEXTS.clear()
        FUTURES.clear()
        INCARNATIONS.clear()
        _SIGNALS.clear()
    BaseInConstructor.constructed = 0


def _wait_gate(name: str) -> None:
    GATES[name].wait(10)


class Scripted(Actor):
    """An actor whose init, replies and on_stop are scripted.

    Init state keys: ``init_gate`` (wait on that gate in init), ``fail_init_after``
    (init raises from that incarnation on), ``fail_init_at`` (a list: init raises in
    those incarnations), ``ignore_at`` (a list: init returns IGNORE in those
    incarnations), ``stop_gate`` (on_stop signals
    ``<name>:on_stop`` and waits on that gate), ``stop_raises_base`` (on_stop raises
    KeyboardInterrupt). Requests are dicts: ``gate`` (wait), ``crash`` (raise),
    ``exit`` (ctx.stop(), or ctx.stop(reason) when it is not ``True``), ``unencodable``
    (reply with a set), ``defer`` (reply with a future nobody resolves),
    ``keep_ctx`` (publish the context in CONTEXTS); anything else is echoed with the
    incarnation that handled it.
    """

    def init(self, ctx: ActorContext, state: Any) -> Any:
        self.state = state if isinstance(state, dict) else {}
        with _LOCK:
            INCARNATIONS[ctx.name] += 1
            self.incarnation = INCARNATIONS[ctx.name]
        note("init", ctx.name, self.incarnation)
        signal(f"{ctx.name}:init:{self.incarnation}").set()
        fail_after = self.state.get("fail_init_after")
        if fail_after is not None and self.incarnation > fail_after:
            raise RuntimeError("init refuses")
        if self.incarnation in self.state.get("fail_init_at", ()):
            raise RuntimeError(f"init refuses in incarnation {self.incarnation}")
        if self.incarnation in self.state.get("ignore_at", ()):
            return IGNORE
        gate = self.state.get("init_gate")
        if gate:
            _wait_gate(gate)
        return None

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict):
            if "gate" in message:
                signal(f"{ctx.name}:blocked").set()
                _wait_gate(message["gate"])
            if message.get("crash"):
                raise RuntimeError(f"asked to crash: {message['crash']}")
            exit_reason = message.get("exit")
            if exit_reason is True:
                ctx.stop()
            elif exit_reason:
                ctx.stop(tuple(exit_reason) if isinstance(exit_reason, list) else exit_reason)
            if message.get("unencodable"):
                return {"a set": {1, 2}}
            if message.get("keep_ctx"):
                CONTEXTS[ctx.name] = ctx
            if message.get("defer"):
                future: concurrent.futures.Future[Any] = concurrent.futures.Future()
                FUTURES.append(future)
                return future
        note("handled", ctx.name, self.incarnation, message)
        return {"incarnation": self.incarnation, "message": message}

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        self.handle_request(ctx, message)

    def on_stop(self, ctx: ActorContext) -> None:
        note("stop", ctx.name, self.incarnation)
        gate = self.state.get("stop_gate")
        if gate:
            signal(f"{ctx.name}:on_stop").set()
            _wait_gate(gate)
        if self.state.get("stop_raises_base"):
            raise KeyboardInterrupt("on_stop interrupted")


class BaseInConstructor(Actor):
    """Constructs once; every later construction (a restart) raises a BaseException."""

    constructed = 0

    def __init__(self) -> None:
        type(self).constructed += 1
        if type(self).constructed > 1:
            raise KeyboardInterrupt("constructor interrupted")

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict) and message.get("crash"):
            raise RuntimeError("asked to crash")
        return {"message": message}
