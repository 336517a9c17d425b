"""The capabilities a manifest's handlers grant, each recording its use in the chain.

Each class wraps one resource (environment, store, time; HTTP is in
:mod:`theater_py._http`, imported only when granted, since ``requests`` is slow to
import), checks the handler's rules before touching it, and offers only the
operations the handler grants: nothing that closes or reconfigures a resource other
actors share. The recorder they share is the actor's
:class:`~theater_py.chain.EventChain`.

This limits what the runtime hands an actor; it is not a sandbox. An actor's
component is trusted Python code that can import anything (see the trust model in
docs/architecture.md).
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from theater_py.errors import CapabilityDenied, TheaterError

if TYPE_CHECKING:
    from theater_py.manifest import EnvironmentHandler, TimingHandler
    from theater_py.store import Bytes, ContentRef, ContentStore

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
    """The ``store`` capability: Theater's store operations on the runtime's content store.

    Only these operations: no ``close`` (the store is shared by every actor) and no
    other attribute of the store is reachable through it. Every write (``new_store``,
    ``store``, ``store_at_label``, ``replace_content_at_label``, ``label``,
    ``replace_at_label``, ``remove_label``) is recorded in the actor's chain; reads are
    not.
    """

    __slots__ = ("_chain", "_store")

    def __init__(self, store: ContentStore, chain: Recorder) -> None:
        self._store = store
        self._chain = chain

    # -- writes, each recorded -------------------------------------------------------

    def new_store(self, store_id: str | None = None) -> str:
        """Create a store (or find the one named ``store_id``) and return its id."""
        store_id = self._store.new_store(store_id)
        self._chain.record("store-new", {"store_id": store_id}, "new store")
        return store_id

    def store(self, store_id: str, content: Bytes) -> ContentRef:
        """Save content (once per digest) and return its reference."""
        ref = self._store.store(store_id, content)
        self._chain.record(
            "store-write",
            {"store_id": store_id, "hash": ref.hash, "size": memoryview(content).nbytes},
            "store content",
        )
        return ref

    def store_at_label(self, store_id: str, label: str, content: Bytes) -> ContentRef:
        """Save content and point ``label`` at it, in one transaction."""
        ref = self._store.store_at_label(store_id, label, content)
        self._chain.record(
            "store-write",
            {
                "store_id": store_id,
                "label": label,
                "hash": ref.hash,
                "size": memoryview(content).nbytes,
            },
            f"store content at label {label}",
        )
        return ref

    def replace_content_at_label(self, store_id: str, label: str, content: Bytes) -> ContentRef:
        """Save content and move ``label`` to it (Theater's name for :meth:`store_at_label`)."""
        return self.store_at_label(store_id, label, content)

    def label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at content the store holds."""
        self._store.label(store_id, label, ref)
        self._chain.record(
            "store-label", {"store_id": store_id, "label": label, "hash": ref.hash}, label
        )

    def replace_at_label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at other content (Theater's name for :meth:`label`)."""
        self.label(store_id, label, ref)

    def remove_label(self, store_id: str, label: str) -> None:
        """Remove ``label`` (the content stays)."""
        self._store.remove_label(store_id, label)
        self._chain.record("store-remove-label", {"store_id": store_id, "label": label}, label)

    # -- reads -----------------------------------------------------------------------

    def get(self, store_id: str, ref: ContentRef) -> bytes:
        """Return the content ``ref`` names (its digest checked)."""
        return self._store.get(store_id, ref)

    def exists(self, store_id: str, ref: ContentRef) -> bool:
        """Return whether the store holds the content ``ref`` names."""
        return self._store.exists(store_id, ref)

    def get_by_label(self, store_id: str, label: str) -> ContentRef | None:
        """Return what ``label`` points at, or ``None``."""
        return self._store.get_by_label(store_id, label)

    def list_labels(self, store_id: str) -> list[str]:
        """Return the store's labels, sorted."""
        return self._store.list_labels(store_id)

    def list_all_content(self, store_id: str) -> list[ContentRef]:
        """Return the references of the store's content, in the order first stored."""
        return self._store.list_all_content(store_id)

    def calculate_total_size(self, store_id: str) -> int:
        """Return the size in bytes of the store's content."""
        return self._store.calculate_total_size(store_id)

    def __repr__(self) -> str:
        return "<StoreAccess>"


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
