"""An actor's lasting identity, and the Pykka thread that runs each incarnation.

A *cell* is what a name and a handle point to. It outlives crashes: each
incarnation is a fresh Pykka actor (a stopped Pykka actor can never run again),
and the cell hands the messages still queued in a dead incarnation's inbox to
the next one, in order, as Akka's mailbox survives a restart. Messages that
arrive while no incarnation runs wait in the cell; they fail with
:class:`~theater_py.errors.ActorStopped` at once if the actor is not restarted.

Every delivery takes the cell's lock, and so does every change of incarnation,
so no message can slip into an inbox that is being handed over. An incarnation's
inbox (:class:`_Inbox`) hands its envelopes over in one step under its own lock,
and a handler begins only under that lock, so an envelope is handled by one
incarnation, exactly once, or failed: never run twice, never lost, never reordered.

Python cannot kill a thread. A stop that times out (or a ``brutal_kill``) takes
the incarnation's queue away at once (to the next incarnation, or failed) and
flags the handler still running: its ``ctx.stopping`` is set, its caller is
answered with :class:`~theater_py.errors.ActorStopped`, and its late reply is
dropped with a warning. The thread itself ends when that handler returns.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import enum
import functools
import logging
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import attrs
import pykka

from theater_py import serde
from theater_py.actor import IGNORE
from theater_py.channel import ChannelTable
from theater_py.context import ActorContext
from theater_py.errors import (
    ActorFailed,
    ActorStopped,
    MessageDecodeError,
    ReplyEncodeError,
    StoreError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from theater_py.actor import Actor
    from theater_py.chain import EventChain
    from theater_py.manifest import Manifest
    from theater_py.runtime import Runtime
    from theater_py.supervisor import Supervisor

__all__ = ["LONGEST_WAIT", "ActorCell", "CellStatus", "Envelope", "ExitReason"]

logger = logging.getLogger("theater_py.actor")

LONGEST_WAIT = 3600.0
"""Seconds the longest wait lasts: a stop with ``timeout=None`` (a ``shutdown`` of
``infinity``) waits this long, then is handled as a stop that timed out."""


class Kind(enum.IntEnum):
    """What an envelope asks of the actor."""

    REQUEST = 0
    SEND = 1
    INIT = 2
    STOP = 3
    EXIT = 4
    CRASH = 5
    OPEN = 6
    CHANNEL = 7
    CHANNEL_CLOSE = 8


class ActorKilled(Exception):
    """The exit signal :meth:`ActorHandle.crash` sends, raised on the actor's thread."""


class Envelope:
    """One message in a mailbox, with the future its reply goes to."""

    __slots__ = ("abandoned", "encoded", "kind", "message", "reply", "work")

    def __init__(
        self,
        kind: Kind,
        message: Any,
        encoded: bool = False,
        reply: concurrent.futures.Future[Any] | None = None,
    ) -> None:
        self.kind = kind
        self.message = message
        self.encoded = encoded
        """The message is JSON to decode, and the reply must be JSON too."""
        self.reply = reply
        self.abandoned = False
        """The caller stopped waiting for the reply."""
        self.work: concurrent.futures.Future[Any] | None = None
        """The future a handler returned for a deferred reply."""

    def defer(self, work: concurrent.futures.Future[Any]) -> None:
        """Note the future the reply waits on; cancel it if the caller already left."""
        self.work = work
        if self.abandoned:
            work.cancel()

    def abandon(self) -> None:
        """The caller stops waiting: cancel the deferred work its reply waits on, if any.

        An actor that returns a future it can still cancel while it runs learns of it
        (through the future's done callbacks) and can drop the work.
        """
        self.abandoned = True
        work = self.work
        if work is not None:
            work.cancel()

    def give_up(self) -> bool:
        """The caller's wait for the reply ended: abandon the envelope unless it was answered.

        Returns:
            ``True`` if it was abandoned, ``False`` if the reply came meanwhile (read it).
        """
        reply = self.reply
        if reply is not None and not reply.cancel() and reply.done():
            return False
        self.abandon()
        return True

    def fail(self, error: BaseException) -> None:
        """Fail the envelope's caller, if it still waits."""
        reply = self.reply
        if reply is not None and not reply.done():
            # The caller may cancel meanwhile (it timed out): then nobody waits.
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                reply.set_exception(error)


@attrs.frozen
class ExitReason:
    """Why an incarnation ended, in OTP's terms."""

    kind: str
    """``normal`` (the actor stopped itself), ``shutdown`` (it was stopped, or exited
    with ``shutdown`` / ``("shutdown", term)``), or ``crash`` (any other reason)."""
    error: str | None = None
    """The crash, or the term of a ``("shutdown", term)`` exit."""

    @property
    def abnormal(self) -> bool:
        """Whether a ``transient`` child is restarted after this exit (OTP: any reason
        but ``normal``, ``shutdown`` and ``{shutdown, Term}``)."""
        return self.kind == "crash"

    def __str__(self) -> str:
        return self.kind if self.error is None else f"{self.kind}: {self.error}"


class _Delivery:
    """What Pykka's loop reads of an inbox item: its ``message`` and ``reply_to``.

    One per inbox, reused: only the incarnation's own thread takes from its inbox.
    """

    __slots__ = ("message", "reply_to")

    def __init__(self) -> None:
        self.message: Envelope | None = None
        self.reply_to: None = None


_WAKE = Envelope(Kind.STOP, None)
"""What a closed, empty inbox gives its thread: a stop that nobody waits on."""


class _Inbox:
    """One incarnation's inbox: Pykka's queue, plus an atomic hand-over.

    Pykka's thread takes an envelope with :meth:`get`, and its handler begins only
    through :meth:`begin`; :meth:`abandon` and :meth:`take_all` run under the same
    lock, so an envelope taken but not yet begun is handed over with the rest, in
    order, instead of being run by an incarnation that is being replaced. Nothing
    here blocks while holding the lock, and a closed inbox never blocks at all.
    """

    __slots__ = (
        "_cond",
        "_delivery",
        "_items",
        "_lock",
        "_taken",
        "_waiting",
        "closed",
        "flagged",
        "running",
    )

    def __init__(self) -> None:
        # The hot path takes the lock itself: `with self._cond` would add two Python
        # calls per use, and a notify (two more) only matters while the thread waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = False
        self._items: deque[Envelope] = deque()
        self._taken: Envelope | None = None
        self._delivery = _Delivery()
        self.running: Envelope | None = None
        """The envelope being handled."""
        self.flagged: Envelope | None = None
        """The envelope that was being handled when the inbox was abandoned."""
        self.closed = False

    def put(self, envelope: Envelope) -> None:
        with self._lock:
            self._items.append(envelope)
            if self._waiting:
                self._cond.notify()

    def get(self) -> _Delivery:
        """Wait for the next envelope (Pykka's loop); a closed inbox gives ``_WAKE``."""
        with self._lock:
            while not self._items:
                if self.closed:
                    self._taken = _WAKE
                    self._delivery.message = _WAKE
                    return self._delivery
                self._waiting = True
                try:
                    self._cond.wait()
                finally:
                    self._waiting = False
            envelope = self._taken = self._items.popleft()
        self._delivery.message = envelope
        return self._delivery

    def empty(self) -> bool:
        with self._lock:
            return not self._items

    def qsize(self) -> int:
        with self._lock:
            return len(self._items) + (self._taken is not None and self._taken is not _WAKE)

    def begin(self, envelope: Envelope) -> bool:
        """Start handling ``envelope``; ``False`` if it was handed over meanwhile."""
        with self._lock:
            if self._taken is not envelope:
                return False
            self._taken = None
            self.running = envelope
            return True

    def end(self) -> None:
        self.running = None

    def take_all(self) -> list[Envelope]:
        """Take every envelope not yet begun, oldest first."""
        with self._lock:
            return self._take_all()

    def _take_all(self) -> list[Envelope]:
        taken = [self._taken] if self._taken is not None and self._taken is not _WAKE else []
        self._taken = None
        taken.extend(self._items)
        self._items.clear()
        return taken

    def abandon(self) -> tuple[list[Envelope], Envelope | None]:
        """Close the inbox: take what is not begun, flag the handler running, wake the thread."""
        with self._lock:
            taken = self._take_all()
            self.closed = True
            self.flagged = self.running
            self._cond.notify_all()
            return taken, self.flagged


def _keep(envelopes: list[Envelope]) -> list[Envelope]:
    """Drop the control envelopes that die with an incarnation; answer its stops."""
    kept: list[Envelope] = []
    for envelope in envelopes:
        kind = envelope.kind
        if kind is Kind.STOP:
            # A stop that raced a crash or a timeout: this incarnation is over either way.
            reply = envelope.reply
            if reply is not None and not reply.done():
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    reply.set_result(None)
        elif kind is Kind.INIT:  # its start is abandoned; the next incarnation has its own
            envelope.fail(ActorStopped("the incarnation was stopped before its init ran"))
        elif kind not in (Kind.EXIT, Kind.CRASH):
            kept.append(envelope)
    return kept


_Outcome = concurrent.futures.Future[bool]
"""Whether a stop for good finished in time, for every caller of that stop."""


class CellStatus(enum.Enum):
    """Where an actor is in its life."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"  # between incarnations: crashed or exited, awaiting its supervisor
    STOPPING = "stopping"
    STOPPED = "stopped"


class ActorCell:
    """The lasting identity of one actor: name, id, chain, mailbox and current incarnation."""

    def __init__(
        self,
        runtime: Runtime,
        name: str,
        *,
        manifest: Manifest,
        state: Any,
        actor_class: type[Actor],
        chain: EventChain,
        actor_id: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.id = actor_id or str(uuid.uuid4())
        self.manifest = manifest
        self.actor_class = actor_class
        self.chain = chain
        self._state = state
        self._lock = threading.Lock()
        self._process: _ActorProcess | None = None
        self._pending: deque[Envelope] = deque()
        self._children: list[str] = []
        self.status = CellStatus.NEW
        self.incarnation = 0
        self.started_at = 0.0
        """When the current incarnation started (``time.monotonic()``)."""
        self.exit_listener: Callable[[ActorCell, int, ExitReason], None] | None = None
        """Told of every exit of a running incarnation (the supervisor's hook)."""
        self.owner: Supervisor | None = None
        """The supervisor of this actor."""
        self.lineage: object = object()
        """What its handles address: this actor and those its supervisor starts in its
        place (a fresh start from its spec); never another actor started under its name."""
        self._stopped: _Outcome | None = None
        """The outcome of the stop for good under way (or done): whether it finished."""

    # -- delivery ---------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        """Queue an envelope for the current incarnation, or for the next one.

        Raises:
            ActorStopped: the actor will not run again.
        """
        with self._lock:
            process = self._process
            if process is not None:
                process.inbox.put(envelope)
                return
            if self.status in (CellStatus.STOPPING, CellStatus.STOPPED):
                raise ActorStopped(f"actor {self.name!r} is stopped")
            self._pending.append(envelope)

    def queued(self) -> int:
        """Count the messages waiting: in the inbox and between incarnations."""
        with self._lock:
            inbox = self._process.inbox.qsize() if self._process is not None else 0
            return inbox + len(self._pending)

    # -- incarnations -------------------------------------------------------------

    def start_incarnation(self) -> concurrent.futures.Future[None]:
        """Start a new incarnation: a fresh instance whose ``init`` runs first.

        Messages waiting for it follow ``init`` in its inbox, in order.

        Returns:
            A future resolved when ``init`` has run, or failed with
            :class:`~theater_py.errors.ActorFailed` when it raised.
        """
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_running_or_notify_cancel()
        try:
            instance = self.actor_class()
        except BaseException as exc:  # noqa: BLE001 -- a failing constructor is a failed start
            done.set_exception(ActorFailed(self.name, f"{type(exc).__name__}: {exc}"))
            return done
        with self._lock:
            if self.status in (CellStatus.STOPPING, CellStatus.STOPPED):
                done.set_exception(ActorStopped(f"actor {self.name!r} is stopped"))
                return done
            if self._process is not None:  # a supervisor bug; never run two at once
                done.set_exception(ActorFailed(self.name, "an incarnation is still running"))
                return done
            self.incarnation += 1
            self.started_at = time.monotonic()
            self.status = CellStatus.STARTING
            created: list[_ActorProcess] = []
            _ActorProcess.start(self, instance, self.incarnation, created)
            process = created[0]
            process.inbox.put(Envelope(Kind.INIT, copy.deepcopy(self._state), reply=done))
            while self._pending:
                process.inbox.put(self._pending.popleft())
            self._process = process
        self.chain.record(
            "actor-start",
            {"incarnation": self.incarnation, "component": self.manifest.component},
            f"incarnation {self.incarnation} of {self.manifest.component}",
        )
        return done

    def _mark_running(self, process: _ActorProcess) -> None:
        with self._lock:
            if self._process is process:
                self.status = CellStatus.RUNNING

    def _detach(self, process: _ActorProcess) -> tuple[bool, bool]:
        """Take the inbox of an ending incarnation; say if it was running (not starting),
        and if it was still the current one.

        Runs on the incarnation's own thread, before anyone hears of its end, so the
        next incarnation cannot start before the queue is back in the cell. An
        incarnation that is no longer current was replaced by :meth:`stop`, which
        stopped its children: the cell's children may be the next incarnation's now.
        """
        with self._lock:
            current = self._process is process
            was_running = current and self.status is CellStatus.RUNNING
            if current:
                self._process = None
                if self.status in (CellStatus.RUNNING, CellStatus.STARTING):
                    self.status = CellStatus.EXITED
            drained = _keep(process.inbox.take_all())
            stopped = self.status in (CellStatus.STOPPING, CellStatus.STOPPED)
            if self._process is not None and drained:  # cannot happen: see stop()
                logger.error("actor %s: a replaced incarnation still had mail", self.name)
                stopped = True
            if stopped:
                failed = drained + list(self._pending)
                self._pending.clear()
            else:
                failed = []
                self._pending.extendleft(reversed(drained))
        for envelope in failed:
            envelope.fail(ActorStopped(f"actor {self.name!r} stopped before handling it"))
        return was_running, current

    def _exited(
        self,
        process: _ActorProcess,
        reason: ExitReason,
        envelope: Envelope | None = None,
        error: BaseException | None = None,
    ) -> None:
        """End an incarnation that crashed or exited, then tell whoever waits on it.

        The queue is back in the cell first, the caller of the crashing message is
        answered, ``on_stop`` runs, and only then do the supervisor or the starter
        hear of it: a restart never overtakes the old incarnation's queue.
        """
        was_running, current = self._detach(process)
        if envelope is not None and error is not None and envelope.kind is not Kind.INIT:
            envelope.fail(error)
        if error is None:
            error = (
                ActorFailed(self.name, str(reason))
                if reason.abnormal
                else ActorStopped(f"actor {self.name!r} exited: {reason}")
            )
        process.finish(error)
        if current:
            self._stop_children()
        if envelope is not None and error is not None and envelope.kind is Kind.INIT:
            envelope.fail(error)
        listener = self.exit_listener
        if was_running and listener is not None:
            listener(self, process.incarnation, reason)

    def _ignored(self, process: _ActorProcess) -> None:
        """End an incarnation whose ``init`` returned IGNORE: no process, none to come.

        Unless :meth:`stop` replaced the incarnation meanwhile: then the stop (and the
        supervisor's restart behind it) decides, and the mailbox is kept for it.
        """
        _, current = self._detach(process)
        process.finish()
        if current:
            self._stop_children()
            self.terminate("its init returned ignore")

    def request_exit(self, reason: ExitReason, origin: Any = None) -> None:
        """Make the current incarnation exit with ``reason`` after its current message."""
        with self._lock:
            process = self._process
        if process is None or (origin is not None and origin is not process):
            return
        process.exit_reason = reason
        if threading.current_thread() is not process.thread:
            process.inbox.put(Envelope(Kind.EXIT, None))

    # -- stopping -------------------------------------------------------------------

    def stop(self, timeout: float | None, *, keep_mailbox: bool = False) -> bool:
        """Stop the current incarnation after the messages already in its inbox.

        Args:
            timeout: seconds to wait for the incarnation to finish; ``None`` waits
                :data:`LONGEST_WAIT`; ``0`` does not wait (OTP's ``brutal_kill``).
                When the time is up (at once for ``0``), the messages the incarnation
                has not begun are taken from it (see ``keep_mailbox``) and the handler
                still running, if any, is flagged: its ``ctx.stopping`` is set, its
                caller gets :class:`~theater_py.errors.ActorStopped` and its reply is
                dropped. Python cannot kill the thread; it ends when that handler returns.
            keep_mailbox: stop only this incarnation (a supervisor is restarting the
                actor with its siblings): waiting messages stay for the next one.
                Otherwise the actor stops for good and they fail with
                :class:`~theater_py.errors.ActorStopped`.

        Returns:
            Whether the incarnation finished within the timeout (``0``: always).
        """
        under_way, outcome = self._stop_under_way(keep_mailbox)
        if under_way is not None:  # OTP: a stop is idempotent; see the same one through
            return self._await_outcome(under_way, timeout)
        finished = False
        try:
            finished = self._stop(timeout, keep_mailbox)
        finally:
            if outcome is not None:
                outcome.set_result(finished)
        return finished

    def _stop(self, timeout: float | None, keep_mailbox: bool) -> bool:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        flagged: Envelope | None = None
        with self._lock:
            if self.status is CellStatus.STOPPED:
                return True
            process, self._process = self._process, None
            self.status = CellStatus.EXITED if keep_mailbox else CellStatus.STOPPING
            # An actor stopping itself cannot wait for its own thread: that would block it.
            own_thread = process is not None and threading.current_thread() is process.thread
            if process is None:
                done.set_result(None)
            else:
                if not keep_mailbox:
                    process.context.stopping.set()
                if timeout == 0 and not own_thread:
                    flagged = self._abandon(process, keep_mailbox)
                else:
                    process.inbox.put(Envelope(Kind.STOP, None, reply=done))
            pending: list[Envelope] = []
            if not keep_mailbox:
                pending = list(self._pending)
                self._pending.clear()
        for envelope in pending:
            envelope.fail(ActorStopped(f"actor {self.name!r} stopped before handling it"))
        finished = True
        if process is not None and flagged is None and timeout != 0 and not own_thread:
            finished, flagged = self._await_stop(process, done, timeout, keep_mailbox)
        if flagged is not None:
            self._flag(process, flagged)
            if process is not None:  # its handler runs on, but its channels end now
                process.channels.end_all(ActorStopped(f"actor {self.name!r} was stopped"))
        self._stop_children()
        if not keep_mailbox:
            with self._lock:
                self.status = CellStatus.STOPPED
            self.runtime.unregister(self)
        self.chain.record(
            "actor-stop", {"finished": finished, "restarting": keep_mailbox}, "stopped"
        )
        return finished

    def _stop_under_way(self, keep_mailbox: bool) -> tuple[_Outcome | None, _Outcome | None]:
        """Return the outcome of a stop for good already under way, if any, and the
        outcome this call is to give if it begins one (not for a restart's stop)."""
        with self._lock:
            if self.status is CellStatus.STOPPED:
                return None, None
            if self._stopped is not None:
                return self._stopped, None
            if keep_mailbox:
                return None, None
            self._stopped = concurrent.futures.Future()
            return None, self._stopped

    @staticmethod
    def _await_outcome(stopped: _Outcome, timeout: float | None) -> bool:
        """Wait, within ``timeout``, for the stop for good another caller began."""
        try:
            return stopped.result(LONGEST_WAIT if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            return False

    def _await_stop(
        self,
        process: _ActorProcess,
        done: concurrent.futures.Future[None],
        timeout: float | None,
        keep_mailbox: bool,
    ) -> tuple[bool, Envelope | None]:
        """Wait for an incarnation to stop; abandon it when the time is up."""
        try:
            done.result(LONGEST_WAIT if timeout is None else timeout)
        except concurrent.futures.TimeoutError:
            logger.warning("actor %s did not stop within %s s", self.name, timeout)
            with self._lock:
                return False, self._abandon(process, keep_mailbox)
        return True, None

    def _abandon(self, process: _ActorProcess, keep_mailbox: bool) -> Envelope | None:
        """Take an incarnation's queue away (cell lock held); return its running envelope."""
        taken, running = process.inbox.abandon()
        process.context.stopping.set()
        kept = _keep(taken)
        keep = keep_mailbox and self._process is None and self.status is CellStatus.EXITED
        if keep:
            self._pending.extendleft(reversed(kept))
        else:
            for envelope in kept:
                envelope.fail(ActorStopped(f"actor {self.name!r} stopped before handling it"))
        return running

    def _flag(self, process: _ActorProcess | None, running: Envelope) -> None:
        logger.warning(
            "actor %s: a handler of incarnation %s still runs after its stop; "
            "its reply will be dropped",
            self.name,
            process.incarnation if process is not None else "?",
        )
        running.fail(ActorStopped(f"actor {self.name!r} was stopped while handling it"))

    def terminate(self, reason: str) -> None:
        """Give the actor up for good: stop any incarnation, fail every waiting message."""
        pending: list[Envelope] = []
        with self._lock:
            if self.status is CellStatus.STOPPED:
                return
            running = self._process is not None
            if not running:
                self.status = CellStatus.STOPPED
                pending = list(self._pending)
                self._pending.clear()
        if running:  # never leave a live incarnation behind a cell that is given up
            self.stop(0)
            return
        for envelope in pending:
            envelope.fail(ActorStopped(f"actor {self.name!r} stopped: {reason}"))
        self.runtime.unregister(self)
        self.chain.record("actor-stop", {"reason": reason}, f"not restarted: {reason}")

    def adopt(self, child_name: str) -> None:
        """Stop the named actor whenever this actor's incarnation ends."""
        self._children.append(child_name)

    def _stop_children(self) -> None:
        children, self._children = self._children, []
        for child in reversed(children):
            self.runtime.stop_actor(child, missing_ok=True)

    def is_alive(self) -> bool:
        """Whether the actor runs or will run again."""
        return self.status not in (CellStatus.STOPPING, CellStatus.STOPPED)

    def __repr__(self) -> str:
        return f"<ActorCell {self.name} ({self.id}) {self.status.value}>"


class _ActorProcess(pykka.ThreadingActor):
    """One incarnation: a Pykka thread actor that never lets an exception reach Pykka.

    Pykka stops every actor on a ``BaseException`` in any of them and drops the
    inbox of a failed actor; catching everything here keeps a failure to the one
    actor and lets the cell hand the inbox on.
    """

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Inbox()

    def __init__(
        self, cell: ActorCell, instance: Actor, incarnation: int, created: list[_ActorProcess]
    ) -> None:
        super().__init__()
        created.append(self)  # Pykka's start() returns only a ref; the cell keeps the actor
        self.inbox: _Inbox = self.actor_inbox  # type: ignore[assignment]
        self.cell = cell
        self.instance = instance
        self.incarnation = incarnation
        self.context = ActorContext(cell, self)
        self.exit_reason: ExitReason | None = None
        self.thread: threading.Thread | None = None
        self._finished = False
        self._deferred: set[Envelope] = set()
        self.channels = ChannelTable(self)

    def on_start(self) -> None:
        self.thread = threading.current_thread()

    def on_receive(self, message: Any) -> None:
        envelope: Envelope = message
        inbox = self.inbox
        if not inbox.begin(envelope):
            return  # handed over to the next incarnation before it began here
        try:
            kind = envelope.kind
            if kind is Kind.REQUEST:
                self._request(envelope)
            elif kind is Kind.SEND:
                self._send(envelope)
            elif kind is Kind.INIT:
                self._init(envelope)
            elif kind is Kind.STOP:
                inbox.end()
                self._stop_requested(envelope)
                return
            elif kind is Kind.CRASH:
                raise ActorKilled(envelope.message)
            elif kind is Kind.OPEN:
                self.channels.open(envelope)
            elif kind is Kind.CHANNEL:
                self.channels.message(envelope)
            elif kind is Kind.CHANNEL_CLOSE:
                self.channels.close(envelope)
        except BaseException as exc:  # noqa: BLE001 -- contain every failure to this actor
            inbox.end()
            self._crash(envelope, exc)
            return
        inbox.end()
        if inbox.closed:  # abandoned while this handler ran: the incarnation is over
            self.finish()
        elif self.exit_reason is not None:
            reason = self.exit_reason
            self.cell.chain.record("actor-exit", {"reason": str(reason)}, f"exited: {reason}")
            self.cell._exited(self, reason)

    # -- message kinds ---------------------------------------------------------------

    def _init(self, envelope: Envelope) -> None:
        result = self.instance.init(self.context, envelope.message)
        if isinstance(result, str) and result == IGNORE:
            self.cell.chain.record("init", {"incarnation": self.incarnation}, "init: ignore")
            self.cell._ignored(self)
            self._resolve(envelope, IGNORE)
            return
        self.cell.chain.record("init", {"incarnation": self.incarnation}, "init done")
        self.cell._mark_running(self)
        self._resolve(envelope, None)

    def _resolve(self, envelope: Envelope, value: Any) -> None:
        """Answer a caller, unless the handler was flagged (its caller was answered)."""
        reply = envelope.reply
        assert reply is not None
        if envelope is self.inbox.flagged:
            logger.warning(
                "actor %s: dropped the reply of a handler that outlived its stop",
                self.cell.name,
            )
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            reply.set_result(value)

    def _decode(self, envelope: Envelope) -> Any:
        request_type = self.cell.actor_class.request_type
        if envelope.encoded and request_type is not None:
            return serde.structure(envelope.message, request_type)
        return envelope.message

    def _request(self, envelope: Envelope) -> None:
        reply = envelope.reply
        assert reply is not None
        if not reply.set_running_or_notify_cancel():
            return  # the caller timed out before the actor reached it
        chain = self.cell.chain
        try:
            message = self._decode(envelope)
        except MessageDecodeError as error:
            chain.record(
                "request-rejected", {"message": envelope.message, "error": str(error)}, str(error)
            )
            try:
                result = self.instance.on_decode_error(self.context, error)
            except MessageDecodeError as refused:
                reply.set_exception(refused)
                return
            self._answer(envelope, result)
            return
        wire = envelope.message if envelope.encoded else serde.unstructure(message)
        chain.record("request", wire, "request")
        result = self.instance.handle_request(self.context, message)
        if isinstance(result, concurrent.futures.Future):
            self._deferred.add(envelope)
            envelope.defer(result)
            result.add_done_callback(functools.partial(self._deferred_done, envelope))
            return
        self._answer(envelope, result)

    def _answer(self, envelope: Envelope, result: Any) -> None:
        """Encode and record a reply, and answer; a reply that is not JSON fails only its caller."""
        response_type = self.cell.actor_class.response_type
        try:
            wire = serde.unstructure(result, response_type)
            self.cell.chain.record("response", wire, "response")
        except (TypeError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.cell.chain.record("request-error", {"error": reason}, "reply is not JSON")
            logger.error("actor %s: its reply is not JSON: %s", self.cell.name, reason)
            envelope.fail(ReplyEncodeError(f"actor {self.cell.name!r} replied with {reason}"))
            return
        self._resolve(envelope, wire if envelope.encoded else result)

    def _deferred_done(self, envelope: Envelope, future: concurrent.futures.Future[Any]) -> None:
        # Runs on whichever thread resolved the future; the chain and the reply are thread-safe.
        self._deferred.discard(envelope)
        if envelope.reply is not None and envelope.reply.done():
            return
        # One look at the done future (each of its methods takes its lock).
        try:
            value = future.result()
        except BaseException as exc:  # noqa: BLE001 -- the work's failure, reported below
            if future.cancelled():  # the actor stopped and dropped the work before it ran
                self.cell.chain.record("request-error", {"error": "cancelled"}, "reply cancelled")
                envelope.fail(ActorStopped(f"actor {self.cell.name!r} stopped before answering"))
                return
            error = exc
        else:
            try:
                self._answer(envelope, value)
            except Exception as exc:  # noqa: BLE001 -- the caller must hear of any failure
                error = exc
            else:
                return
        reason = f"{type(error).__name__}: {error}"
        self.cell.chain.record("request-error", {"error": reason}, "deferred reply failed")
        logger.error("deferred reply of actor %s failed", self.cell.name, exc_info=error)
        envelope.fail(ActorFailed(self.cell.name, reason))

    def _send(self, envelope: Envelope) -> None:
        try:
            message = self._decode(envelope)
        except MessageDecodeError as error:
            self.cell.chain.record(
                "send-rejected", {"message": envelope.message, "error": str(error)}, str(error)
            )
            logger.warning(
                "actor %s dropped a send that does not decode: %s", self.cell.name, error
            )
            return
        wire = envelope.message if envelope.encoded else serde.unstructure(message)
        self.cell.chain.record("send", wire, "send")
        self.instance.handle_send(self.context, message)

    # -- endings ---------------------------------------------------------------------

    def _crash(self, envelope: Envelope, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        phase = "init" if envelope.kind is Kind.INIT else "message"
        logger.error("actor %s crashed in %s", self.cell.name, phase, exc_info=exc)
        try:
            self.cell.chain.record("actor-crash", {"phase": phase, "error": reason}, reason)
        except StoreError:  # its runtime shut down and closed the chain's database
            logger.warning("cannot record the crash of %s: its chain is closed", self.cell.name)
        self.cell._exited(
            self, ExitReason("crash", reason), envelope, ActorFailed(self.cell.name, reason)
        )

    def _stop_requested(self, envelope: Envelope) -> None:
        self.finish()
        for queued in _keep(self.inbox.take_all()):
            queued.fail(ActorStopped(f"actor {self.cell.name!r} stopped before handling it"))
        if envelope.reply is not None and not envelope.reply.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                envelope.reply.set_result(None)

    def finish(self, error: BaseException | None = None) -> None:
        """End its channels, run the actor's ``on_stop``, close its capabilities, end the thread.

        Args:
            error: what the callers of its open channels get (``ActorStopped`` if omitted).
        """
        if self._finished:
            return
        self._finished = True
        self.channels.end_all(error or ActorStopped(f"actor {self.cell.name!r} stopped"))
        try:
            self.instance.on_stop(self.context)
        except BaseException:
            logger.exception("on_stop of actor %s failed", self.cell.name)
        try:
            self.context.close()
        finally:
            self.actor_stopped.set()
            self.inbox.closed = True  # the loop ends; Pykka's teardown must not block
            pykka.ActorRegistry.unregister(self.actor_ref)
            # Deferred replies outlive a crash (the work goes on and answers); a stop for
            # good answers every caller now.
            if self.context.stopping.is_set():
                for envelope in list(self._deferred):
                    self._deferred.discard(envelope)
                    envelope.fail(
                        ActorStopped(f"actor {self.cell.name!r} stopped before answering")
                    )
