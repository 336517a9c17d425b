"""The caller's side of an actor: requests, sends, events and stop."""

from __future__ import annotations

import concurrent.futures
import functools
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from theater_py import channel
from theater_py._cell import ActorCell, Envelope, Kind
from theater_py.errors import ActorNotFound, RequestTimeout

if TYPE_CHECKING:
    from theater_py.chain import ChainEvent, ChainVerification
    from theater_py.channel import Channel
    from theater_py.runtime import Runtime

__all__ = ["DEFAULT_TIMEOUT", "ActorHandle", "TypedHandle"]

ReqT_contra = TypeVar("ReqT_contra", contravariant=True)
RespT_co = TypeVar("RespT_co", covariant=True)

DEFAULT_TIMEOUT = 60.0
"""Seconds a request waits for its reply when no timeout is given."""


class TypedHandle(Generic[ReqT_contra, RespT_co]):
    """An actor's handle that knows the types of its requests and replies.

    The runtime returns an :class:`ActorHandle`, whose ``request`` takes and returns
    ``Any``; name the actor's types where you keep it, and mypy and editors know the
    reply's type (the actor's ``response_type``)::

        proxy: TypedHandle[ProxyRequest, ProxyResponse] = runtime.start_actor("openai-proxy")
        reply = proxy.request(ListModels())      # ProxyResponse

    Handles are cheap, thread-safe and may be shared. Every wait has a timeout:
    ``timeout=None`` means :data:`DEFAULT_TIMEOUT`.
    """

    __slots__ = ("_cell", "_name", "_runtime")

    def __init__(self, runtime: Runtime, name: str, cell: ActorCell | None = None) -> None:
        self._runtime = runtime
        self._name = name
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._name

    @property
    def id(self) -> str:
        """The actor's id: a uuid4 string that stays the same across restarts."""
        return self._current().id

    def _current(self) -> ActorCell:
        cell = self._cell
        if cell is None or not cell.is_alive():
            # Its supervisor may have started the actor afresh from its spec: follow it,
            # but never to another actor started under the same name since (a stopped
            # cell answers ActorStopped).
            found = self._runtime.find_cell(self._name)
            if found is None or (cell is not None and found.lineage != cell.lineage):
                if cell is None:
                    raise ActorNotFound(f"no actor named {self._name!r}")
                return cell
            self._cell = cell = found
        return cell

    def _call(self, message: Any, encoded: bool, timeout: float | None) -> Any:
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        envelope = Envelope(Kind.REQUEST, message, encoded, reply)
        self._current().deliver(envelope)
        wait = DEFAULT_TIMEOUT if timeout is None else timeout
        try:
            return reply.result(wait)
        except concurrent.futures.TimeoutError:
            if envelope.give_up():
                raise RequestTimeout(
                    f"actor {self._name!r} did not reply within {wait} s"
                ) from None
            return reply.result(0)

    def request(self, message: ReqT_contra, timeout: float | None = None) -> RespT_co:
        """Send a typed message and wait for the typed reply.

        Raises:
            ActorFailed: the actor crashed handling this message.
            ActorStopped: the actor stopped before handling it.
            RequestTimeout: no reply within the timeout.
        """
        return cast("RespT_co", self._call(message, False, timeout))

    def request_future(self, message: ReqT_contra) -> concurrent.futures.Future[RespT_co]:
        """Send a typed message and return the future of its typed reply, without waiting.

        For an actor that asks another while it serves its own caller: it chains on the
        future instead of holding a thread. The future fails as :meth:`request` raises
        (``ActorFailed``, ``ActorStopped``); it has no timeout of its own. Cancelling it
        stops waiting as a timed-out :meth:`request` does: the actor drops the message if
        it has not begun it, and cancels the reply it deferred if it has.
        """
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        envelope = Envelope(Kind.REQUEST, message, False, reply)
        reply.add_done_callback(functools.partial(_abandon_if_cancelled, envelope))
        self._current().deliver(envelope)
        return reply

    def request_json(self, value: Any, timeout: float | None = None) -> Any:
        """Send a JSON value and wait for the reply as a JSON value.

        The actor decodes the value into its ``request_type``; a value that does not
        match raises :class:`~theater_py.errors.MessageDecodeError` (or gets the error
        reply the actor chooses), and the actor keeps running.
        """
        return self._call(value, True, timeout)

    def open_channel(self, message: ReqT_contra, timeout: float | None = None) -> Channel:
        """Open a channel with a typed message; iterate it for the actor's typed messages.

        Args:
            message: the open message the actor's ``handle_channel_open`` receives.
            timeout: seconds to wait for the actor to accept, and then for each next
                message while iterating.

        Raises:
            ChannelRefused: the actor refused the channel, with its reason.
            ActorFailed: the actor crashed before it answered.
            ActorStopped: the actor stopped before it answered.
            RequestTimeout: no answer within the timeout.
        """
        wait = DEFAULT_TIMEOUT if timeout is None else timeout
        return channel.open_channel(self._current(), message, False, wait)

    def open_channel_json(self, value: Any, timeout: float | None = None) -> Channel:
        """Open a channel with a JSON value; iterate it for the actor's messages as JSON.

        The value decodes into the actor's ``request_type`` (a value that does not match
        raises :class:`~theater_py.errors.MessageDecodeError`), and so does each value
        :meth:`Channel.send <theater_py.Channel.send>` sends; the actor's messages arrive
        encoded as its ``channel_type``. Otherwise as :meth:`open_channel`.
        """
        wait = DEFAULT_TIMEOUT if timeout is None else timeout
        return channel.open_channel(self._current(), value, True, wait)

    def send(self, message: ReqT_contra) -> None:
        """Queue a typed message without waiting for anything."""
        self._current().deliver(Envelope(Kind.SEND, message))

    def send_json(self, value: Any) -> None:
        """Queue a JSON value without waiting for anything."""
        self._current().deliver(Envelope(Kind.SEND, value, True))

    def crash(self, reason: str = "crashed on request") -> None:
        """Make the actor crash after the messages already queued (Erlang's ``exit(Pid, Reason)``).

        The crash is handled as any other: recorded, and the supervisor decides; the
        messages queued behind it pass to the next incarnation. Meant for testing and
        showing supervision.
        """
        self._current().deliver(Envelope(Kind.CRASH, reason))

    def events(self) -> list[ChainEvent]:
        """Return the actor's event chain so far, oldest first."""
        return self._current().chain.events()

    def verify(self) -> ChainVerification:
        """Check the actor's event chain link by link."""
        return self._current().chain.verify()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the actor for good, after the messages already queued.

        Raises:
            RequestTimeout: it did not finish within the timeout (it is stopped
                regardless: no further message reaches it).
        """
        wait = DEFAULT_TIMEOUT if timeout is None else timeout
        cell = self._current()
        if cell.is_alive():
            finished = self._runtime.stop_actor(self._name, timeout=wait, missing_ok=True)
        else:  # stopped, or stopping: never by name, which may be another actor's since
            finished = cell.stop(wait)
        if not finished:
            raise RequestTimeout(f"actor {self._name!r} did not stop within {wait} s")

    def is_alive(self) -> bool:
        """Whether the actor runs, or will run again after a restart."""
        try:
            return self._current().is_alive()
        except ActorNotFound:
            return False

    def __repr__(self) -> str:
        return f"<ActorHandle {self._name}>"


def _abandon_if_cancelled(envelope: Envelope, reply: concurrent.futures.Future[Any]) -> None:
    if reply.cancelled():
        envelope.abandon()


class ActorHandle(TypedHandle[Any, Any]):
    """Talks to one actor; stays valid when its supervisor restarts it, or starts it afresh.

    An actor started later under the same name, once this one is stopped for good, is
    another actor: this handle raises :class:`~theater_py.errors.ActorStopped`.

    Its ``request`` takes and returns ``Any``; assign it to a
    :class:`TypedHandle` ``[Request, Response]`` to have the types checked.
    """

    __slots__ = ()
