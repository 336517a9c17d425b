"""The worker side: one Ray actor (a *Host*) per incarnation, holding the real actor.

The driver's incarnation thread calls the Host once per mailbox message, with the message
as JSON text; the Host runs the actor's handler with a context of its own (the same
:class:`~theater_py.context.ActorContext`, over a stand-in cell whose chain is a buffer)
and answers with an :data:`Outcome`: what happened, the reply as JSON text, and the events
recorded meanwhile, which the driver appends to the actor's chain. Capabilities run here,
on the worker's node: an ``environment`` read sees this node's variables, and the value
never leaves the handler (only the variable's name is recorded).

Every exception is caught here and travels as its class name and message (never a
traceback, never a pickle), exactly the text a local crash records.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, TypeVar, cast

import ray

from theater_py import serde
from theater_py._cell import ExitReason
from theater_py.actor import IGNORE
from theater_py.channel import _END, _NOTHING, _Link
from theater_py.context import ActorContext
from theater_py.errors import CapabilityDenied, MessageDecodeError

if TYPE_CHECKING:
    from collections.abc import Callable

    from theater_py.actor import Actor
    from theater_py.manifest import Manifest

__all__ = ["Host", "Outcome"]

logger = logging.getLogger("theater_py.actor")

Outcome = tuple[str, Any, list[list[Any]], list[Any] | None]
"""``(status, value, events, exit)``: ``status`` is ``ok`` (``value`` is the reply's JSON
text), ``deferred`` (``value`` is a token for :meth:`Host.await_reply`), ``ignore``,
``crash`` or ``error`` (``value`` is ``[class name, message]``), ``refused`` (a decode
error the actor re-raised: ``[path, reason]``) or ``cancelled``. ``events`` are
``[event_type, data JSON text, description]``; ``exit`` is ``[kind, error]`` when the
actor called ``ctx.stop``."""


PULL_BATCH = 256
"""The most channel messages one pull carries back."""
REPLY_SLICE = 5.0
"""Seconds one :meth:`Host.await_reply` waits before answering ``waiting`` (the driver
then asks again): a slow deferred reply holds a thread of the ``replies`` group for this
long at most, so more pending replies than the group has threads take turns."""


def dumps(value: Any) -> str:
    """Write a JSON value as compact text (the message boundary)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


EVENT_CAP = 10_000
"""The most events a Host keeps for the driver; past it they are dropped and counted."""
DROPPED_EVENT = "events-dropped"
"""The event that records, in the actor's chain, events a Host dropped past
:data:`EVENT_CAP` (its data: ``dropped``, how many, and ``cap``)."""


class EventBuffer:
    """The chain a worker-side context records into: kept until the driver takes them.

    The driver takes them with the outcome of each call, and between calls with
    :meth:`Host.flush_events` (a long poll), so a background thread's events reach the
    chain without waiting for the next message. At most :data:`EVENT_CAP` wait: past it,
    events are dropped and the next drain ends with one :data:`DROPPED_EVENT` saying how
    many (the chain records the gap; it is never unbounded memory on the worker).
    """

    def __init__(self, cap: int = EVENT_CAP) -> None:
        self._cap = cap
        self._ready = threading.Condition(threading.Lock())
        self._events: list[list[Any]] = []
        self._dropped = 0
        self._closed = False

    def record(self, event_type: str, data: Any = None, description: str = "") -> None:
        """Keep an event for the driver's chain (``None``: it is hashed there).

        Raises:
            TypeError: ``data`` is not JSON (the message names ``event_type``).
        """
        try:
            text = dumps(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"event {event_type!r}: {exc}") from None
        with self._ready:
            if len(self._events) >= self._cap:
                self._dropped += 1
            else:
                self._events.append([event_type, text, description])
            self._ready.notify_all()

    def drain(self) -> list[list[Any]]:
        """Take every event recorded so far, oldest first (and the record of a drop)."""
        with self._ready:
            events, self._events = self._events, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            data = dumps({"dropped": dropped, "cap": self._cap})
            why = f"{dropped} events dropped on the Ray worker: {self._cap} waited for the driver"
            events.append([DROPPED_EVENT, data, why])
        return events

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s until an event is kept (or dropped), or :meth:`close`."""
        with self._ready:
            self._ready.wait_for(lambda: self._events or self._dropped or self._closed, timeout)

    def close(self) -> None:
        """End every :meth:`wait` (the Host stopped)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class _WorkerRuntime:
    """What a worker-side context may reach of a runtime: the store, no spawning."""

    def __init__(self, store: Any) -> None:
        self.content_store = store

    def start_actor(self, *_args: Any, **_kwargs: Any) -> Any:
        raise CapabilityDenied(
            "supervisor", "spawn is not available on a Ray worker (declare the child instead)"
        )


class _WorkerCell:
    """The few attributes of a cell an :class:`ActorContext` reads, on a worker."""

    def __init__(
        self, name: str, actor_id: str, manifest: Manifest, store: Any, actor_class: type[Actor]
    ) -> None:
        self.name = name
        self.actor_class = actor_class  # a channel's buffer size and message type
        self.id = actor_id
        self.manifest = manifest
        self.chain = EventBuffer()
        self.runtime = _WorkerRuntime(store)
        self.exit: list[Any] | None = None

    def request_exit(self, reason: ExitReason, _origin: Any = None) -> None:
        self.exit = [reason.kind, reason.error]

    def adopt(self, _child: str) -> None:  # spawn is refused before this is reached
        raise CapabilityDenied("supervisor", "spawn is not available on a Ray worker")


_F = TypeVar("_F", bound="Callable[..., Any]")


def _group(name: str) -> Callable[[_F], _F]:
    """Ray's ``@ray.method(concurrency_group=name)``, typed."""
    return cast("Callable[[_F], _F]", ray.method(concurrency_group=name))


def _error(exc: BaseException) -> list[str]:
    return [type(exc).__name__, str(exc)]


class Host:
    """One incarnation of one actor, in a Ray actor on some node.

    The mailbox methods (``init``, ``request``, ``send``, ``decode_error``, ``stop``) run
    in Ray's default concurrency group of one thread, and the driver calls them one at a
    time. The calls that wait run in groups of their own, so none can take the threads
    another needs: ``await_reply`` in ``replies``, ``channel_pull`` in ``channels``,
    ``cancel`` in ``cancel``, ``flush_events`` in ``events``, ``watch`` in ``watch``.
    """

    def __init__(self, component: str, name: str, actor_id: str, manifest: Manifest, store: Any):
        from theater_py.runtime import load_component

        # A constructor that raises would be reported by Ray as a dead actor: keep the
        # error for init() to report as the failed start it is.
        self._failed: BaseException | None = None
        try:
            self._class: type[Actor] = load_component(component)
            self._instance = self._class()
        except BaseException as exc:  # noqa: BLE001 -- reported by init()
            self._failed = exc
            self._class = Actor
            self._instance = Actor()
        self._cell = _WorkerCell(name, actor_id, manifest, store, self._class)
        self._ctx = ActorContext(self._cell)  # type: ignore[arg-type]
        self._deferred: dict[int, tuple[concurrent.futures.Future[Any], bool]] = {}
        self._links: dict[str, _Link] = {}
        self._tokens = itertools.count(1)
        self._stopped = threading.Event()

    def _outcome(self, status: str, value: Any = None) -> Outcome:
        exit_reason, self._cell.exit = self._cell.exit, None
        return status, value, self._cell.chain.drain(), exit_reason

    def _crash(self, exc: BaseException, phase: str) -> Outcome:
        logger.error("actor %s crashed in %s on a Ray worker", self._cell.name, phase, exc_info=exc)
        return self._outcome("crash", _error(exc))

    def _reply(self, result: Any, typed: bool = True) -> Outcome:
        """The outcome of a handler's result; ``typed``: a reply of ``response_type``."""
        if isinstance(result, concurrent.futures.Future):
            token = next(self._tokens)
            self._deferred[token] = (result, typed)
            return self._outcome("deferred", token)
        try:
            response_type = self._class.response_type if typed else None
            return self._outcome("ok", dumps(serde.unstructure(result, response_type)))
        except (TypeError, ValueError) as exc:
            return self._outcome("error", _error(exc))

    def _decode(self, text: str) -> Any:
        value = json.loads(text)
        request_type = self._class.request_type
        return value if request_type is None else serde.structure(value, request_type)

    def init(self, state: str) -> Outcome:
        """Run the actor's ``init`` with its merged init state (JSON text)."""
        if self._failed is not None:
            return self._crash(self._failed, "init")
        try:
            result = self._instance.init(self._ctx, json.loads(state))
        except BaseException as exc:  # noqa: BLE001 -- a failed init is the driver's to report
            return self._crash(exc, "init")
        return self._outcome("ignore" if isinstance(result, str) and result == IGNORE else "ok")

    def request(self, message: str) -> Outcome:
        """Handle one request (its JSON text); the reply comes back as JSON text."""
        try:
            return self._reply(self._instance.handle_request(self._ctx, self._decode(message)))
        except BaseException as exc:  # noqa: BLE001 -- every failure is a crash, as locally
            return self._crash(exc, "message")

    def send(self, message: str) -> Outcome:
        """Handle one fire-and-forget message."""
        try:
            self._instance.handle_send(self._ctx, self._decode(message))
        except BaseException as exc:  # noqa: BLE001 -- every failure is a crash, as locally
            return self._crash(exc, "message")
        return self._outcome("ok")

    def decode_error(self, path: str, reason: str) -> Outcome:
        """Ask the actor for its reply to a request that did not decode (in the driver)."""
        try:
            result = self._instance.on_decode_error(self._ctx, MessageDecodeError(path, reason))
        except MessageDecodeError as refused:
            return self._outcome("refused", [refused.path, refused.reason])
        except BaseException as exc:  # noqa: BLE001 -- every failure is a crash, as locally
            return self._crash(exc, "message")
        return self._reply(result)

    @_group("replies")
    def await_reply(self, token: int, wait: float = REPLY_SLICE) -> Outcome:
        """Wait up to ``wait`` s for a deferred reply (a future the handler returned).

        ``waiting`` when it is not done yet: the driver asks again (its outcome carries
        the events recorded meanwhile, so they reach the chain while the reply is slow).
        """
        entry = self._deferred.get(token)
        if entry is None:
            return self._outcome("cancelled")
        future, typed = entry
        # Not future.result(wait): a handler's own TimeoutError is its reply's error.
        concurrent.futures.wait([future], timeout=wait)
        if not future.done():
            return self._outcome("waiting")
        self._deferred.pop(token, None)
        if future.cancelled():
            return self._outcome("cancelled")
        error = future.exception()
        if error is not None:
            return self._outcome("error", _error(error))
        return self._reply(future.result(), typed)

    @_group("cancel")
    def cancel(self, token: int) -> None:
        """The caller gave up: cancel the deferred work, if it can still be cancelled."""
        entry = self._deferred.pop(token, None)
        if entry is not None:
            entry[0].cancel()

    # -- channels: the caller's side is in the driver; the actor's buffer is here ---------

    def channel_open(self, channel_id: str, message: str) -> Outcome:
        """Offer the actor a channel; ``ok`` carries its answer (JSON ``true``/``false``).

        An exception from ``handle_channel_open`` is a refusal (``error``), not a crash.
        """
        link = _Link(self._cell, True)  # type: ignore[arg-type]
        link.id = channel_id  # the driver's id, as the chain names it
        self._links[channel_id] = link
        try:
            answer = self._instance.handle_channel_open(
                self._ctx, link.actor_side, self._decode(message)
            )
        except Exception as exc:  # noqa: BLE001 -- raising is how an actor refuses
            self._links.pop(channel_id, None)
            return self._outcome("error", _error(exc))
        return self._reply(answer, typed=False)

    def channel_message(self, channel_id: str, message: str) -> Outcome:
        """Hand the actor a message its caller sent on a channel."""
        link = self._links.get(channel_id)
        if link is None or link.closed.is_set():
            return self._outcome("ok")
        try:
            self._instance.handle_channel_message(self._ctx, link.actor_side, self._decode(message))
        except BaseException as exc:  # noqa: BLE001 -- every failure is a crash, as locally
            return self._crash(exc, "message")
        return self._outcome("ok")

    def channel_close(self, channel_id: str) -> Outcome:
        """The caller closed a channel: end it here, run ``handle_channel_close``."""
        link = self._links.pop(channel_id, None)
        if link is None:
            return self._outcome("ok")
        link.end("caller", drop=True)
        try:
            self._instance.handle_channel_close(self._ctx, link.actor_side)
        except BaseException as exc:  # noqa: BLE001 -- every failure is a crash, as locally
            return self._crash(exc, "message")
        return self._outcome("ok")

    @_group("channels")
    def channel_pull(self, channel_id: str, wait: float) -> Outcome:
        """Take what the actor sent on a channel (waiting up to ``wait`` s for the first).

        ``ok`` carries ``[messages as JSON text, ended, farewell JSON text or None]``.
        """
        link = self._links.get(channel_id)
        if link is None:
            return self._outcome("ok", [[], True, None])
        items: list[str] = []
        ended = False
        item = link.get(wait)
        while item is not _NOTHING and len(items) < PULL_BATCH:
            if item is _END:
                ended = True
                self._links.pop(channel_id, None)
                break
            items.append(dumps(item))
            item = link.get(0)
        farewell = link.farewell
        return self._outcome("ok", [items, ended, None if farewell is None else dumps(farewell[0])])

    @_group("events")
    def flush_events(self, wait: float) -> tuple[list[list[Any]], bool]:
        """Return the events recorded since the last outcome, once there is one (or after
        ``wait`` s, or at the stop), and whether the Host is stopped: the driver keeps one
        such call pending until then, so events a background thread records reach the
        chain while the actor gets no message."""
        self._cell.chain.wait(wait)
        return self._cell.chain.drain(), self._stopped.is_set()

    @_group("watch")
    def watch(self, seconds: float) -> bool:
        """Return when the Host is stopped (``True``) or after ``seconds`` (``False``; the
        driver then watches again): the driver's way to see it die while idle."""
        return self._stopped.wait(seconds)

    def where(self) -> dict[str, Any]:
        """Return the Ray node and the process this Host runs in (diagnostics, bench)."""
        return {"node": str(ray.get_runtime_context().get_node_id()), "pid": os.getpid()}

    def stop(self) -> Outcome:
        """Run the actor's ``on_stop``, release its capabilities, end the watch."""
        self._ctx.stopping.set()
        for link in list(self._links.values()):
            link.end("stop", drop=True)
        self._links.clear()
        try:
            self._instance.on_stop(self._ctx)
        except BaseException:
            logger.exception("on_stop of actor %s failed", self._cell.name)
        try:
            self._ctx.close()
        finally:
            self._stopped.set()
            self._cell.chain.close()
        return self._outcome("ok")


CONCURRENCY_GROUPS = {"replies": 64, "channels": 64, "cancel": 2, "events": 1, "watch": 1}
"""Threads of each group of a Host: a channel pull or a cancel never waits behind
deferred replies, and a watch never waits behind either."""

RayHost = ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(Host)
"""The Ray actor class of :class:`Host`."""
