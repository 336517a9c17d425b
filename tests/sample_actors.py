"""Small actors the runtime tests start through manifests (component = tests.sample_actors:X)."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import attrs

from theater_py import Actor, ActorContext, CapabilityDenied, MessageDecodeError, serde

# Events and logs the tests share with the actors (reset by the `shared` fixture).
GATES: dict[str, threading.Event] = {}
LOG: list[Any] = []
LOG_LOCK = threading.Lock()


def note(item: Any) -> None:
    with LOG_LOCK:
        LOG.append(item)


class Echo(Actor):
    """Replies with what it got, tagged with its incarnation's init state."""

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.state = state
        self.sends: list[Any] = []
        if isinstance(state, dict) and state.get("fail_init"):
            raise RuntimeError(state["fail_init"])

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if message == "state":
            return self.state
        if message == "sends":
            return self.sends
        return {"echo": message}

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        self.sends.append(message)


class Worker(Actor):
    """Scripted by its messages: crash, block on a gate, exit, answer with its incarnation."""

    incarnations = 0

    def init(self, ctx: ActorContext, state: Any) -> None:
        type(self).incarnations += 1
        self.incarnation = type(self).incarnations
        self.name = ctx.name
        state = state or {}
        note(("init", ctx.name, self.incarnation))
        if (
            state.get("crash_init_after") is not None
            and self.incarnation > state["crash_init_after"]
        ):
            raise RuntimeError("init refuses")
        gate = state.get("init_gate")
        if gate:
            GATES[gate].wait(10)

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict):
            if "gate" in message:
                GATES[message["gate"]].wait(10)
            if message.get("crash"):
                raise RuntimeError(f"asked to crash: {message['crash']}")
            if message.get("exit"):
                ctx.stop()
            if message.get("base_exception"):
                raise KeyboardInterrupt("not for the whole process")
            if message.get("stop_self"):
                ctx._cell.runtime.stop_actor(ctx.name, timeout=30)  # a test reaching in
        note(("handled", ctx.name, message))
        return {"incarnation": self.incarnation, "message": message}

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        self.handle_request(ctx, message)

    def on_stop(self, ctx: ActorContext) -> None:
        note(("stop", ctx.name, self.incarnation))


class Deferred(Actor):
    """Answers `{"wait": gate}` later, from a pool, and everything else at once."""

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(4)

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict) and "wait" in message:
            gate = GATES[message["wait"]]

            def answer() -> Any:
                gate.wait(10)
                if message.get("fail"):
                    raise ValueError("deferred failure")
                return {"late": message["wait"]}

            return self.pool.submit(answer)
        return {"now": message}

    def on_stop(self, ctx: ActorContext) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Capable(Actor):
    """Uses the capability its request names and replies with what happened."""

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        try:
            return self._use(ctx, message)
        except CapabilityDenied as denied:
            return {"denied": denied.capability, "error": str(denied)}

    def _use(self, ctx: ActorContext, message: Any) -> Any:
        kind = message["use"]
        if kind == "env":
            value = ctx.env.get(message["var"])
            return None if value is None else {"length": len(value)}
        if kind == "http":
            response = ctx.http.get(message["url"], timeout=5)
            return response.status_code
        if kind == "store":
            store_id = ctx.store.new_store()
            ref = ctx.store.store_at_label(store_id, "greeting", message["text"].encode())
            return {"store_id": store_id, "hash": ref.hash}
        if kind == "store-call":
            return self._store_call(ctx, message)
        if kind == "time":
            return ctx.time.now_ms()
        if kind == "spawn":
            child = ctx.spawn(message["manifest"], name=message["name"])
            return {"spawned": child.name}
        raise ValueError(kind)

    @staticmethod
    def _store_call(ctx: ActorContext, message: Any) -> Any:
        # Any attribute of the store capability, by name: what an actor could reach.
        try:
            operation = getattr(ctx.store, message["method"])
        except AttributeError:
            return {"missing": message["method"]}
        args = list(message.get("args", []))
        if "content" in message:
            args.append(message["content"].encode())
        result = operation(*args)
        return result.hash if hasattr(result, "hash") else result


class NotAnActor:
    pass


# -- a typed actor: serde-shaped JSON in and out ----------------------------------------------


@attrs.frozen
class Item:
    name: str
    quantity: int = 1


@attrs.frozen
class Count:
    pass


@attrs.frozen
class Add:
    items: list[Item]
    note: str | None = None


@attrs.frozen
class Total:
    count: int


@attrs.frozen
class Rejected:
    error: str


Order = Count | Add
Reply = Total | Rejected
serde.register_externally_tagged(Order, {Count: "Count", Add: "Add"})
serde.register_externally_tagged(Reply, {Total: "Total", Rejected: "Rejected"})


class Shop(Actor):
    """A typed actor: `Count` or `Add` in, `Total` out."""

    request_type = Order
    response_type = Reply

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.total = 0
        self.answer_bad_json = bool((state or {}).get("answer_bad_json"))

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, Add):
            self.total += sum(item.quantity for item in message.items)
        return Total(self.total)

    def on_decode_error(self, ctx: ActorContext, error: MessageDecodeError) -> Any:
        if self.answer_bad_json:
            return Rejected(f"invalid request: {error}")
        return super().on_decode_error(ctx, error)
