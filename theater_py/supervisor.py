"""Erlang/OTP supervisors: child specs, strategies, restart intensity, backoff, escalation.

The vocabulary is OTP's, and so are the rules:

- children start in spec order and stop in reverse order (newest first);
- ``permanent`` children are always restarted, ``transient`` ones only after an
  abnormal exit (a crash), ``temporary`` ones never, not even when a sibling's
  ``one_for_all`` or ``rest_for_one`` restart stops them;
- more than ``intensity`` restarts within ``period`` seconds and the supervisor
  gives up: it stops its children, newest first, and exits with reason
  ``shutdown``, which its own supervisor handles by that supervisor's restart
  type (escalation: a ``permanent`` parent restarts it, a ``transient`` one not);
- a child that exits and is not restarted, or that :meth:`Supervisor.terminate_child`
  stops, keeps its spec with no process (OTP's ``pid = undefined``):
  :meth:`Supervisor.restart_child` or a restart of its group starts it afresh,
  :meth:`Supervisor.delete_child` forgets it; a ``temporary`` child is forgotten;
- a failed restart inside ``one_for_all`` / ``rest_for_one`` counts as a restart
  and restarts the group again (OTP's ``try_again``);
- ``significant`` children with ``auto_shutdown`` end the supervisor (reason
  ``shutdown``) when any, or all, of them exit by themselves.

Two additions: a child spec may carry its own ``intensity`` / ``period`` (the
runtime's root supervisor uses them so that one crash-looping actor is given up
alone), and a ``backoff`` delays each restart of a crash-looping child (Akka's
``BackoffSupervisor``). A supervisor runs on its own thread and never blocks on
a child's ``init``: it answers :meth:`Supervisor.which_children` and stops
cleanly while a child starts, waits out a backoff, or cannot start at all.

A restarted worker keeps its mailbox: see :mod:`theater_py._cell`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import functools
import logging
import random
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs
import pykka

from theater_py._cell import LONGEST_WAIT, ExitReason
from theater_py.actor import IGNORE
from theater_py.errors import (
    ActorFailed,
    ActorNotFound,
    ActorStartError,
    ActorStopped,
    RequestTimeout,
    SupervisorError,
    TheaterError,
)
from theater_py.manifest import merge_init_state

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from theater_py.chain import EventChain
    from theater_py.placement import Placement
    from theater_py.runtime import Runtime

__all__ = [
    "Backoff",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "Supervisor",
    "SupervisorFlags",
    "SupervisorSpec",
    "check_childspecs",
]

logger = logging.getLogger("theater_py.supervisor")

RESTART_TYPES = ("permanent", "transient", "temporary")
AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
CHILD_TYPES = ("worker", "supervisor")
CALL_TIMEOUT = 30.0
DEFAULT_START_TIMEOUT = 60.0

_clock = time.monotonic  # the restart-intensity window's clock; tests replace it


def _fail(field: str, message: str) -> SupervisorError:
    return SupervisorError(f"{field}: {message}")


def _non_negative_int(field: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(field, f"expected a non-negative integer, got {value!r}")

    return check


def _positive_number(field: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise _fail(field, f"expected a positive number, got {value!r}")

    return check


def _one_of(field: str, choices: tuple[str, ...]) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value not in choices:
            raise _fail(field, f"expected one of {', '.join(choices)}, got {value!r}")

    return check


@attrs.frozen
class Backoff:
    """Delays between restarts of a crash-looping child (Akka's ``BackoffSupervisor``).

    The n-th consecutive restart waits ``min_ms * multiplier**n`` milliseconds,
    capped at ``max_ms``, lengthened by up to ``jitter`` (a fraction) at random.
    The count starts again once the child has run for ``max_ms`` without failing.
    """

    min_ms: int = attrs.field(default=100, validator=_non_negative_int("backoff.min_ms"))
    max_ms: int = attrs.field(default=10_000, validator=_non_negative_int("backoff.max_ms"))
    multiplier: float = attrs.field(default=2.0, validator=_positive_number("backoff.multiplier"))
    jitter: float = 0.2

    def __attrs_post_init__(self) -> None:
        if self.max_ms < self.min_ms:
            raise _fail("backoff.max_ms", f"must be at least min_ms ({self.min_ms})")
        if not 0 <= self.jitter <= 1:
            raise _fail("backoff.jitter", f"expected a fraction in [0, 1], got {self.jitter!r}")

    def delay(self, failures: int, rand: float) -> float:
        """Return the seconds to wait before restart number ``failures`` (from 0)."""
        base = min(self.max_ms, self.min_ms * self.multiplier ** max(failures, 0))
        return base * (1 + self.jitter * rand) / 1000


@attrs.frozen
class SupervisorFlags:
    """How a supervisor restarts its children, and how many restarts it tolerates."""

    strategy: str = attrs.field(default="one_for_one", validator=_one_of("strategy", STRATEGIES))
    intensity: int = attrs.field(default=1, validator=_non_negative_int("intensity"))
    period: float = attrs.field(default=5.0, validator=_positive_number("period"))
    backoff: Backoff | None = None
    auto_shutdown: str = attrs.field(
        default="never", validator=_one_of("auto_shutdown", AUTO_SHUTDOWN)
    )
    """``never``, or end the supervisor (reason ``shutdown``) when ``any_significant``
    or ``all_significant`` children have exited by themselves (OTP's ``auto_shutdown``)."""


Shutdown = int | Literal["brutal_kill", "infinity"]


@attrs.frozen
class ChildSpec:
    """One child of a supervisor, in OTP's words.

    ``manifest`` (and ``init``) describe a worker; ``supervisor`` describes a
    subtree. ``shutdown`` is milliseconds, ``"brutal_kill"`` or ``"infinity"``;
    ``None`` takes OTP's default (5000 for workers, infinity for supervisors).
    ``significant`` marks a ``transient`` or ``temporary`` child whose exit ends its
    supervisor, as its flags' ``auto_shutdown`` says.
    """

    name: str = attrs.field()
    manifest: str | os.PathLike[str] | None = None
    init: Any = None
    restart: str = attrs.field(default="permanent", validator=_one_of("restart", RESTART_TYPES))
    shutdown: Shutdown | None = None
    type: str = attrs.field(default="worker", validator=_one_of("type", CHILD_TYPES))
    supervisor: SupervisorSpec | None = None
    intensity: int | None = attrs.field(default=None, validator=_non_negative_int("intensity"))
    period: float | None = attrs.field(default=None, validator=_positive_number("period"))
    backoff: Backoff | None = None
    significant: bool = False
    placement: Placement | None = None
    """Where a worker may run on Ray (overrides its manifest's ``[placement]``)."""

    @name.validator
    def _check_name(self, _attribute: Any, value: Any) -> None:
        if not isinstance(value, str) or not value:
            raise _fail("name", f"expected a non-empty string, got {value!r}")

    def __attrs_post_init__(self) -> None:
        shutdown = self.shutdown
        if not (
            shutdown is None
            or shutdown in ("brutal_kill", "infinity")
            or (isinstance(shutdown, int) and not isinstance(shutdown, bool) and shutdown >= 0)
        ):
            raise _fail(
                f"child {self.name}.shutdown",
                f"expected milliseconds, 'brutal_kill' or 'infinity', got {shutdown!r}",
            )
        if self.type == "worker" and self.manifest is None:
            raise _fail(f"child {self.name}.manifest", "a worker needs a manifest")
        if self.type == "supervisor" and self.supervisor is None:
            raise _fail(f"child {self.name}.supervisor", "a supervisor child needs its spec")
        if not isinstance(self.significant, bool):
            raise _fail(
                f"child {self.name}.significant", f"expected a bool, got {self.significant!r}"
            )
        if self.significant and self.restart == "permanent":
            raise _fail(
                f"child {self.name}.significant",
                "a permanent child cannot be significant (OTP's bad_combination)",
            )

    def shutdown_timeout(self) -> float | None:
        """Return the seconds to wait for this child to stop (``None``: no limit)."""
        shutdown = self.shutdown
        if shutdown is None:
            shutdown = "infinity" if self.type == "supervisor" else 5000
        if shutdown == "brutal_kill":
            return 0.0
        if shutdown == "infinity":
            return None
        assert isinstance(shutdown, int)
        return shutdown / 1000


@attrs.frozen
class SupervisorSpec:
    """A supervisor: its name, flags and children, as a system manifest declares them."""

    name: str
    flags: SupervisorFlags = SupervisorFlags()
    children: tuple[ChildSpec, ...] = ()

    def __attrs_post_init__(self) -> None:
        check_childspecs(self.children, self.flags.auto_shutdown)
        if self.flags.strategy == "simple_one_for_one" and len(self.children) > 1:
            raise _fail("strategy", "simple_one_for_one takes exactly one child spec")


def check_childspecs(specs: Any, auto_shutdown: str | None = None) -> None:
    """Check child specs as OTP's ``check_childspecs/2`` does.

    Args:
        specs: a sequence of :class:`ChildSpec` (each checked its fields when made).
        auto_shutdown: when given, also check that the specs suit that flag: a
            ``significant`` child needs ``any_significant`` or ``all_significant``.

    Raises:
        SupervisorError: naming the offending child and field (a duplicate name, a
            spec that is not a ChildSpec, a bad combination).
    """
    if isinstance(specs, str | bytes) or not hasattr(specs, "__iter__"):
        raise _fail("children", f"expected a sequence of ChildSpec, got {specs!r}")
    if auto_shutdown is not None and auto_shutdown not in AUTO_SHUTDOWN:
        raise _fail(
            "auto_shutdown", f"expected one of {', '.join(AUTO_SHUTDOWN)}, got {auto_shutdown!r}"
        )
    seen: set[str] = set()
    for index, child in enumerate(specs):
        if not isinstance(child, ChildSpec):
            raise _fail(f"children[{index}]", f"expected a ChildSpec, got {child!r}")
        if child.name in seen:
            raise _fail(f"child {child.name}", "duplicate child name")
        seen.add(child.name)
        if child.significant and auto_shutdown == "never":
            raise _fail(
                f"child {child.name}.significant",
                "a significant child needs auto_shutdown any_significant or all_significant",
            )


@attrs.frozen
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`."""

    name: str
    id: str
    type: str
    restart: str
    status: str
    restarts: int
    last_failure: str | None


@attrs.frozen
class ChildCounts:
    """OTP's ``count_children``: specs, active children, supervisors and workers."""

    specs: int
    active: int
    supervisors: int
    workers: int


class ChildTarget(Protocol):
    """What a supervisor needs of a child: a worker's cell or a nested supervisor."""

    name: str
    id: str
    incarnation: int
    exit_listener: Callable[[Any, int, ExitReason], None] | None
    owner: Supervisor | None
    lineage: object

    def start_incarnation(self) -> concurrent.futures.Future[None]: ...
    def stop(self, timeout: float | None, *, keep_mailbox: bool = False) -> bool: ...
    def terminate(self, reason: str) -> None: ...
    def is_alive(self) -> bool: ...


class ChildStatus(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    WAITING = "waiting"  # queued behind a sibling in an ordered restart
    EXITED = "exited"  # no process, spec kept (OTP's pid = undefined)
    STOPPED = "stopped"


class _Child:
    __slots__ = (
        "backoff_done",
        "failures_in_row",
        "initial",
        "keep_on_failure",
        "last_failure",
        "restart_times",
        "restarts",
        "spec",
        "started_at",
        "status",
        "target",
        "timer",
        "waiter",
    )

    def __init__(self, spec: ChildSpec, target: ChildTarget) -> None:
        self.spec = spec
        self.target = target
        self.status = ChildStatus.WAITING
        self.restarts = 0
        self.last_failure: str | None = None
        self.restart_times: deque[float] = deque()
        self.failures_in_row = 0
        self.backoff_done = False
        self.started_at = 0.0
        self.timer: threading.Timer | None = None
        self.initial = True
        self.keep_on_failure = False  # a restart_child call: a failed start keeps the spec
        self.waiter: concurrent.futures.Future[None] | None = None


# Messages to the supervisor's own thread.
@attrs.frozen
class _Begin:
    done: concurrent.futures.Future[None]


@attrs.frozen
class _Adopt:
    spec: ChildSpec
    target: ChildTarget
    done: concurrent.futures.Future[None]


@attrs.frozen
class _ChildExit:
    name: str
    incarnation: int
    reason: ExitReason


@attrs.frozen
class _StartDone:
    name: str
    incarnation: int
    error: BaseException | None
    ignored: bool = False


@attrs.frozen
class _Due:
    name: str


@attrs.frozen
class _Call:
    function: Callable[[], Any]


class Supervisor:
    """A supervisor of actors and of other supervisors.

    Build one from a :class:`SupervisorSpec` (``Runtime.start_system`` reads it from
    a system manifest). It is itself a child target, so supervisors nest.
    """

    def __init__(self, runtime: Runtime, spec: SupervisorSpec) -> None:
        self.runtime = runtime
        self.spec = spec
        self.name = spec.name
        self.id = str(uuid.uuid4())
        self.flags = spec.flags
        self.incarnation = 0
        self.exit_listener: Callable[[Any, int, ExitReason], None] | None = None
        self.owner: Supervisor | None = None
        """The supervisor this supervisor is a child of."""
        self.lineage: object = object()
        """As :attr:`ActorCell.lineage <theater_py._cell.ActorCell.lineage>`: a
        supervisor its parent starts in its place has it too, and so its static children."""
        self.replaces_exited = False
        """Let ``start_child`` replace a child that has no process (the runtime's root,
        where a name is free again once its actor is gone); OTP refuses (``already_present``)."""
        self.chain: EventChain = runtime.event_database.chain(
            self.id, persist=False, max_memory_events=runtime.max_memory_events
        )
        self._children: list[_Child] = []
        self._restart_times: deque[float] = deque()
        self._queue: deque[_Child] = deque()
        self._current: _Child | None = None
        self._begin: concurrent.futures.Future[None] | None = None
        self._status = "new"
        self.thread: threading.Thread | None = None
        """The supervisor's own thread, where every decision about its children is made."""
        self._ref = _SupervisorProcess.start(self)

    # -- child target protocol (called by the parent supervisor) -------------------------

    def start_incarnation(self) -> concurrent.futures.Future[None]:
        """Start (or restart) every child in spec order.

        Returns:
            A future resolved once every child is up, or failed with
            :class:`~theater_py.errors.SupervisorError` naming the child that could not
            start (the children already started are stopped again).
        """
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_running_or_notify_cancel()
        self.incarnation += 1
        self._tell(_Begin(done), done)
        return done

    def stop(self, timeout: float | None = None, *, keep_mailbox: bool = False) -> bool:
        """Stop every child, newest first, each within its own shutdown time.

        Args:
            timeout: seconds the whole subtree may take (its ``shutdown`` as a child);
                ``None`` waits for every child's own shutdown time. When it passes, the
                supervisor stops waiting and is left to finish on its own thread.
            keep_mailbox: the children keep their waiting messages for a restart;
                otherwise they stop for good and the supervisor's thread ends.

        Returns:
            Whether every child stopped in time.
        """
        job = functools.partial(self._stop_children, keep_mailbox=keep_mailbox)
        on_own_thread = threading.current_thread() is self.thread
        timed_out = False
        if on_own_thread:
            finished: bool = job()
        else:
            try:
                wait = LONGEST_WAIT if timeout is None else timeout
                finished = self._ref.ask(_Call(job), block=False).get(timeout=wait)
            except pykka.Timeout:
                finished, timed_out = False, True
            except pykka.ActorDeadError:
                return True
        if not keep_mailbox:
            self._status = "stopped"
            if timed_out or on_own_thread:
                self._ref.stop(block=False)
            else:
                try:
                    self._ref.stop(block=True, timeout=CALL_TIMEOUT)
                except pykka.Timeout:  # its thread is busy: it stops when it gets there
                    finished = False
        return finished

    def terminate(self, reason: str) -> None:
        """Give the subtree up: every child's waiting messages fail.

        The children are given up on the supervisor's own thread, where every other
        decision about them is made, so a restart it is making meanwhile cannot leave a
        child running behind it; nothing is restarted afterwards. Only when that thread
        has ended (nothing else touches the children then) does the caller's do it.
        """
        job = functools.partial(self._terminate_children, reason)
        if threading.current_thread() is self.thread:
            job()
        else:
            try:
                reply = self._ref.ask(_Call(job), block=False)
                if self._status not in ("stopping", "stopped"):  # else its stop does it
                    reply.get(timeout=CALL_TIMEOUT)
            except pykka.ActorDeadError:
                job()
            except pykka.Timeout:
                logger.warning("supervisor %s is busy; it gives its children up later", self.name)
        self._status = "stopped"
        if self._ref.is_alive():
            self._ref.stop(block=False)

    def is_alive(self) -> bool:
        """Whether the supervisor runs."""
        return self._status not in ("stopped",) and self._ref.is_alive()

    # -- public API ----------------------------------------------------------------------

    def which_children(self) -> list[ChildInfo]:
        """List the children, in spec order, with restart counts and last failures."""
        result: list[ChildInfo] = self._ask(self._which_children)
        return result

    def count_children(self) -> ChildCounts:
        """Count the children as OTP's ``count_children`` does."""
        result: ChildCounts = self._ask(self._count_children)
        return result

    def start_child(
        self,
        spec: ChildSpec | str,
        target: ChildTarget | None = None,
        *,
        init: Any = None,
        timeout: float | None = None,
    ) -> ChildTarget | None:
        """Add a child and start it; return once its ``init`` has run.

        Args:
            spec: the child's spec; for a ``simple_one_for_one`` supervisor, just the new
                child's name: its spec is the supervisor's template.
            target: the child, already made (the runtime makes it otherwise).
            init: with a name, init data merged over the template's ``init``.
            timeout: seconds to wait for the start (default 60); a child still starting
                then is stopped.

        Returns:
            The child, or ``None`` when its ``init`` returned :data:`~theater_py.IGNORE`
            (OTP's ``{ok, undefined}``: the spec is kept with no process, unless the
            child is ``temporary`` or the supervisor ``simple_one_for_one``).

        Raises:
            SupervisorError: a child of that name exists, a name is given to a
                supervisor that has no template, or the spec is not a ChildSpec or is
                ``significant`` under ``auto_shutdown = "never"`` (OTP's
                ``bad_combination``).
            ActorStartError: its start failed or timed out (the child is not kept).
        """
        if isinstance(spec, str):
            spec = self._from_template(spec, init)
        else:  # OTP's check_childspec/2 against this supervisor's auto_shutdown
            check_childspecs([spec], self.flags.auto_shutdown)
        target = target if target is not None else self.runtime.make_target(spec)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_running_or_notify_cancel()
        self._tell(_Adopt(spec, target, done), done)
        try:
            ignored = self._await_start(spec, done, timeout)
        except SupervisorError:
            target.terminate("not adopted")
            raise
        return None if ignored else target

    def _await_start(
        self,
        spec: ChildSpec,
        done: concurrent.futures.Future[Any],
        timeout: float | None,
        *,
        keep_spec: bool = False,
    ) -> bool:
        """Wait for a child's start; say if its ``init`` returned IGNORE."""
        wait = DEFAULT_START_TIMEOUT if timeout is None else timeout
        try:
            return bool(done.result(wait) == IGNORE)
        except concurrent.futures.TimeoutError:
            with contextlib.suppress(TheaterError):
                self.terminate_child(spec.name, 0, delete=not keep_spec)
            raise ActorStartError(
                f"{spec.type} {spec.name!r} did not start within {wait} s"
            ) from None
        except ActorFailed as failed:
            raise ActorStartError(
                f"{spec.type} {spec.name!r} failed to start: {failed.reason}"
            ) from None
        except ActorStopped as stopped:
            raise ActorStartError(f"{spec.type} {spec.name!r} failed to start: {stopped}") from None

    def restart_child(self, name: str, *, timeout: float | None = None) -> ChildTarget | None:
        """Start again a child whose spec is kept with no process (OTP's ``restart_child``).

        A child stopped by :meth:`terminate_child`, or a ``transient`` child that exited
        normally, starts afresh from its spec; this is not counted as a restart.

        Returns:
            The child, or ``None`` when its ``init`` returned IGNORE.

        Raises:
            ActorNotFound: no child of that name (``not_found``).
            SupervisorError: the child runs (``running``) or waits for a restart
                (``restarting``), or the supervisor is ``simple_one_for_one``.
            ActorStartError: its start failed or timed out (the spec stays).
        """
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        done.set_running_or_notify_cancel()
        spec: ChildSpec = self._ask(functools.partial(self._restart_by_call, name, done))
        ignored = self._await_start(spec, done, timeout, keep_spec=True)
        if ignored:
            return None
        child_target: ChildTarget | None = self._ask(
            lambda: next((c.target for c in self._children if c.spec.name == name), None)
        )
        return child_target

    def delete_child(self, name: str) -> None:
        """Forget the spec of a child that has no process (OTP's ``delete_child``).

        Raises:
            ActorNotFound: no child of that name (``not_found``).
            SupervisorError: the child runs (``running``) or waits for a restart
                (``restarting``), or the supervisor is ``simple_one_for_one``.
        """
        self._ask(functools.partial(self._delete, name))

    def get_childspec(self, name: str) -> ChildSpec:
        """Return a child's spec (OTP's ``get_childspec``).

        Raises:
            ActorNotFound: no child of that name.
        """
        child: _Child | None = self._ask(functools.partial(self._find, name))
        if child is None:
            raise ActorNotFound(f"supervisor {self.name!r} has no child {name!r}")
        return child.spec

    def _from_template(self, name: str, init: Any) -> ChildSpec:
        if self.flags.strategy != "simple_one_for_one" or len(self.spec.children) != 1:
            raise SupervisorError(
                f"supervisor {self.name!r}: only a simple_one_for_one supervisor with one "
                "child spec starts children by name"
            )
        template = self.spec.children[0]
        if init is not None:
            init = merge_init_state(template.init, init)
        return attrs.evolve(template, name=name, init=template.init if init is None else init)

    def terminate_child(
        self, name: str, timeout: float | None = None, *, delete: bool = False
    ) -> bool:
        """Stop a child; keep its spec with no process (OTP's ``terminate_child``).

        :meth:`restart_child` starts it again, :meth:`delete_child` forgets it. A
        ``temporary`` child, and a child of a ``simple_one_for_one`` supervisor, is
        forgotten at once, as in OTP.

        Args:
            name: the child.
            timeout: seconds to wait for it to stop; its spec's ``shutdown`` by default.
            delete: forget the spec too (what ``Runtime.stop_actor`` does).

        Returns:
            Whether it stopped within the timeout.

        Raises:
            ActorNotFound: the supervisor has no child of that name.
        """
        child: _Child | None = self._ask(functools.partial(self._forget, name, delete=delete))
        if child is None:
            raise ActorNotFound(f"supervisor {self.name!r} has no child {name!r}")
        wait = child.spec.shutdown_timeout() if timeout is None else timeout
        finished = child.target.stop(wait)
        self._record("child-stopped", child, {"finished": finished}, f"{name} stopped")
        return finished

    # -- plumbing ------------------------------------------------------------------------

    def _tell(self, message: Any, done: concurrent.futures.Future[Any]) -> None:
        try:
            self._ref.tell(message)
        except pykka.ActorDeadError:
            done.set_exception(SupervisorError(f"supervisor {self.name!r} is stopped"))

    def _ask(self, function: Callable[[], Any]) -> Any:
        if threading.current_thread() is self.thread:
            return function()
        try:
            return self._ref.ask(_Call(function), timeout=CALL_TIMEOUT)
        except pykka.ActorDeadError:
            raise SupervisorError(f"supervisor {self.name!r} is stopped") from None
        except pykka.Timeout:
            raise RequestTimeout(
                f"supervisor {self.name!r} did not answer within {CALL_TIMEOUT} s"
            ) from None

    def _notify_exit(self, target: Any, incarnation: int, reason: ExitReason) -> None:
        try:
            self._ref.tell(_ChildExit(target.name, incarnation, reason))
        except pykka.ActorDeadError:
            target.terminate(f"its supervisor {self.name!r} is stopped")

    def _record(
        self, event_type: str, child: _Child | None, data: dict[str, Any], text: str
    ) -> None:
        if child is not None:
            data = {"child": child.spec.name, **data}
        self.chain.record(event_type, data, text)

    def _find(self, name: str) -> _Child | None:
        for child in self._children:
            if child.spec.name == name:
                return child
        return None

    # -- everything below runs on the supervisor's own thread ------------------------------

    def _which_children(self) -> list[ChildInfo]:
        return [
            ChildInfo(
                name=c.spec.name,
                id=c.target.id,
                type=c.spec.type,
                restart=c.spec.restart,
                status=c.status.value,
                restarts=c.restarts,
                last_failure=c.last_failure,
            )
            for c in self._children
        ]

    def _count_children(self) -> ChildCounts:
        active = sum(c.status is ChildStatus.RUNNING for c in self._children)
        supervisors = sum(c.spec.type == "supervisor" for c in self._children)
        simple = self.flags.strategy == "simple_one_for_one"
        return ChildCounts(
            specs=1 if simple else len(self._children),  # OTP: the template is the one spec
            active=active,
            supervisors=supervisors,
            workers=len(self._children) - supervisors,
        )

    def _simple_refused(self, operation: str) -> None:
        if self.flags.strategy == "simple_one_for_one":
            raise SupervisorError(
                f"supervisor {self.name!r}: {operation} is not for simple_one_for_one"
            )

    def _no_process(self, name: str, operation: str) -> _Child:
        """Find a child that has no process, or raise OTP's error for why not."""
        self._simple_refused(operation)
        child = self._find(name)
        if child is None:
            raise ActorNotFound(f"supervisor {self.name!r} has no child {name!r}")
        if child.status in (ChildStatus.RUNNING, ChildStatus.STARTING):
            raise SupervisorError(f"supervisor {self.name!r}: child {name!r} is running")
        if child.status is not ChildStatus.EXITED:
            raise SupervisorError(f"supervisor {self.name!r}: child {name!r} is restarting")
        return child

    def _restart_by_call(self, name: str, done: concurrent.futures.Future[None]) -> ChildSpec:
        child = self._no_process(name, "restart_child")
        child.initial = True
        child.keep_on_failure = True
        child.waiter = done
        self._launch(child)
        return child.spec

    def _delete(self, name: str) -> None:
        child = self._no_process(name, "delete_child")
        self._children.remove(child)
        child.target.terminate("its spec was deleted")
        self._record("child-deleted", child, {}, f"{name} deleted")

    def _forget(self, name: str, *, delete: bool = False) -> _Child | None:
        child = self._find(name)
        if child is not None:
            if delete or child.spec.restart == "temporary" or self._simple():
                self._children.remove(child)
            self._cancel(child)
            if child in self._queue:
                self._queue.remove(child)
            child.status = ChildStatus.EXITED
            child.target.exit_listener = None
            if child.waiter is not None and not child.waiter.done():
                child.waiter.set_exception(ActorStopped(f"{child.spec.name!r} was stopped"))
            child.waiter = None
            if self._current is child:
                self._current = None
                self._start_next()
        return child

    def _terminate_children(self, reason: str) -> None:
        self._status = "stopped"  # from now on no child is started (see _launch)
        self._queue.clear()
        self._current = None
        begin, self._begin = self._begin, None
        if begin is not None and not begin.done():
            begin.set_exception(SupervisorError(f"supervisor {self.name!r} was stopped"))
        for child in reversed(self._children):
            self._cancel(child)
            if child.waiter is not None and not child.waiter.done():
                child.waiter.set_exception(ActorStopped(f"{child.spec.name!r} was stopped"))
            child.target.terminate(reason)

    def _simple(self) -> bool:
        return self.flags.strategy == "simple_one_for_one"

    def _on_begin(self, message: _Begin) -> None:
        self._status = "starting"
        self._restart_times.clear()
        self._begin = message.done
        # As OTP's init runs again: the children are the static specs (a simple_one_for_one
        # has none: its spec is a template for start_child). A restart reuses each one's
        # target, so its waiting messages go to its next incarnation; a child added by
        # start_child ended with the last incarnation, and a deleted static one is back.
        previous = {c.spec.name: c for c in self._children}
        self._children = []
        try:
            for spec in () if self._simple() else self.spec.children:
                child = previous.pop(spec.name, None)
                if child is not None and child.spec is not spec:  # start_child took the name
                    child.target.terminate("its supervisor restarted without it")
                    child = None
                if child is None:
                    child = _Child(spec, self.runtime.make_target(spec))
                    # The handles of this child's last target (a restart) reach this one.
                    child.target.lineage = (self.lineage, spec.name)
                self._children.append(child)
        except TheaterError as exc:
            self._fail_begin(None, exc)
            return
        finally:
            for dropped in previous.values():
                dropped.target.terminate("its supervisor restarted without it")
        for child in self._children:
            child.target.owner = self
            child.initial = True
            child.failures_in_row = 0
            child.target.exit_listener = self._notify_exit
        self._enqueue(self._children)

    def _on_adopt(self, message: _Adopt) -> None:
        if self._status in ("stopping", "stopped"):
            message.done.set_exception(SupervisorError(f"supervisor {self.name!r} is stopped"))
            return
        existing = self._find(message.spec.name)
        no_process = existing is not None and existing.status is ChildStatus.EXITED
        if no_process and self.replaces_exited:
            assert existing is not None
            self._children.remove(existing)
        elif existing is not None:
            what = "has the spec of" if no_process else "already has"  # OTP: already_present
            message.done.set_exception(
                SupervisorError(f"supervisor {self.name!r} {what} a child {message.spec.name!r}")
            )
            return
        child = _Child(message.spec, message.target)
        message.target.owner = self
        child.waiter = message.done
        message.target.exit_listener = self._notify_exit
        self._children.append(child)
        self._launch(child)

    def _enqueue(self, children: list[_Child]) -> None:
        for child in children:
            child.status = ChildStatus.WAITING
            self._queue.append(child)
        self._start_next()

    def _ordered(self) -> bool:
        return self._begin is not None or self.flags.strategy in ("one_for_all", "rest_for_one")

    def _start_next(self) -> None:
        while self._current is None and self._queue:
            child = self._queue.popleft()
            if self._ordered():
                self._current = child
            self._launch(child)
        if self._current is None and not self._queue and self._begin is not None:
            begin, self._begin = self._begin, None
            self._status = "running"
            self._record("supervisor-started", None, {}, f"{self.name} started")
            begin.set_result(None)

    def _launch(self, child: _Child) -> None:
        if self._status == "stopped":  # given up meanwhile: start nothing more
            child.status = ChildStatus.STOPPED
            if child.waiter is not None and not child.waiter.done():
                child.waiter.set_exception(SupervisorError(f"supervisor {self.name!r} is stopped"))
            return
        delay = self._backoff_delay(child)
        if delay > 0:
            child.status = ChildStatus.BACKOFF
            self._record("child-backoff", child, {"delay_ms": round(delay * 1000)}, "backoff")
            child.timer = threading.Timer(delay, self._due, (child.spec.name,))
            child.timer.daemon = True
            child.timer.start()
            return
        child.status = ChildStatus.STARTING
        name = child.spec.name
        if not child.target.is_alive():
            # Its process is gone for good (it exited and was not restarted, was
            # terminated, or ignored its start): start it afresh from its spec, as OTP does.
            previous = child.target
            try:
                child.target = self.runtime.make_target(child.spec)
            except TheaterError as exc:
                self._ref.tell(_StartDone(name, child.target.incarnation, exc))
                return
            child.target.lineage = previous.lineage  # its handles reach it still
            child.target.owner = self
            child.target.exit_listener = self._notify_exit
        future = child.target.start_incarnation()
        incarnation = child.target.incarnation

        def started(f: concurrent.futures.Future[None]) -> None:
            error = f.exception()
            ignored = error is None and f.result() == IGNORE
            with contextlib.suppress(pykka.ActorDeadError):
                self._ref.tell(_StartDone(name, incarnation, error, ignored))

        future.add_done_callback(started)

    def _due(self, name: str) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self._ref.tell(_Due(name))

    def _on_due(self, message: _Due) -> None:
        child = self._find(message.name)
        if child is not None and child.status is ChildStatus.BACKOFF:
            child.timer = None
            child.backoff_done = True
            self._launch(child)

    def _backoff_delay(self, child: _Child) -> float:
        backoff = child.spec.backoff or self.flags.backoff
        if child.backoff_done:  # its timer has just run out
            child.backoff_done = False
            return 0.0
        if backoff is None or child.initial:
            return 0.0
        delay = backoff.delay(child.failures_in_row, random.random())  # noqa: S311 -- jitter
        child.failures_in_row += 1
        return delay

    def _on_start_done(self, message: _StartDone) -> None:
        child = self._find(message.name)
        if child is None or child.target.incarnation != message.incarnation:
            return
        if child.status is not ChildStatus.STARTING:
            return
        if self._current is child:
            self._current = None
        if message.ignored:
            self._ignored(child)
        elif message.error is None:
            self._started(child)
        else:
            self._start_failed(child, message.error)

    def _started(self, child: _Child) -> None:
        child.status = ChildStatus.RUNNING
        child.started_at = time.monotonic()
        if child.initial:
            self._record(
                "child-started", child, {"id": child.target.id}, f"{child.spec.name} started"
            )
            logger.info("supervisor %s started %s", self.name, child.spec.name)
        else:
            self._record(
                "child-restarted",
                child,
                {"restarts": child.restarts},
                f"{child.spec.name} restarted",
            )
            logger.info(
                "supervisor %s restarted %s (restart %d)",
                self.name,
                child.spec.name,
                child.restarts,
            )
        child.initial = False
        child.keep_on_failure = False
        if child.waiter is not None:
            child.waiter.set_result(None)
            child.waiter = None
        self._start_next()

    def _start_failed(self, child: _Child, error: BaseException) -> None:
        reason = error.reason if isinstance(error, ActorFailed) else str(error)
        child.last_failure = reason
        if child.initial:
            self._initial_start_failed(child, error)
            return
        # A failed restart counts as one more restart, as in OTP.
        self._record("child-start-failed", child, {"error": reason}, reason)
        logger.error("supervisor %s could not restart %s: %s", self.name, child.spec.name, reason)
        if self._restart_limit_reached(child):
            self._start_next()
            return
        if self.flags.strategy in ("one_for_all", "rest_for_one"):
            # OTP's try_again: the group restarts again from the child that failed.
            self._restart_for(child)
            return
        child.restarts += 1
        self._queue.appendleft(child)
        child.status = ChildStatus.WAITING
        self._start_next()

    def _ignored(self, child: _Child) -> None:
        """A child's ``init`` returned IGNORE: keep its spec with no process (OTP)."""
        self._record("child-ignored", child, {}, f"{child.spec.name} ignored its start")
        child.status = ChildStatus.EXITED
        child.initial = False
        child.keep_on_failure = False
        if child.spec.restart == "temporary" or self._simple():
            self._children.remove(child)
        if child.waiter is not None:
            child.waiter.set_result(IGNORE)  # type: ignore[arg-type]
            child.waiter = None
        self._start_next()

    def _initial_start_failed(self, child: _Child, error: BaseException) -> None:
        self._record("child-start-failed", child, {"error": child.last_failure}, "start failed")
        if child.keep_on_failure:  # a restart_child call: the spec stays, with no process
            child.status = ChildStatus.EXITED
            child.keep_on_failure = False
            child.target.terminate("start failed")
        elif child.waiter is not None:  # a dynamic child: forget it alone
            self._children.remove(child)
            child.target.terminate("start failed")
        else:
            self._fail_begin(child, error)
            return
        if child.waiter is not None:
            child.waiter.set_exception(error)
            child.waiter = None
        self._start_next()

    def _fail_begin(self, child: _Child | None, error: BaseException) -> None:
        self._queue.clear()
        self._current = None
        started = [c for c in self._children if c.status is ChildStatus.RUNNING]
        for other in reversed(started):
            other.target.stop(other.spec.shutdown_timeout())
            other.status = ChildStatus.STOPPED
        for other in self._children:
            other.target.terminate("its supervisor failed to start")
        self._children.clear()
        self._status = "stopped"
        begin, self._begin = self._begin, None
        what = f"child {child.spec.name!r}" if child is not None else "a child"
        detail = child.last_failure if child is not None else str(error)
        failure = SupervisorError(f"supervisor {self.name!r}: {what} failed to start: {detail}")
        logger.error("%s", failure)
        if begin is not None:
            begin.set_exception(failure)

    def _on_child_exit(self, message: _ChildExit) -> None:
        child = self._find(message.name)
        if child is None or child.target.incarnation != message.incarnation:
            return
        if child.status is ChildStatus.STARTING:
            # It ran and exited before its start report arrived: take the start first.
            self._on_start_done(_StartDone(message.name, message.incarnation, None))
        if child.status is not ChildStatus.RUNNING:
            return
        backoff = child.spec.backoff or self.flags.backoff
        if backoff is not None and time.monotonic() - child.started_at >= backoff.max_ms / 1000:
            child.failures_in_row = 0
        reason = message.reason
        if reason.abnormal:
            child.last_failure = reason.error
            self._record("child-crashed", child, {"error": reason.error}, str(reason))
            logger.error(
                "supervisor %s: child %s crashed: %s", self.name, child.spec.name, reason.error
            )
        else:
            self._record("child-exited", child, {"reason": reason.kind}, str(reason))
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and not reason.abnormal):
            child.status = ChildStatus.EXITED
            child.target.terminate(f"{reason} and is {restart}")
            if restart == "temporary" or self._simple():
                self._children.remove(child)
            if child.spec.significant:
                self._significant_exited()
            return
        if self._restart_limit_reached(child):
            return
        self._restart_for(child)

    def _significant_exited(self) -> None:
        """Apply ``auto_shutdown`` after a significant child exited by itself (OTP)."""
        mode = self.flags.auto_shutdown
        if mode == "never":
            return
        if mode == "all_significant" and any(
            c.spec.significant and c.status is not ChildStatus.EXITED for c in self._children
        ):
            return
        self._record("supervisor-auto-shutdown", None, {"auto_shutdown": mode}, "auto_shutdown")
        logger.info("supervisor %s shuts down: %s", self.name, mode)
        self._exit(ExitReason("shutdown", "auto_shutdown"))

    def _restart_limit_reached(self, child: _Child) -> bool:
        """Count one restart; give up (the child, or everything) past the intensity."""
        now = _clock()
        own = child.spec.intensity is not None
        times = child.restart_times if own else self._restart_times
        intensity = child.spec.intensity if own else self.flags.intensity
        period = (child.spec.period or self.flags.period) if own else self.flags.period
        assert intensity is not None
        times.append(now)
        while times and now - times[0] > period:
            times.popleft()
        if len(times) <= intensity:
            return False
        if own:
            self._record(
                "child-gave-up", child, {"restarts": child.restarts}, "restart intensity reached"
            )
            logger.error(
                "supervisor %s gave %s up: more than %d restarts in %s s",
                self.name,
                child.spec.name,
                intensity,
                period,
            )
            self._children.remove(child)
            child.status = ChildStatus.STOPPED
            child.target.terminate("reached its restart intensity")
            return True
        self._give_up()
        return True

    def _give_up(self) -> None:
        flags = self.flags
        self._record(
            "supervisor-gave-up",
            None,
            {"intensity": flags.intensity, "period": flags.period},
            "reached_max_restart_intensity",
        )
        logger.error(
            "supervisor %s gave up: more than %d restarts in %s s",
            self.name,
            flags.intensity,
            flags.period,
        )
        self._exit(ExitReason("shutdown", "reached_max_restart_intensity"))

    def _exit(self, reason: ExitReason) -> None:
        """Stop every child and exit with ``reason``; the parent decides what follows."""
        self._stop_children(keep_mailbox=True)
        self._status = "exited"
        listener = self.exit_listener
        if listener is not None:
            listener(self, self.incarnation, reason)
        else:
            self.terminate(f"its supervisor exited: {reason}")

    def _restart_for(self, child: _Child) -> None:
        strategy = self.flags.strategy
        if strategy in ("one_for_one", "simple_one_for_one"):
            group = [child]
        else:
            index = self._children.index(child)
            siblings = [
                c
                for c in (self._children if strategy == "one_for_all" else self._children[index:])
                if c is not child
            ]
            for sibling in reversed(siblings):
                self._stop_sibling(sibling)
            group = [c for c in self._children if c is child or c in siblings]
        for member in group:
            member.restarts += 1
        self._enqueue(group)

    def _stop_sibling(self, sibling: _Child) -> None:
        self._cancel(sibling)
        if sibling in self._queue:
            self._queue.remove(sibling)
        if self._current is sibling:  # its start is abandoned: the queue must not wait on it
            self._current = None
        if sibling.status in (ChildStatus.RUNNING, ChildStatus.STARTING):
            temporary = sibling.spec.restart == "temporary"
            sibling.target.stop(sibling.spec.shutdown_timeout(), keep_mailbox=not temporary)
            self._record(
                "child-stopped", sibling, {"restart": not temporary}, "stopped for restart"
            )
        if sibling.spec.restart == "temporary":
            sibling.target.terminate("a sibling's restart stopped it and it is temporary")
            self._children.remove(sibling)

    def _cancel(self, child: _Child) -> None:
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None

    def _stop_children(self, *, keep_mailbox: bool) -> bool:
        self._queue.clear()
        self._current = None
        if not keep_mailbox:
            self._status = "stopping"
            begin, self._begin = self._begin, None
            if begin is not None and not begin.done():
                begin.set_exception(SupervisorError(f"supervisor {self.name!r} was stopped"))
            for child in self._children:
                if child.waiter is not None and not child.waiter.done():
                    child.waiter.set_exception(ActorStopped(f"{child.spec.name!r} was stopped"))
        finished = True
        for child in reversed(self._children):
            self._cancel(child)
            was_up = child.status in (ChildStatus.RUNNING, ChildStatus.STARTING)
            if was_up or child.spec.type == "supervisor":
                finished &= child.target.stop(
                    child.spec.shutdown_timeout(), keep_mailbox=keep_mailbox
                )
            if not keep_mailbox:
                child.target.terminate("its supervisor stopped")
            child.status = ChildStatus.STOPPED
            if was_up:
                self._record("child-stopped", child, {}, f"{child.spec.name} stopped")
        if not keep_mailbox:
            self._children.clear()
        return finished


class _SupervisorProcess(pykka.ThreadingActor):
    """The supervisor's thread: every decision about its children is made here."""

    use_daemon_thread = True

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__()
        self.supervisor = supervisor

    def on_start(self) -> None:
        self.supervisor.thread = threading.current_thread()

    def on_receive(self, message: Any) -> Any:
        supervisor = self.supervisor
        if isinstance(message, _Call):
            return message.function()
        if supervisor._status == "stopped" and isinstance(message, _ChildExit | _StartDone | _Due):
            return None  # given up: its children's news changes nothing
        try:
            if isinstance(message, _ChildExit):
                supervisor._on_child_exit(message)
            elif isinstance(message, _StartDone):
                supervisor._on_start_done(message)
            elif isinstance(message, _Due):
                supervisor._on_due(message)
            elif isinstance(message, _Adopt):
                supervisor._on_adopt(message)
            elif isinstance(message, _Begin):
                supervisor._on_begin(message)
        except BaseException:
            # A bug in the supervisor itself must not pass silently nor stop Pykka.
            logger.exception("supervisor %s failed handling %r", supervisor.name, message)
        return None
