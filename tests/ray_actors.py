"""Actors the Ray tests start on workers (component = tests.ray_actors:X).

They run in other processes than the test, so they share nothing with it but their
messages: each reply says where it ran.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from typing import Any

import ray

from theater_py import Actor, ActorChannel, ActorContext


class Where(Actor):
    """Replies with its node, its process and what it was asked; scripted by its messages."""

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.state = state or {}
        self.sends: list[Any] = []
        self.pool = concurrent.futures.ThreadPoolExecutor(2)
        if self.state.get("fail_init"):
            raise RuntimeError(self.state["fail_init"])

    def _here(self) -> dict[str, Any]:
        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict):
            if "sleep" in message:
                time.sleep(message["sleep"])
            if "crash" in message:
                raise ValueError(message["crash"])
            if "record" in message:
                ctx.record("note", message["record"], "a note from the worker")
            if "later" in message:
                return self.pool.submit(lambda: {**self._here(), "later": message["later"]})
            if "store" in message:
                store = ctx.store
                store_id = message.get("store_id") or store.new_store()
                ref = store.store_at_label(store_id, "text", message["store"].encode())
                ref = store.get_by_label(store_id, "text") or ref
                return {"store_id": store_id, "text": store.get(store_id, ref).decode()}
            if "read" in message:
                store = ctx.store
                ref = store.get_by_label(message["read"], "text")
                return None if ref is None else store.get(message["read"], ref).decode()
            if "exit" in message:
                ctx.stop(message["exit"])
        if message == "sends":
            return self.sends
        return {**self._here(), "message": message}

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        self.sends.append(message)

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        """``{"count": n}`` streams n messages from a thread, then closes; ``{"echo": ..}``
        answers each caller message; ``{"refuse": reason}`` refuses."""
        if "refuse" in message:
            raise ValueError(message["refuse"])
        if "count" in message:

            def produce() -> None:
                for i in range(message["count"]):
                    channel.send({"i": i})
                channel.close()

            threading.Thread(target=produce, daemon=True).start()
        return True

    def handle_channel_message(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> None:
        channel.send({"got": message, **self._here()})

    def on_stop(self, ctx: ActorContext) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Spawner(Actor):
    """Spawns the child its state names and forwards each request to it (a router's shape)."""

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.child = ctx.spawn(state["manifest"], name=state["name"])

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        return {"pid": os.getpid(), "child": self.child.request(message, timeout=30)}
