"""The capabilities a manifest's handlers grant, each recording its use in the chain.

Each class wraps one resource (environment, store, time; HTTP is in
:mod:`theater_py._http`, imported only when granted, since ``requests`` is slow to
import) and checks the handler's rules before touching it. The recorder they share
is the actor's :class:`~theater_py.chain.EventChain`.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from theater_py.errors import CapabilityDenied, TheaterError

if TYPE_CHECKING:
    from theater_py.manifest import EnvironmentHandler, TimingHandler
    from theater_py.store import ContentRef, ContentStore

__all__ = ["EnvironmentAccess", "Recorder", "StoreAccess", "Timing"]


class Recorder(Protocol):
    """Anything that records a chain event (an :class:`~theater_py.chain.EventChain`)."""

    def record(self, event_type: str, data: Any = None, description: str = "") -> object:
        """Record one event."""


class EnvironmentAccess:
    """Reads environment variables as the ``environment`` handler allows.

    Only the variable's name is recorded, never its value.
    """

    __slots__ = ("_chain", "_rule")

    def __init__(self, rule: EnvironmentHandler, chain: Recorder) -> None:
        self._rule = rule
        self._chain = chain

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the variable's value, or ``default`` when it is not set.

        Raises:
            CapabilityDenied: the handler's rules do not allow this variable.
        """
        if not self._rule.permits(name):
            self._chain.record(
                "permission-denied",
                {"capability": "environment", "var": name},
                f"environment variable {name} is not allowed",
            )
            raise CapabilityDenied("environment", f"variable {name!r} is not allowed")
        value = os.environ.get(name)
        self._chain.record(
            "environment-read", {"var": name, "found": value is not None}, f"read {name}"
        )
        return default if value is None else value

    def __repr__(self) -> str:
        return f"<EnvironmentAccess {self._rule!r}>"


class StoreAccess:
    """The ``store`` capability: the runtime's content store, with writes recorded."""

    __slots__ = ("_chain", "_store")

    def __init__(self, store: ContentStore, chain: Recorder) -> None:
        self._store = store
        self._chain = chain

    def new_store(self, store_id: str | None = None) -> str:
        """Create a store (or find the one named ``store_id``) and return its id."""
        store_id = self._store.new_store(store_id)
        self._chain.record("store-new", {"store_id": store_id}, "new store")
        return store_id

    def store(self, store_id: str, content: bytes) -> ContentRef:
        """Save content (once per digest) and return its reference."""
        ref = self._store.store(store_id, content)
        self._chain.record(
            "store-write",
            {"store_id": store_id, "hash": ref.hash, "size": len(content)},
            "store content",
        )
        return ref

    def store_at_label(self, store_id: str, label: str, content: bytes) -> ContentRef:
        """Save content and point ``label`` at it."""
        ref = self._store.store_at_label(store_id, label, content)
        self._chain.record(
            "store-write",
            {"store_id": store_id, "label": label, "hash": ref.hash, "size": len(content)},
            f"store content at label {label}",
        )
        return ref

    def label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at existing content."""
        self._store.label(store_id, label, ref)
        self._chain.record(
            "store-label", {"store_id": store_id, "label": label, "hash": ref.hash}, label
        )

    def remove_label(self, store_id: str, label: str) -> None:
        """Remove ``label`` (the content stays)."""
        self._store.remove_label(store_id, label)
        self._chain.record("store-remove-label", {"store_id": store_id, "label": label}, label)

    def __getattr__(self, name: str) -> Any:
        # Reads (get, exists, get_by_label, list_labels, ...) pass through unrecorded.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._store, name)


class Timing:
    """The ``timing`` capability: the clock, and sleeps within the handler's bounds."""

    __slots__ = ("_rule", "_stopping")

    def __init__(self, rule: TimingHandler, stopping: threading.Event) -> None:
        self._rule = rule
        self._stopping = stopping

    @staticmethod
    def now_ms() -> int:
        """Return the wall-clock time in milliseconds since the epoch."""
        return time.time_ns() // 1_000_000

    @staticmethod
    def monotonic() -> float:
        """Return a monotonic clock reading in seconds, for measuring intervals."""
        return time.monotonic()

    def sleep(self, seconds: float) -> bool:
        """Sleep, waking early when the actor is being stopped.

        Returns:
            ``True`` after a full sleep, ``False`` when woken by a stop.

        Raises:
            TheaterError: the duration is outside the handler's
                ``min_sleep_duration`` / ``max_sleep_duration`` (milliseconds).
        """
        ms = seconds * 1000
        if not self._rule.min_sleep_duration <= ms <= self._rule.max_sleep_duration:
            raise TheaterError(
                f"sleep of {ms:.0f} ms is outside the timing handler's bounds "
                f"[{self._rule.min_sleep_duration}, {self._rule.max_sleep_duration}] ms"
            )
        return not self._stopping.wait(seconds)
