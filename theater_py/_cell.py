"""An actor's lasting identity, and the Pykka thread that runs each incarnation.

A *cell* is what a name and a handle point to. It outlives crashes: each
incarnation is a fresh Pykka actor (a stopped Pykka actor can never run again),
and the cell hands the messages still queued in a dead incarnation's inbox to
the next one, in order, as Akka's mailbox survives a restart. Messages that
arrive while no incarnation runs wait in the cell; they fail with
:class:`~theater_py.errors.ActorStopped` at once if the actor is not restarted.

Every delivery takes the cell's lock, and so does every change of incarnation,
so no message can slip into an inbox that is being drained.
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
from theater_py.context import ActorContext
from theater_py.errors import ActorFailed, ActorStopped, MessageDecodeError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from theater_py.actor import Actor
    from theater_py.chain import EventChain
    from theater_py.manifest import Manifest
    from theater_py.runtime import Runtime
    from theater_py.supervisor import Supervisor

__all__ = ["ActorCell", "CellStatus", "Envelope", "ExitReason"]

logger = logging.getLogger("theater_py.actor")


class Kind(enum.IntEnum):
    """What an envelope asks of the actor."""

    REQUEST = 0
    SEND = 1
    INIT = 2
    STOP = 3
    EXIT = 4
    CRASH = 5


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
    """``normal`` (the actor stopped itself), ``shutdown`` (it was stopped), or ``crash``."""
    error: str | None = None

    @property
    def abnormal(self) -> bool:
        """Whether a ``transient`` child is restarted after this exit."""
        return self.kind == "crash"

    def __str__(self) -> str:
        return self.kind if self.error is None else f"{self.kind}: {self.error}"


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

    # -- delivery ---------------------------------------------------------------

    def deliver(self, envelope: Envelope) -> None:
        """Queue an envelope for the current incarnation, or for the next one.

        Raises:
            ActorStopped: the actor will not run again.
        """
        with self._lock:
            process = self._process
            if process is not None:
                process.actor_ref.tell(envelope)
                return
            if self.status in (CellStatus.STOPPING, CellStatus.STOPPED):
                raise ActorStopped(f"actor {self.name!r} is stopped")
            self._pending.append(envelope)

    def queued(self) -> int:
        """Count the messages waiting: in the inbox and between incarnations."""
        with self._lock:
            inbox = self._process.actor_inbox.qsize() if self._process is not None else 0  # type: ignore[attr-defined]
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
            if self.status is CellStatus.STOPPED:
                done.set_exception(ActorStopped(f"actor {self.name!r} is stopped"))
                return done
            self.incarnation += 1
            self.started_at = time.monotonic()
            self.status = CellStatus.STARTING
            created: list[_ActorProcess] = []
            ref = _ActorProcess.start(self, instance, self.incarnation, created)
            state = copy.deepcopy(self._state)
            ref.tell(Envelope(Kind.INIT, state, reply=done))
            while self._pending:
                ref.tell(self._pending.popleft())
            self._process = created[0]
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

    def _detach(self, process: _ActorProcess, reason: ExitReason) -> bool:
        """Take the inbox of an ending incarnation; say if it was running (not starting)."""
        with self._lock:
            was_running = self._process is process and self.status is CellStatus.RUNNING
            if self._process is process:
                self._process = None
                if self.status in (CellStatus.RUNNING, CellStatus.STARTING):
                    self.status = CellStatus.EXITED
            drained = process.drain()
            current = self._process
            if current is not None:
                for envelope in drained:
                    current.actor_ref.tell(envelope)
            else:
                self._pending.extendleft(reversed(drained))
            stopped = self.status in (CellStatus.STOPPING, CellStatus.STOPPED)
            pending = list(self._pending) if stopped else []
            if stopped:
                self._pending.clear()
        for envelope in pending:
            envelope.fail(ActorStopped(f"actor {self.name!r} stopped before handling it"))
        return was_running

    def _exited(self, process: _ActorProcess, reason: ExitReason) -> None:
        """End an incarnation that crashed or exited, and tell the supervisor."""
        was_running = self._detach(process, reason)
        process.finish()
        self._stop_children()
        listener = self.exit_listener
        if was_running and listener is not None:
            listener(self, process.incarnation, reason)

    def request_normal_exit(self, origin: Any = None) -> None:
        """Make the current incarnation exit normally after its current message."""
        with self._lock:
            process = self._process
        if process is None or (origin is not None and origin is not process):
            return
        process.exit_requested = True
        if threading.current_thread() is not process.thread:
            process.actor_ref.tell(Envelope(Kind.EXIT, None))

    # -- stopping -------------------------------------------------------------------

    def stop(self, timeout: float | None, *, keep_mailbox: bool = False) -> bool:
        """Stop the current incarnation after the messages already in its inbox.

        Args:
            timeout: seconds to wait for the incarnation to finish; ``None`` waits
                without limit; ``0`` does not wait and drops nothing but the
                incarnation itself (OTP's ``brutal_kill``).
            keep_mailbox: stop only this incarnation (a supervisor is restarting the
                actor with its siblings): waiting messages stay for the next one.
                Otherwise the actor stops for good and they fail with
                :class:`~theater_py.errors.ActorStopped`.

        Returns:
            Whether the incarnation finished within the timeout.
        """
        with self._lock:
            if self.status is CellStatus.STOPPED:
                return True
            process, self._process = self._process, None
            self.status = CellStatus.EXITED if keep_mailbox else CellStatus.STOPPING
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            if process is not None:
                if not keep_mailbox:
                    process.context.stopping.set()
                if timeout == 0:
                    self._pending.extendleft(reversed(process.drain()))
                process.actor_ref.tell(Envelope(Kind.STOP, None, reply=done))
            else:
                done.set_result(None)
            pending: list[Envelope] = []
            if not keep_mailbox:
                pending = list(self._pending)
                self._pending.clear()
        for envelope in pending:
            envelope.fail(ActorStopped(f"actor {self.name!r} stopped before handling it"))
        finished = True
        # An actor stopping itself cannot wait for its own thread: that would block it.
        own_thread = process is not None and threading.current_thread() is process.thread
        if timeout != 0 and not own_thread:
            try:
                done.result(timeout)
            except (ActorFailed, ActorStopped):
                pass
            except concurrent.futures.TimeoutError:
                finished = False
                logger.warning("actor %s did not stop within %s s", self.name, timeout)
        self._stop_children()
        if not keep_mailbox:
            with self._lock:
                self.status = CellStatus.STOPPED
            self.runtime.unregister(self)
        self.chain.record(
            "actor-stop", {"finished": finished, "restarting": keep_mailbox}, "stopped"
        )
        return finished

    def terminate(self, reason: str) -> None:
        """Give the actor up between incarnations: fail every waiting message."""
        with self._lock:
            if self._process is not None or self.status is CellStatus.STOPPED:
                return
            self.status = CellStatus.STOPPED
            pending = list(self._pending)
            self._pending.clear()
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

    def __init__(
        self, cell: ActorCell, instance: Actor, incarnation: int, created: list[_ActorProcess]
    ) -> None:
        super().__init__()
        created.append(self)  # Pykka's start() returns only a ref; the cell keeps the actor
        self.cell = cell
        self.instance = instance
        self.incarnation = incarnation
        self.context = ActorContext(cell, self)
        self.exit_requested = False
        self.thread: threading.Thread | None = None
        self._finished = False
        self._deferred: set[Envelope] = set()

    def on_start(self) -> None:
        self.thread = threading.current_thread()

    def on_receive(self, message: Any) -> None:
        envelope: Envelope = message
        try:
            kind = envelope.kind
            if kind is Kind.REQUEST:
                self._request(envelope)
            elif kind is Kind.SEND:
                self._send(envelope)
            elif kind is Kind.INIT:
                self._init(envelope)
            elif kind is Kind.STOP:
                self._stop_requested(envelope)
                return
            elif kind is Kind.CRASH:
                raise ActorKilled(envelope.message)
        except BaseException as exc:  # noqa: BLE001 -- contain every failure to this actor
            self._crash(envelope, exc)
            return
        if self.exit_requested:
            self.cell.chain.record("actor-exit", {"reason": "normal"}, "exited normally")
            self.cell._exited(self, ExitReason("normal"))

    # -- message kinds ---------------------------------------------------------------

    def _init(self, envelope: Envelope) -> None:
        self.instance.init(self.context, envelope.message)
        self.cell.chain.record("init", {"incarnation": self.incarnation}, "init done")
        self.cell._mark_running(self)
        assert envelope.reply is not None
        envelope.reply.set_result(None)

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
        response_type = self.cell.actor_class.response_type
        wire = serde.unstructure(result, response_type)
        self.cell.chain.record("response", wire, "response")
        assert envelope.reply is not None
        envelope.reply.set_result(wire if envelope.encoded else result)

    def _deferred_done(self, envelope: Envelope, future: concurrent.futures.Future[Any]) -> None:
        # Runs on whichever thread resolved the future; the chain and the reply are thread-safe.
        self._deferred.discard(envelope)
        if envelope.reply is not None and envelope.reply.done():
            return
        if future.cancelled():  # the actor stopped and dropped the work before it ran
            self.cell.chain.record("request-error", {"error": "cancelled"}, "reply cancelled")
            envelope.fail(ActorStopped(f"actor {self.cell.name!r} stopped before answering"))
            return
        error = future.exception()
        if error is None:
            try:
                self._answer(envelope, future.result())
            except Exception as exc:  # noqa: BLE001 -- the caller must hear of an encoding failure
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
        envelope.fail(ActorFailed(self.cell.name, reason))
        try:
            self.cell.chain.record("actor-crash", {"phase": phase, "error": reason}, reason)
        except StoreError:  # its runtime shut down and closed the chain's database
            logger.warning("cannot record the crash of %s: its chain is closed", self.cell.name)
        self.cell._exited(self, ExitReason("crash", reason))

    def _stop_requested(self, envelope: Envelope) -> None:
        self.finish()
        for queued in self.drain():
            queued.fail(ActorStopped(f"actor {self.cell.name!r} stopped before handling it"))
        assert envelope.reply is not None
        envelope.reply.set_result(None)

    def drain(self) -> list[Envelope]:
        """Take every envelope still in this incarnation's inbox, in order."""
        drained: list[Envelope] = []
        inbox = self.actor_inbox
        while not inbox.empty():
            message = inbox.get().message
            if not isinstance(message, Envelope) or message.kind in (Kind.EXIT, Kind.CRASH):
                continue
            if message.kind is Kind.STOP:
                # A stop that raced a crash: this incarnation is over either way.
                if message.reply is not None:
                    message.reply.set_result(None)
                continue
            drained.append(message)
        return drained

    def finish(self) -> None:
        """Run the actor's ``on_stop``, close its capabilities and end the thread."""
        if self._finished:
            return
        self._finished = True
        try:
            self.instance.on_stop(self.context)
        except BaseException:
            logger.exception("on_stop of actor %s failed", self.cell.name)
        try:
            self.context.close()
        finally:
            self.actor_stopped.set()
            pykka.ActorRegistry.unregister(self.actor_ref)
            # Deferred replies outlive a crash (the work goes on and answers); a stop for
            # good answers every caller now.
            if self.context.stopping.is_set():
                for envelope in list(self._deferred):
                    self._deferred.discard(envelope)
                    envelope.fail(
                        ActorStopped(f"actor {self.cell.name!r} stopped before answering")
                    )
