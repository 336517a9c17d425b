"""Channels: a long-lived two-way stream between a caller and an actor (Theater's channels).

A caller opens a channel with an initial message (:meth:`ActorHandle.open_channel`); the
actor accepts or refuses it in :meth:`Actor.handle_channel_open`. Once open, the actor
streams messages to the caller through a bounded buffer (:class:`ActorChannel`), and the
caller iterates them and may send messages back through the actor's mailbox
(:class:`Channel`). Either side closes it; the actor's end (a crash, a stop) ends it too.

The buffer is a deque under a condition rather than a :class:`queue.Queue`: a 3.11 queue
cannot be closed, so neither a producer blocked on a full queue nor a caller blocked on an
empty one could be woken by the other side's close, and no end marker fits in a full queue.

Nothing here starts a thread: the caller's thread reads, the actor's threads write.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from theater_py import serde
from theater_py.chain import canonical_json
from theater_py.errors import (
    ActorStopped,
    ChannelClosed,
    ChannelRefused,
    MessageDecodeError,
    ReplyEncodeError,
    RequestTimeout,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from theater_py._cell import ActorCell, Envelope, _ActorProcess

__all__ = ["BUFFER_SIZE", "ActorChannel", "Channel", "ChannelTable"]

logger = logging.getLogger("theater_py.actor")

BUFFER_SIZE: Final = 64
"""How many messages an actor may send ahead of its caller by default; then ``send``
blocks until the caller reads (an actor sets its own with ``channel_buffer``)."""

SEND_TIMEOUT: Final = 60.0
"""Seconds an actor's ``send`` waits for room in a full buffer when it names no timeout."""

_END: Final = object()
"""What a wait gives when the channel ended without an error."""
_NOTHING: Final = object()
"""What a wait gives when no message came in time."""


class _Digest:
    """What passed one way: how many messages, their bytes and SHA-256.

    The bytes are each message's canonical JSON (sorted keys, no spaces, UTF-8) followed
    by a newline, so the digest is that of the JSON lines ``request --stream`` prints.
    """

    __slots__ = ("bytes", "count", "sha256")

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.sha256 = hashlib.sha256()

    def add(self, line: bytes) -> None:
        self.count += 1
        self.bytes += len(line)
        self.sha256.update(line)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "sha256": self.sha256.hexdigest()}


def _line(wire: Any) -> bytes:
    """The canonical JSON line of a message, as the digest counts it."""
    return canonical_json(wire).encode() + b"\n"


class _Link:
    """What both ends of one channel share: the buffer, its state and its digests."""

    def __init__(self, cell: ActorCell, encoded: bool) -> None:
        self.id = str(uuid.uuid4())
        self.cell = cell
        self.encoded = encoded
        """The caller reads JSON values (``open_channel_json``) rather than objects."""
        self.capacity: int = cell.actor_class.channel_buffer
        lock = threading.Lock()
        self._not_empty = threading.Condition(lock)
        self._not_full = threading.Condition(lock)
        self._items: collections.deque[Any] = collections.deque()
        self.closed = threading.Event()
        self.closed_by: str | None = None
        """Who ended it first: ``actor``, ``caller``, ``crash`` or ``stop``."""
        self.error: BaseException | None = None
        """Why the caller's reading fails once the buffer is drained (the actor's end)."""
        self.to_caller = _Digest()
        self.to_actor = _Digest()
        self.owner: ChannelTable | None = None
        """The incarnation's table that accepted the open; set on its thread."""
        self.opening: concurrent.futures.Future[Any] | None = None
        """The caller's wait for the actor's answer to the open."""
        self.finished = False
        """Its close is recorded: nothing more reaches the actor."""
        self.accepted = False
        """The actor accepted the open while its caller still waited."""
        self.farewell: tuple[Any, bytes] | None = None
        """The message (and its line) the caller reads last if the actor's end closes it."""
        self.actor_side = ActorChannel(self)

    # -- the buffer ----------------------------------------------------------------------

    def put(self, item: Any, line: bytes, timeout: float | None) -> bool:
        wait = SEND_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._not_full:
            while True:
                if self.closed.is_set():
                    return False
                if len(self._items) < self.capacity:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(
                        f"the caller of channel {self.id} read nothing within {wait} s"
                    )
                self._not_full.wait(remaining)
            self._items.append(item)
            self.to_caller.add(line)
            self._not_empty.notify()
            return True

    def get(self, wait: float) -> Any:
        """Take the next message: ``_NOTHING`` after ``wait`` s, ``_END`` once ended.

        Raises:
            ActorFailed: the actor crashed (after the messages it sent before).
            ActorStopped: the actor stopped (likewise).
        """
        deadline = time.monotonic() + wait
        with self._not_empty:
            while not self._items:
                if self.closed.is_set():
                    if self.error is not None:
                        raise self.error
                    return _END
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _NOTHING
                self._not_empty.wait(remaining)
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def end(self, by: str, error: BaseException | None = None, *, drop: bool = False) -> bool:
        """Close the buffer and wake both sides; say whether this call closed it."""
        with self._not_empty:
            if self.closed.is_set():
                return False
            self.closed_by = by
            self.error = error
            if drop:
                self._items.clear()
            elif self.farewell is not None and by in ("stop", "crash"):
                item, line = self.farewell
                self._items.append(item)  # past a full buffer: it is the last one
                self.to_caller.add(line)
            self.closed.set()
            self._not_empty.notify_all()
            self._not_full.notify_all()
            return True

    def claim_finish(self) -> bool:
        """Mark the channel finished; ``True`` for the one caller that does."""
        with self._not_empty:
            if self.finished:
                return False
            self.finished = True
            return True


class ActorChannel:
    """The actor's end of a channel: send messages to the caller, close it, watch it.

    Every method is thread-safe: a pool thread may stream into the channel while the
    actor handles its next message. One object per channel, so an actor may keep it.
    """

    __slots__ = ("_link",)

    def __init__(self, link: _Link) -> None:
        self._link = link

    @property
    def id(self) -> str:
        """The channel's id (a uuid4 string), as its chain events name it."""
        return self._link.id

    @property
    def closed(self) -> threading.Event:
        """Set once the channel is over: either side closed it, or the actor ended.

        A producer thread watches it to stop early (``while not channel.closed.is_set()``).
        """
        return self._link.closed

    def send(self, message: Any, timeout: float | None = None) -> bool:
        """Send one message to the caller, in order; wait while the buffer is full.

        Args:
            message: an instance of the actor's ``channel_type``, or a JSON value.
            timeout: seconds to wait for room in a full buffer (default 60).

        Returns:
            ``True`` once the message is queued; ``False`` when the channel is closed
            and the message is dropped. Not an exception: the caller may close the
            channel at any moment, and a handler racing it must not crash the actor.

        Raises:
            RequestTimeout: the caller read nothing within the timeout.
            ReplyEncodeError: the message is not JSON (or not the ``channel_type``).
        """
        link = self._link
        try:
            wire = serde.unstructure(message, link.cell.actor_class.channel_type)
            line = _line(wire)
        except (TypeError, ValueError) as exc:
            raise ReplyEncodeError(
                f"a message on channel {link.id} is not JSON: {type(exc).__name__}: {exc}"
            ) from None
        return link.put(wire if link.encoded else message, line, timeout)

    def set_farewell(self, message: Any) -> None:
        """Set the message the caller reads last if the actor's end (a stop or a crash)
        closes the channel, before its ``ActorStopped`` / ``ActorFailed``: a producer
        that cannot run on (a stream) says why it ends. It is sent then even into a full
        buffer; a later call replaces it; ``None`` removes it.

        Raises:
            ReplyEncodeError: as :meth:`send`.
        """
        link = self._link
        if message is None:
            link.farewell = None
            return
        wire = self._encode(message)
        link.farewell = (wire if link.encoded else message, _line(wire))

    def _encode(self, message: Any) -> Any:
        link = self._link
        try:
            wire = serde.unstructure(message, link.cell.actor_class.channel_type)
            _line(wire)
        except (TypeError, ValueError) as exc:
            raise ReplyEncodeError(
                f"a message on channel {link.id} is not JSON: {type(exc).__name__}: {exc}"
            ) from None
        return wire

    def close(self) -> None:
        """End the channel: the caller reads what was sent, then its iteration ends."""
        link = self._link
        if link.end("actor") and link.owner is not None:
            link.owner.finish(link)

    def __repr__(self) -> str:
        return f"<ActorChannel {self._link.id} of {self._link.cell.name}>"


class Channel:
    """The caller's end of a channel: iterate the actor's messages, send, close.

    Iteration yields the actor's messages in order and ends when the actor closes the
    channel. Each wait for the next message is bounded by the timeout the channel was
    opened with: past it, :class:`~theater_py.errors.RequestTimeout`. The actor crashing
    raises :class:`~theater_py.errors.ActorFailed`; its stop,
    :class:`~theater_py.errors.ActorStopped`. Leaving a ``with`` block, breaking out of
    the loop, or an error out of it closes the channel.
    """

    __slots__ = ("_link", "_timeout")

    def __init__(self, link: _Link, timeout: float) -> None:
        self._link = link
        self._timeout = timeout

    @property
    def id(self) -> str:
        """The channel's id (a uuid4 string), as its chain events name it."""
        return self._link.id

    @property
    def closed(self) -> bool:
        """Whether the channel is over (either side closed it, or the actor ended)."""
        return self._link.closed.is_set()

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self._link.get(self._timeout)
                if item is _END:
                    return
                if item is _NOTHING:
                    raise RequestTimeout(
                        f"actor {self._link.cell.name!r} sent nothing on channel "
                        f"{self._link.id} within {self._timeout} s"
                    )
                yield item
        finally:
            self.close()

    def _poll(self, wait: float) -> Any:
        """Wait up to ``wait`` s without closing: a message, ``_NOTHING`` or ``_END``."""
        return self._link.get(wait)

    def send(self, message: Any) -> None:
        """Queue a message for the actor's ``handle_channel_message``, without waiting.

        Raises:
            ChannelClosed: the channel is closed.
            ActorFailed: the actor crashed, which ended the channel.
            ActorStopped: the actor stopped, which ended the channel.
        """
        from theater_py._cell import Envelope, Kind

        link = self._link
        if link.closed.is_set():
            if link.error is not None:
                raise link.error
            raise ChannelClosed(f"channel {link.id} is closed ({link.closed_by})")
        link.cell.deliver(Envelope(Kind.CHANNEL, (link, message), link.encoded))

    def close(self) -> None:
        """Close the channel (again is harmless): the actor's ``handle_channel_close`` runs.

        Messages the actor sent that were not read yet are dropped, and a producer
        blocked on the full buffer is released.
        """
        from theater_py._cell import Envelope, Kind

        link = self._link
        if link.end("caller", drop=True):
            with contextlib.suppress(ActorStopped):
                link.cell.deliver(Envelope(Kind.CHANNEL_CLOSE, (link, None)))

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Channel {self._link.id} to {self._link.cell.name}>"


def open_channel(cell: ActorCell, message: Any, encoded: bool, timeout: float) -> Channel:
    """Ask the actor to open a channel and wait for its answer (``ActorHandle``'s work)."""
    from theater_py._cell import Envelope, Kind

    link = _Link(cell, encoded)
    reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
    link.opening = reply
    envelope = Envelope(Kind.OPEN, (link, message), encoded, reply)
    cell.deliver(envelope)
    try:
        reply.result(timeout)
    except concurrent.futures.TimeoutError:
        if reply.cancel() or not reply.done():
            # Closed first, so that the actor's table knows why a deferred open ends.
            Channel(link, timeout).close()
            envelope.abandon()
            raise RequestTimeout(
                f"actor {cell.name!r} did not answer the channel's open within {timeout} s"
            ) from None
        reply.result(0)
    return Channel(link, timeout)


class ChannelTable:
    """One incarnation's open channels; handles the channel envelopes on its thread."""

    def __init__(self, process: _ActorProcess) -> None:
        self._process = process
        self._open: dict[str, _Link] = {}

    def _decode(self, message: Any, encoded: bool) -> Any:
        request_type = self._process.cell.actor_class.request_type
        if encoded and request_type is not None:
            return serde.structure(message, request_type)
        return message

    def open(self, envelope: Envelope) -> None:
        link, message = envelope.message
        reply = envelope.reply
        assert reply is not None
        if not reply.set_running_or_notify_cancel():
            return  # the caller timed out before the actor reached it
        process = self._process
        chain = process.cell.chain
        try:
            decoded = self._decode(message, envelope.encoded)
        except MessageDecodeError as error:
            chain.record("channel-refused", {"channel": link.id, "reason": str(error)}, str(error))
            link.end("actor")
            reply.set_exception(error)
            return
        wire = message if envelope.encoded else serde.unstructure(decoded)
        link.owner = self
        self._open[link.id] = link
        chain.record("channel-open", {"channel": link.id, "message": wire}, "channel opened")
        try:
            answer = process.instance.handle_channel_open(process.context, link.actor_side, decoded)
        except Exception as exc:  # noqa: BLE001 -- raising is how an actor refuses
            self._refuse(link, str(exc) or type(exc).__name__)
            return
        if isinstance(answer, concurrent.futures.Future):
            envelope.defer(answer)
            answer.add_done_callback(functools.partial(self._decided, link))
            return
        self._decide(link, answer)

    def _decided(self, link: _Link, future: concurrent.futures.Future[Any]) -> None:
        # Runs on whichever thread resolved the future.
        if future.cancelled():
            if self._gave_up(link):
                self._timed_out(link)
            else:
                self._refuse(link, "the open was cancelled")
            return
        error = future.exception()
        if error is not None:
            self._refuse(link, str(error) or type(error).__name__)
            return
        self._decide(link, future.result())

    def _decide(self, link: _Link, answer: Any) -> None:
        if self._gave_up(link):
            self._timed_out(link)
            return
        if answer is True:
            link.accepted = True
            reply = link.opening
            assert reply is not None
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                reply.set_result(True)
            return
        if answer is False:
            self._refuse(link, "refused")
            return
        self._refuse(
            link, f"handle_channel_open returned {type(answer).__name__}, not True or False"
        )

    @staticmethod
    def _gave_up(link: _Link) -> bool:
        """Whether the caller stopped waiting (its timeout) before the actor answered."""
        return link.closed_by == "caller" and not link.accepted

    def _timed_out(self, link: _Link) -> None:
        """Record, once, that the caller's wait for the actor's answer ran out."""
        self._open.pop(link.id, None)
        if link.claim_finish():
            self._process.cell.chain.record(
                "channel-open-timeout", {"channel": link.id}, "the caller stopped waiting"
            )

    def _refuse(self, link: _Link, reason: str) -> None:
        if self._gave_up(link):
            self._timed_out(link)
            return
        self._open.pop(link.id, None)
        link.end("actor")
        link.claim_finish()  # a refused channel has no close to record
        reply = link.opening
        assert reply is not None
        if reply.done():
            return  # the actor ended first, and its caller knows
        self._process.cell.chain.record(
            "channel-refused", {"channel": link.id, "reason": reason}, f"refused: {reason}"
        )
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            reply.set_exception(ChannelRefused(self._process.cell.name, reason))

    def _live(self, link: _Link) -> bool:
        return link.owner is self and not link.finished

    def message(self, envelope: Envelope) -> None:
        """Hand a caller's message to ``handle_channel_message`` (dropped once finished)."""
        link, message = envelope.message
        if not self._live(link):
            return  # the actor closed the channel, or a restart ended it
        process = self._process
        try:
            decoded = self._decode(message, envelope.encoded)
        except MessageDecodeError as error:
            process.cell.chain.record(
                "channel-message-rejected", {"channel": link.id, "error": str(error)}, str(error)
            )
            logger.warning(
                "actor %s dropped a channel message that does not decode: %s",
                process.cell.name,
                error,
            )
            return
        wire = message if envelope.encoded else serde.unstructure(decoded)
        link.to_actor.add(_line(wire))
        process.instance.handle_channel_message(process.context, link.actor_side, decoded)

    def close(self, envelope: Envelope) -> None:
        """The caller closed the channel: record it, run ``handle_channel_close``."""
        link, _ = envelope.message
        if not self._live(link):
            return
        if self._gave_up(link):  # an open that timed out: the actor never accepted it
            self._timed_out(link)
            return
        self.finish(link)
        process = self._process
        process.instance.handle_channel_close(process.context, link.actor_side)

    def finish(self, link: _Link) -> None:
        """Forget a closed channel and record its close and digest, once."""
        self._open.pop(link.id, None)
        if not link.claim_finish():
            return
        opening = link.opening
        if link.error is not None and opening is not None and not opening.done():
            # The actor ended before it accepted the channel (a deferred open).
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                opening.set_exception(link.error)
        data = {
            "channel": link.id,
            "closed_by": link.closed_by,
            "error": None if link.error is None else str(link.error),
            "to_caller": link.to_caller.to_json(),
            "to_actor": link.to_actor.to_json(),
        }
        count = link.to_caller.count
        self._process.cell.chain.record(
            "channel-close", data, f"channel closed ({link.closed_by}): {count} messages sent"
        )

    def end_all(self, error: BaseException) -> None:
        """End every channel of an incarnation that is over; their callers get ``error``."""
        by = "crash" if not isinstance(error, ActorStopped) else "stop"
        for link in self._open.copy().values():  # producer threads may close channels meanwhile
            link.end(by, error)
            try:
                self.finish(link)
            except Exception:  # its runtime closed the chain's database; the end counts
                logger.warning("cannot record the end of channel %s", link.id, exc_info=True)
