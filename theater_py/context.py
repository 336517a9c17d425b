"""The context an actor receives: its identity and only the capabilities it was granted."""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from theater_py.capabilities import EnvironmentAccess, StoreAccess, Timing
from theater_py.errors import CapabilityDenied

if TYPE_CHECKING:
    import os

    from theater_py._cell import ActorCell
    from theater_py._http import RecordingSession
    from theater_py.chain import ChainEvent
    from theater_py.handle import ActorHandle

__all__ = ["ActorContext"]


class ActorContext:
    """What one incarnation of an actor may touch.

    Capabilities are created on first use and exist only when a ``[[handler]]`` of
    the manifest grants them; asking for one that is not granted raises
    :class:`~theater_py.errors.CapabilityDenied` and records a ``permission-denied``
    event. Logging and recording events need no grant.
    """

    def __init__(self, cell: ActorCell, process: object = None) -> None:
        self._cell = cell
        self._process = process  # the incarnation this context belongs to
        self._manifest = cell.manifest
        self.stopping = threading.Event()
        """Set when the actor is being stopped for good (it will not be restarted, so
        long waits should end and callers should be answered now), and when this
        incarnation outlived its stop's timeout or was killed (``brutal_kill``): its
        handler still runs, but its reply will be dropped. It stays clear when an
        incarnation ends by a crash, an exit or a sibling's restart in time."""
        self.log = logging.getLogger(f"theater_py.actor.{cell.name}")
        """The actor's logger (``theater_py.actor.<name>``)."""

    @property
    def id(self) -> str:
        """The actor's id (a uuid4 string, the same across restarts)."""
        return self._cell.id

    @property
    def name(self) -> str:
        """The actor's registered name."""
        return self._cell.name

    def _deny(self, capability: str) -> CapabilityDenied:
        self._cell.chain.record(
            "permission-denied",
            {"capability": capability},
            f"{capability} is not granted by the manifest",
        )
        return CapabilityDenied(capability, f"add a [[handler]] of type {capability!r}")

    def _grant(self, capability: str) -> Any:
        handler = self._manifest.handler(capability)
        if handler is None:
            raise self._deny(capability)
        return handler

    @functools.cached_property
    def env(self) -> EnvironmentAccess:
        """Environment variables, as the ``environment`` handler allows."""
        return EnvironmentAccess(self._grant("environment"), self._cell.chain)

    @functools.cached_property
    def http(self) -> RecordingSession:
        """An HTTP session (``http-client``), closed when the incarnation ends."""
        self._grant("http-client")
        from theater_py._http import RecordingSession

        return RecordingSession(self._cell.chain)

    @functools.cached_property
    def store(self) -> StoreAccess:
        """The runtime's content-addressed store (``store``)."""
        self._grant("store")
        return StoreAccess(self._cell.runtime.content_store, self._cell.chain)

    @functools.cached_property
    def time(self) -> Timing:
        """The clock and bounded sleeps (``timing``)."""
        return Timing(self._grant("timing"), self.stopping)

    def spawn(
        self,
        manifest: str | os.PathLike[str],
        init: Any = None,
        *,
        name: str | None = None,
    ) -> ActorHandle:
        """Start a child actor that is stopped before this actor stops (``supervisor``).

        Returns:
            The child's handle.
        """
        self._grant("supervisor")
        handle = self._cell.runtime.start_actor(manifest, init, name=name)
        self._cell.adopt(handle.name)
        return handle

    def record(self, event_type: str, data: Any = None, description: str = "") -> ChainEvent:
        """Record an event of the actor's own in its chain."""
        return self._cell.chain.record(event_type, data, description)

    def stop(self, reason: str | tuple[str, Any] = "normal") -> None:
        """Exit once the current message is handled, with an OTP exit reason.

        Args:
            reason: ``"normal"`` (the default), ``"shutdown"`` or ``("shutdown", term)``:
                a ``transient`` actor is not restarted after these; any other string
                is an abnormal exit, restarted as a crash is.

        Raises:
            ValueError: the reason is none of these.
        """
        from theater_py._cell import ExitReason

        if reason == "normal":
            exit_reason = ExitReason("normal")
        elif reason == "shutdown":
            exit_reason = ExitReason("shutdown")
        elif isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown":
            exit_reason = ExitReason("shutdown", repr(reason[1]))
        elif isinstance(reason, str) and reason:
            exit_reason = ExitReason("crash", reason)
        else:
            raise ValueError(
                f"reason: expected 'normal', 'shutdown', ('shutdown', term) or a string, "
                f"got {reason!r}"
            )
        self._cell.request_exit(exit_reason, self._process)

    def close(self) -> None:
        """Release the capabilities this incarnation opened."""
        session = self.__dict__.get("http")
        if session is not None:
            session.close()

    def __repr__(self) -> str:
        return f"<ActorContext {self._cell.name} ({self._cell.id})>"
