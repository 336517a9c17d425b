"""The driver side: an :class:`~theater_py.Actor` that forwards to its Host on a Ray worker.

The cell makes a :class:`RemoteInstance` where it would make the actor's own class, so the
mailbox, its order, the hand-over of queued messages across restarts, deferred replies and
stops are the local runtime's, unchanged. Each handler call becomes one Ray call carrying
JSON text; the events the actor recorded on the worker come back with it and are appended
to the actor's chain here, before the reply is recorded.

A Host that dies (its process or its node) makes the call raise :class:`RayActorLost`: a
crash of the incarnation, which the supervisor handles as any crash.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from theater_py import serde
from theater_py._cell import LONGEST_WAIT
from theater_py._ray.host import dumps
from theater_py.actor import IGNORE, Actor
from theater_py.errors import ActorFailed, MessageDecodeError

if TYPE_CHECKING:
    from theater_py._ray.backend import RayBackend
    from theater_py._ray.host import Outcome
    from theater_py.channel import ActorChannel
    from theater_py.context import ActorContext
    from theater_py.manifest import Manifest
    from theater_py.placement import Placement

__all__ = ["RayActorLost", "RemoteInstance", "remote_class"]

logger = logging.getLogger("theater_py.actor")

PULL_WAIT = 1.0
"""Seconds one pull of a channel's messages waits on the Host for the first one."""


class RayActorLost(Exception):
    """The Ray actor running an incarnation died (its process or its node was lost)."""


@functools.cache
def _remote_error(name: str) -> type[Exception]:
    """An exception class named as the one raised on the worker, so a crash's recorded
    reason (``ValueError: boom``) is the same as a local crash's."""
    return type(name, (Exception,), {"__module__": "theater_py._ray.remote"})


def _events(ctx: ActorContext, events: list[list[Any]]) -> None:
    for event_type, data, description in events:
        ctx.record(event_type, json.loads(data), description)


def _stop_reason(kind: str, error: str | None) -> str | tuple[str, Any]:
    """The ``ctx.stop`` argument that gives the exit reason the worker's ``ctx.stop`` gave."""
    if error is None:
        return kind  # "normal" or "shutdown"
    return error if kind == "crash" else ("shutdown", error)


class RemoteInstance(Actor):
    """Forwards every handler call of one incarnation to its Host (see module doc)."""

    backend: RayBackend
    manifest: Manifest
    placement: Placement | None
    target: type[Actor]

    def __init__(self) -> None:
        self._host: Any = None

    # -- calls -----------------------------------------------------------------

    def _wait(self, ref: Any, timeout: float, late: str | None = None) -> Outcome:
        """Wait for a Host's outcome; a dead Host, or none within ``timeout``, is lost."""
        try:
            return ray.get(ref, timeout=timeout)  # type: ignore[no-any-return]
        except RayActorError:
            raise RayActorLost(
                "the Ray actor running this incarnation died (its process or node was lost)"
            ) from None
        except GetTimeoutError:
            raise RayActorLost(
                late or f"the Ray actor running this incarnation gave no answer within {timeout} s"
            ) from None

    def _settle(self, ctx: ActorContext, outcome: Outcome) -> Any:
        """Record the outcome's events and exit, and return its value or raise its crash."""
        status, value, events, exit_reason = outcome
        _events(ctx, events)
        if exit_reason is not None:  # the actor called ctx.stop on the worker
            ctx.stop(_stop_reason(*exit_reason))
        if status in ("crash", "error"):
            raise _remote_error(value[0])(value[1])
        if status == "refused":
            raise MessageDecodeError(value[0], value[1])
        return value

    def _reply(self, ctx: ActorContext, outcome: Outcome, typed: bool = True) -> Any:
        """The reply an outcome carries (of ``response_type`` when ``typed``), or its future."""
        value = self._settle(ctx, outcome)
        if outcome[0] == "deferred":
            return self._deferred(ctx, value, typed)
        reply = json.loads(value)
        response_type = self.target.response_type if typed else None
        return reply if response_type is None else serde.structure(reply, response_type)

    def _deferred(
        self, ctx: ActorContext, token: int, typed: bool = True
    ) -> concurrent.futures.Future[Any]:
        """The future of a deferred reply: the Host is asked for it in slices (each
        :data:`~theater_py._ray.host.REPLY_SLICE` s) until it comes, the caller gives up,
        or :data:`LONGEST_WAIT` passes."""
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        host = self._host
        deadline = time.monotonic() + LONGEST_WAIT
        asker = self.backend.asker

        def fail(error: BaseException) -> None:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                reply.set_exception(error)

        def ask() -> None:
            try:
                host.await_reply.remote(token).future().add_done_callback(done)
            except Exception as exc:  # noqa: BLE001 -- Ray is gone: the caller must hear
                fail(RayActorLost(f"cannot ask the Ray actor for its reply: {type(exc).__name__}"))

        def done(ready: concurrent.futures.Future[Any]) -> None:
            try:
                outcome = ready.result()
                if outcome[0] == "waiting":
                    _events(ctx, outcome[2])
                    if reply.done():
                        return
                    if time.monotonic() > deadline:
                        fail(_remote_error("TimeoutError")(f"no reply within {LONGEST_WAIT:g} s"))
                        host.cancel.remote(token)
                        return
                    # Not from this callback: it runs on a thread of Ray's own.
                    asker.submit(ask)
                    return
                if outcome[0] == "cancelled":
                    _events(ctx, outcome[2])
                    reply.cancel()
                    return
                value = self._reply(ctx, outcome, typed)
            except RayActorError:
                fail(RayActorLost("the Ray actor died before it answered"))
                return
            except BaseException as exc:  # noqa: BLE001 -- the caller must hear of any failure
                fail(exc)
                return
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                reply.set_result(value)

        def abandoned(future: concurrent.futures.Future[Any]) -> None:
            if future.cancelled():  # the caller left: let the actor drop the work
                with contextlib.suppress(Exception):
                    host.cancel.remote(token)

        reply.add_done_callback(abandoned)
        ask()
        return reply

    @staticmethod
    def _encode(message: Any) -> str:
        return dumps(serde.unstructure(message))

    # -- the Actor contract --------------------------------------------------------

    def init(self, ctx: ActorContext, state: Any) -> Any:
        self._host = self.backend.create_host(ctx, self.manifest, self.placement)
        timeout = self.backend.start_timeout
        late = (
            f"the Ray actor of this incarnation could not be placed or started within "
            f"{timeout:g} s (does a node offer its [placement]?)"
        )
        try:
            outcome = self._wait(self._host.init.remote(dumps(state)), timeout, late)
        except RayActorLost:
            host, self._host = self._host, None
            self.backend.discard(host)
            raise
        self._settle(ctx, outcome)
        self.backend.watch(self._host, ctx)
        return IGNORE if outcome[0] == "ignore" else None

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        return self._reply(
            ctx, self._wait(self._host.request.remote(self._encode(message)), LONGEST_WAIT)
        )

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        self._settle(ctx, self._wait(self._host.send.remote(self._encode(message)), LONGEST_WAIT))

    def on_decode_error(self, ctx: ActorContext, error: MessageDecodeError) -> Any:
        outcome = self._wait(self._host.decode_error.remote(error.path, error.reason), LONGEST_WAIT)
        return self._reply(ctx, outcome)

    def handle_channel_open(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> bool | concurrent.futures.Future[bool]:
        host = self._host
        outcome = self._wait(
            host.channel_open.remote(channel.id, self._encode(message)), LONGEST_WAIT
        )
        answer = self._reply(ctx, outcome, typed=False)
        if isinstance(answer, concurrent.futures.Future):

            def decided(done: concurrent.futures.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None and done.result() is True:
                    self._pump(ctx, host, channel)

            answer.add_done_callback(decided)
            return answer
        if answer is True:
            self._pump(ctx, host, channel)
        return bool(answer) if isinstance(answer, bool) else answer

    def _pump(self, ctx: ActorContext, host: Any, channel: ActorChannel) -> None:
        """Carry what the actor sends on the worker into the caller's buffer, on a thread."""
        threading.Thread(
            target=_pump,
            args=(ctx, host, channel, self.target.channel_type),
            name=f"theater-ray-channel-{channel.id[:8]}",
            daemon=True,
        ).start()

    def handle_channel_message(
        self, ctx: ActorContext, channel: ActorChannel, message: Any
    ) -> None:
        outcome = self._host.channel_message.remote(channel.id, self._encode(message))
        self._settle(ctx, self._wait(outcome, LONGEST_WAIT))

    def handle_channel_close(self, ctx: ActorContext, channel: ActorChannel) -> None:
        self._settle(ctx, self._wait(self._host.channel_close.remote(channel.id), LONGEST_WAIT))

    def on_stop(self, ctx: ActorContext) -> None:
        host, self._host = self._host, None
        if host is not None:
            self.backend.release(host, ctx)


def _pump(ctx: ActorContext, host: Any, channel: ActorChannel, channel_type: Any) -> None:
    """Pull a channel's messages from its Host until either end closes it.

    Backpressure runs through: a caller that does not read blocks ``channel.send`` here,
    so no pull is made, so the Host's buffer fills and the actor's own ``send`` waits.
    A Host that dies ends the loop; the incarnation's end closes the channel.
    """
    farewell: str | None = None
    while not channel.closed.is_set():
        try:
            outcome = ray.get(
                host.channel_pull.remote(channel.id, PULL_WAIT), timeout=PULL_WAIT + 30
            )
        except Exception as exc:  # noqa: BLE001 -- the caller must not wait for nothing
            lost = "its Ray actor died" if isinstance(exc, RayActorError) else "no answer"
            _fail(channel, ActorFailed(ctx.name, f"channel {channel.id} lost: {lost}"))
            return
        _events(ctx, outcome[2])
        items, ended, last = outcome[1]
        if last != farewell:
            farewell = last
            channel.set_farewell(None if last is None else _typed(json.loads(last), channel_type))
        try:
            for text in items:
                if not channel.send(_typed(json.loads(text), channel_type)):
                    return  # the caller closed it
        except Exception:  # noqa: BLE001 -- the caller read nothing for a minute: end it
            logger.warning("channel %s: its caller stopped reading; closing it", channel.id)
            channel.close()
            return
        if ended:
            channel.close()
            return


def _fail(channel: ActorChannel, error: BaseException) -> None:
    """End a channel whose messages can no longer be pulled: its caller gets ``error``
    once it has read what came before (unless the incarnation's end closed it first)."""
    link = channel._link  # the driver's end of its own channel
    if link.end("crash", error) and link.owner is not None:
        link.owner.finish(link)


def _typed(value: Any, channel_type: Any) -> Any:
    return value if channel_type is None else serde.structure(value, channel_type)


def remote_class(
    backend: RayBackend, target: type[Actor], manifest: Manifest, placement: Placement | None
) -> type[Actor]:
    """Return the class a cell instantiates for an actor that runs on a Ray worker."""
    attributes = {
        "backend": backend,
        "manifest": manifest,
        "placement": placement,
        "target": target,
        "request_type": target.request_type,
        "response_type": target.response_type,
        "channel_type": target.channel_type,
        "channel_buffer": target.channel_buffer,
    }
    return type(f"Remote{target.__name__}", (RemoteInstance,), attributes)
