"""The echo actors the runtime benchmarks talk to: a theater-py actor and a bare Pykka one.

Both answer :class:`Ping` with :class:`Pong` and count :class:`Tick` sends, so the two sides
of every comparison do the same work and differ only in the machinery around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pykka

from theater_py import Actor, ActorContext, serde
from theater_py_actors.genai_types import ProxyRequest, ProxyResponse

__all__ = [
    "ECHO_MANIFEST",
    "ECHO_SAVED_MANIFEST",
    "FORWARD_MANIFEST",
    "Count",
    "EchoActor",
    "EchoRequest",
    "ForwardActor",
    "Ping",
    "Pong",
    "PykkaEcho",
    "Tick",
]

ECHO_MANIFEST = Path(__file__).resolve().parent / "manifests" / "echo.toml"
"""The manifest of :class:`EchoActor`."""

ECHO_SAVED_MANIFEST = ECHO_MANIFEST.with_name("echo-saved.toml")
"""The same actor with ``save_chain = true``: every event goes to the SQLite file."""


@attrs.frozen
class Ping:
    """Asks for a :class:`Pong` carrying the same fields."""

    seq: int
    text: str = "ping"


@attrs.frozen
class Tick:
    """A fire-and-forget message; the actor counts it."""

    seq: int


@attrs.frozen
class Count:
    """Asks how many ticks arrived: the reply is ``Pong(ticks, "ticks")``."""


@attrs.frozen
class Pong:
    """The reply to :class:`Ping` and :class:`Count`."""

    seq: int
    text: str


EchoRequest = Ping | Tick | Count
serde.register_externally_tagged(EchoRequest, {Ping: "Ping", Tick: "Tick", Count: "Count"})


class EchoActor(Actor):
    """A typed theater-py echo actor."""

    request_type = EchoRequest
    response_type = Pong

    def init(self, ctx: ActorContext, state: Any) -> None:
        """Start counting ticks from zero."""
        self.ticks = 0

    def handle_request(self, ctx: ActorContext, message: Any) -> Pong:
        """Echo a ping, or report the tick count."""
        if isinstance(message, Ping):
            return Pong(message.seq, message.text)
        return Pong(self.ticks, "ticks")

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        """Count a tick."""
        self.ticks += 1


class PykkaEcho(pykka.ThreadingActor):
    """The bare Pykka twin of :class:`EchoActor`: the baseline of a hop."""

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0

    def on_receive(self, message: Any) -> Any:
        """Echo a ping, count a tick, or report the tick count."""
        if isinstance(message, Ping):
            return Pong(message.seq, message.text)
        if isinstance(message, Tick):
            self.ticks += 1
            return None
        return Pong(self.ticks, "ticks")


FORWARD_MANIFEST = Path(__file__).resolve().parent / "manifests" / "forward.toml"
"""The manifest of :class:`ForwardActor`."""


class ForwardActor(Actor):
    """Passes each proxy request to the actor named ``to`` in its init state, unchanged,
    and answers with its reply: a router with no logic, to price the extra hop alone."""

    request_type = ProxyRequest
    response_type = ProxyResponse

    def init(self, ctx: ActorContext, state: Any) -> None:
        """Find the actor to forward to."""
        self.to = ctx.spawn(state["manifest"], state["init"], name=f"{ctx.name}-to")

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        """Forward ``message``; the runtime waits on the future of the reply."""
        return self.to.request_future(message)
