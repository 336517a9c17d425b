"""Actors for tests/test_ray_review.py (run on Ray workers)."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from typing import Any

from theater_py import Actor, ActorChannel, ActorContext


class Slow(Actor):
    """``{"defer": s}``: a deferred reply after s seconds; ``{"boom": text}``: raise it."""

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(80)

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict) and "defer" in message:
            seconds = message["defer"]
            return self.pool.submit(lambda: (time.sleep(seconds), {"pid": os.getpid()})[1])
        if isinstance(message, dict) and "ticks" in message:

            def tick() -> None:
                for i in range(message["ticks"]):
                    ctx.record("tick", {"i": i}, "a background event")
                    time.sleep(0.01)

            threading.Thread(target=tick, daemon=True).start()
            return "ticking"
        if isinstance(message, dict) and "sleep" in message:
            time.sleep(message["sleep"])
        if isinstance(message, dict) and "boom" in message:
            raise PermissionError(message["boom"])
        return {"pid": os.getpid(), "message": message}

    def on_stop(self, ctx: ActorContext) -> None:
        ctx.record("bye", {"pid": os.getpid()}, "on_stop ran")
        self.pool.shutdown(wait=False, cancel_futures=True)

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        return True

    def handle_channel_message(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> None:
        channel.send({"got": message})
