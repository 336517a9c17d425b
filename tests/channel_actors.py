"""Actors the channel tests start (component = tests.channel_actors:X).

``Streamer`` is scripted by its open message, a dict: ``count`` messages ``{"i": n}``
streamed from a pool thread (``send_timeout`` bounds each send), then closed unless
``keep_open``; ``refuse`` answers ``False``; ``raise`` raises its text; ``defer`` answers
through a future (``True``, or ``"refuse"``), once the gate ``gate`` opens if named;
``watch`` keeps the channel open and notes when its producer thread sees ``closed``.
Messages sent on a channel are echoed back; ``"close"`` closes it. The log: ``LOG``.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, ClassVar

import attrs

from theater_py import Actor, ActorChannel, ActorContext

LOG: list[Any] = []
LOG_LOCK = threading.Lock()
GATES: dict[str, threading.Event] = {}
WAIT = 10.0
"""Seconds any wait in these actors lasts at most."""


def note(*item: Any) -> None:
    with LOG_LOCK:
        LOG.append(item)


def notes(kind: str) -> list[tuple[Any, ...]]:
    with LOG_LOCK:
        return [item for item in LOG if item[0] == kind]


class Streamer(Actor):
    channel_buffer: ClassVar[int] = 4

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="streamer")
        note("init", ctx.name)

    def on_stop(self, ctx: ActorContext) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if isinstance(message, dict) and "wait" in message:
            GATES[message["wait"]].wait(WAIT)
        if message == "crash":
            raise RuntimeError("asked to crash")
        return "ok"

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        self.handle_request(ctx, message)

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> Any:
        note("open", channel.id, message)
        if message.get("refuse"):
            return False
        if message.get("raise"):
            raise ValueError(message["raise"])
        if "defer" in message:
            answer, gate = message["defer"], message.get("gate")
            return self.pool.submit(
                lambda: (gate is None or GATES[gate].wait(WAIT)) and (answer is True or answer)
            )
        if message.get("watch"):
            self.pool.submit(self._watch, channel)
        elif "count" in message:
            self.pool.submit(self._produce, channel, message)
        return True

    def _produce(self, channel: ActorChannel, script: dict[str, Any]) -> None:
        try:
            for i in range(script["count"]):
                if channel.closed.is_set():
                    note("producer saw closed", channel.id, i)
                    return
                note("sending", channel.id, i)
                if not channel.send({"i": i}, timeout=script.get("send_timeout")):
                    note("producer saw closed", channel.id, i)
                    return
                note("sent", channel.id, i)
            if not script.get("keep_open"):
                channel.close()
        except Exception as exc:
            note("producer failed", channel.id, type(exc).__name__)

    def _watch(self, channel: ActorChannel) -> None:
        channel.send({"watching": True})
        if channel.closed.wait(WAIT):
            note("producer saw closed", channel.id)

    def handle_channel_message(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> None:
        note("message", channel.id, message)
        if message == "unencodable":
            try:
                channel.send(object())
            except TypeError as exc:
                note("send refused", channel.id, type(exc).__name__)
            return
        if message == "close":
            channel.close()
            if not channel.send("after close"):
                note("send after close refused", channel.id)
            return
        channel.send({"echo": message})

    def handle_channel_close(self, ctx: ActorContext, channel: ActorChannel) -> None:
        note("closed by caller", channel.id)


@attrs.frozen
class Tick:
    n: int


class Ticker(Actor):
    """Sends ``Tick`` objects on every channel: as objects, or as JSON to JSON callers."""

    channel_type: ClassVar[Any] = Tick

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        for n in range(3):
            channel.send(Tick(n))
        channel.close()
        return True


class Strict(Actor):
    """Decodes what callers send into ``Tick``; answers each tick with the next."""

    request_type: ClassVar[Any] = Tick
    channel_type: ClassVar[Any] = Tick

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        return isinstance(message, Tick)

    def handle_channel_message(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> None:
        channel.send(Tick(message.n + 1))
