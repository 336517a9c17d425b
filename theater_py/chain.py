"""Each actor's hash-chained event log, in memory or in SQLite.

Every event is ``{hash, parent_hash, event_type, data, timestamp, description}``,
as in Theater. Its ``hash`` is the lowercase hex SHA-256 of the UTF-8 bytes of
the event's *canonical JSON*: the object with all six keys, ``hash`` set to
``""`` and ``parent_hash`` set to the previous event's hash (``null`` for the
first event), written with keys sorted at every level, no whitespace (``","``
and ``":"`` separators), non-ASCII characters as themselves (not ``\\u``
escapes) and no NaN or infinity. In Python::

    hashlib.sha256(
        json.dumps(
            {**event, "hash": ""},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode("utf-8")
    ).hexdigest()

An edited event no longer matches its hash, and recomputing that hash breaks
the next event's link, so :func:`verify_events` finds the first broken event.
Removing events from the *end* of a chain leaves a shorter chain that verifies;
compare its last hash with one kept elsewhere to detect that.

Chains live in memory (:class:`MemoryChainStorage`) or, through
:class:`EventDatabase` (its code is in :mod:`theater_py._eventdb`), in a SQLite file
that outlives the process.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from hashlib import sha256
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

if TYPE_CHECKING:
    from theater_py._eventdb import LOST_EVENT, EventDatabase

__all__ = [
    "LOST_EVENT",
    "ChainEvent",
    "ChainStatus",
    "ChainStorage",
    "ChainVerification",
    "EventChain",
    "EventDatabase",
    "MemoryChainStorage",
    "canonical_json",
    "event_hash",
    "verify_events",
]

logger = logging.getLogger(__name__)


def _not_json(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The canonical form, as json.dumps(sort_keys=True, separators=(",", ":"),
# ensure_ascii=False, allow_nan=False) writes it. The C encoder is built once
# rather than per call as json.dumps does (2 us of the ~5 us a record costs);
# without circular-reference markers, since threads share it: a cycle ends in
# RecursionError instead.
_c_encoder = (
    c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", True, False, False)
    if c_make_encoder is not None
    else None
)
_ENCODER: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# Decodes canonical JSON (no whitespace around it) without json.loads' regex pass.
_decode_canonical: Final = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None)})
_FIELDS: Final = ("hash", "parent_hash", "event_type", "data", "timestamp", "description")


class _Recorded:
    """The slot where an event :meth:`EventChain.record` built keeps its data's canonical
    JSON until :attr:`ChainEvent.data` is first read."""

    __slots__ = ("_data_json",)


@attrs.frozen
class ChainEvent(_Recorded):
    """One event of an actor's chain."""

    hash: str
    """Hex SHA-256 of the event's canonical JSON (see the module docstring)."""
    parent_hash: str | None
    """The previous event's hash; ``None`` for the first event."""
    event_type: str
    """What happened (``"actor-start"``, ``"request"``, ``"http-response"``...)."""
    data: Any
    """The event's JSON value (dicts, lists, strings, numbers, booleans, ``None``)."""
    timestamp: int
    """When it was recorded, in milliseconds since the Unix epoch."""
    description: str
    """A human-readable summary."""

    if not TYPE_CHECKING:  # mypy would take any attribute of an event as valid

        def __getattr__(self, name: str) -> Any:
            # Only reached for a slot never set: the data of an event record() built,
            # kept as its canonical JSON. Decoding it gives the value the hash covers (a
            # copy the recording caller cannot alter), once: later reads find the slot,
            # and the text is let go, so a read event holds what an eager copy held.
            if name != "data":
                raise AttributeError(f"'ChainEvent' object has no attribute {name!r}")
            with _FIRST_READ:  # one decode: concurrent first readers get the one value
                with contextlib.suppress(AttributeError):  # another thread's first read
                    return _get_slot(self, "data")
                data = _decode_canonical(self._data_json, 0)[0]
                _set_slot(self, "data", data)
                _del_slot(self, "_data_json")
            return data

    def to_json(self) -> dict[str, Any]:
        """Return the event as a JSON object with Theater's six keys."""
        return {
            "hash": self.hash,
            "parent_hash": self.parent_hash,
            "event_type": self.event_type,
            "data": self.data,
            "timestamp": self.timestamp,
            "description": self.description,
        }


_FIRST_READ: Final = threading.Lock()
"""Held while a recorded event's data is decoded (rare: nothing on a request's path reads
an event's data)."""
_set_slot: Final = object.__setattr__  # bypasses the frozen class's refusal
_get_slot: Final = object.__getattribute__
_del_slot: Final = object.__delattr__
_new_event: Final = ChainEvent.__new__


def _recorded_event(
    digest: str,
    parent_hash: str | None,
    event_type: str,
    data_json: str,
    *,
    timestamp: int,
    description: str,
) -> ChainEvent:
    """A :class:`ChainEvent` whose ``data`` is decoded from ``data_json`` when first read."""
    event = _new_event(ChainEvent)
    _set_slot(event, "hash", digest)
    _set_slot(event, "parent_hash", parent_hash)
    _set_slot(event, "event_type", event_type)
    _set_slot(event, "_data_json", data_json)
    _set_slot(event, "timestamp", timestamp)
    _set_slot(event, "description", description)
    return event


@attrs.frozen
class ChainVerification:
    """What :func:`verify_events` found."""

    ok: bool
    """Whether every event is intact and linked to the one before it."""
    checked: int
    """How many events, from the first, are intact (all of them when ``ok``)."""
    first_broken: int | None = None
    """The index of the first broken event, or ``None`` when ``ok``."""
    reason: str | None = None
    """Why it is broken (``"event 3: hash mismatch"``), or ``None`` when ``ok``."""
    missing: tuple[tuple[int, int], ...] = ()
    """For a saved chain, the events it lost and recorded as lost: ``(first, last)``
    index ranges, inclusive (see :data:`LOST_EVENT`). Empty otherwise."""


@attrs.frozen
class ChainStatus:
    """Whether a chain's events reach its storage (see :meth:`EventChain.status`)."""

    saved: bool
    """The chain is kept in a database (``save_chain``), not in memory."""
    lost: int = 0
    """How many of its events could not be written since the database was opened."""
    error: str | None = None
    """Why writing fails now, or ``None`` while it works."""


def _head(event_type: str, data_json: str, description: str) -> bytes:
    # The canonical JSON up to the parent hash: everything that is known before the
    # chain's lock is taken. Keys in sorted order: data, description, event_type, hash.
    if not isinstance(event_type, str):
        raise TypeError(f"event_type must be a str, not {type(event_type).__name__}")
    if not isinstance(description, str):
        raise TypeError("description must be a str")
    text = (
        f'{{"data":{data_json},"description":{encode_basestring(description)},'
        f'"event_type":{encode_basestring(event_type)},"hash":"","parent_hash":'
    )
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise TypeError(f"text is not valid Unicode: {exc}") from None


def _tail(parent_hash: str | None, timestamp: int) -> bytes:
    parent = "null" if parent_hash is None else encode_basestring(parent_hash)
    return f'{parent},"timestamp":{timestamp}}}'.encode()


def canonical_json(data: Any) -> str:
    """``data`` as canonical JSON text (the form an event's hash covers: sorted keys, no
    whitespace, non-ASCII as itself), with an encoder built once.

    Raises:
        TypeError: ``data`` is not JSON (NaN and infinity included).
    """
    try:
        if _c_encoder is None:
            return _ENCODER.encode(data)
        return "".join(_c_encoder(data, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"data is not JSON: {exc}") from None


def event_hash(
    *,
    parent_hash: str | None,
    event_type: str,
    data: Any,
    timestamp: int,
    description: str,
) -> str:
    """Compute an event's hash from its fields (see the module docstring).

    Returns:
        The lowercase hex SHA-256 of the event's canonical JSON.

    Raises:
        TypeError: a field has the wrong type, or ``data`` is not JSON.
    """
    if type(timestamp) is not int:
        raise TypeError("timestamp must be an int")
    if parent_hash is not None and not isinstance(parent_hash, str):
        raise TypeError("parent_hash must be a str or None")
    digest = sha256(_head(event_type, canonical_json(data), description))
    digest.update(_tail(parent_hash, timestamp))
    return digest.hexdigest()


def _fields(event: ChainEvent | Mapping[str, Any], index: int) -> tuple[Any, ...]:
    if isinstance(event, ChainEvent):
        return (
            event.hash,
            event.parent_hash,
            event.event_type,
            event.data,
            event.timestamp,
            event.description,
        )
    if not isinstance(event, Mapping):
        raise _Broken(f"event {index}: not an object")
    missing = [name for name in _FIELDS if name not in event]
    if missing:
        raise _Broken(f"event {index}: missing field {missing[0]!r}")
    return tuple(event[name] for name in _FIELDS)


class _Broken(Exception):
    """Ends the check of one event with its reason (never escapes verification)."""


def _check(
    event: ChainEvent | Mapping[str, Any],
    index: int,
    previous: str | None,
    *,
    link: bool,
    origin: bool,
) -> str:
    """Check the event at ``index``: its hash, and its link to the hash ``previous``.

    Args:
        link: its parent must be ``previous``.
        origin: it is the chain's first event, whose parent must be null.

    Returns:
        Its hash.

    Raises:
        _Broken: it is not intact; the message says why.
    """
    digest, parent, event_type, data, timestamp, description = _fields(event, index)
    if origin and parent is not None:
        raise _Broken(f"event {index}: parent_hash of the first event must be null")
    if link and parent != previous:
        raise _Broken(f"event {index}: parent_hash does not match event {index - 1}")
    try:
        expected = event_hash(
            parent_hash=parent,
            event_type=event_type,
            data=data,
            timestamp=timestamp,
            description=description,
        )
    except TypeError as exc:
        raise _Broken(f"event {index}: {exc}") from None
    if digest != expected:
        raise _Broken(f"event {index}: hash mismatch")
    return expected


def verify_events(
    events: Sequence[ChainEvent | Mapping[str, Any]], *, from_start: bool = True
) -> ChainVerification:
    """Check that each event's hash is right and links to the event before it.

    Works on events read back from anywhere: :class:`ChainEvent` objects or
    their :meth:`~ChainEvent.to_json` objects, oldest first.

    Args:
        events: the chain.
        from_start: the events begin at the chain's first event, whose parent must be
            null; ``False`` checks a window of newer events (a bounded in-memory chain).

    Returns:
        ``ok`` with every event checked, or the index of the first broken
        event and why.
    """
    previous: str | None = None
    for index, event in enumerate(events):
        try:
            previous = _check(
                event, index, previous, link=index > 0, origin=index == 0 and from_start
            )
        except _Broken as broken:
            return ChainVerification(False, index, index, str(broken))
    return ChainVerification(True, len(events))


class ChainStorage(Protocol):
    """Where an :class:`EventChain` keeps its events.

    The chain calls every method but :meth:`status` while holding its lock, one at a time.
    """

    def tail(self) -> tuple[int, str | None]:
        """Return how many events were stored and the last one's hash (``None`` if none)."""

    def append(self, index: int, event: ChainEvent, data_json: str) -> threading.Event | None:
        """Keep one more event.

        Args:
            index: the event's position in the chain, from 0.
            event: the event.
            data_json: ``event.data`` as canonical JSON, so a backend need not encode it again.

        Returns:
            ``None``, or an event set once the event is durably written, which the chain
            waits for (bounded) after releasing its lock.
        """

    def load(self) -> list[ChainEvent]:
        """Return every stored event, oldest first."""

    def verify(self) -> ChainVerification:
        """Check the stored events as :meth:`EventChain.verify` describes."""

    def status(self) -> ChainStatus:
        """Say whether the events reach the storage."""


class MemoryChainStorage:
    """Keeps a chain's events in memory; they are gone when the process ends.

    Args:
        max_events: keep only the newest this many (a long-running actor's chain would
            otherwise grow without bound); ``None`` keeps every event.
    """

    __slots__ = ("_count", "_events")

    def __init__(self, max_events: int | None = None) -> None:
        self._events: collections.deque[ChainEvent] = collections.deque(maxlen=max_events)
        self._count = 0

    def tail(self) -> tuple[int, str | None]:
        """Return how many events were stored (the dropped ones too) and the last one's hash."""
        events = self._events
        return self._count, events[-1].hash if events else None

    def append(self, index: int, event: ChainEvent, data_json: str) -> None:
        """Keep one more event, dropping the oldest beyond ``max_events``."""
        self._events.append(event)
        self._count += 1

    def load(self) -> list[ChainEvent]:
        """Return a copy of the events, oldest first."""
        return list(self._events)

    def verify(self) -> ChainVerification:
        """Check the events kept: from the first if none was dropped, else as a window."""
        events = list(self._events)
        return verify_events(events, from_start=len(events) == self._count)

    def status(self) -> ChainStatus:
        """A chain in memory loses nothing it records."""
        return ChainStatus(saved=False)


_DURABLE_WAIT: Final = 30.0
"""Seconds an ``fsync`` chain's record waits for its event to reach the disk."""


class EventChain:
    """One actor's event chain; any thread may record into it.

    Recording takes a lock only to link the event to the one before, so the
    events of concurrent threads form one chain, in the order they were linked.
    """

    __slots__ = ("__weakref__", "_count", "_last_hash", "_lock", "_owed", "_storage")

    def __init__(self, storage: ChainStorage | None = None) -> None:
        """Open a chain that continues from what ``storage`` holds.

        Args:
            storage: where events are kept; a new :class:`MemoryChainStorage` if omitted.
        """
        self._storage = MemoryChainStorage() if storage is None else storage
        self._lock = threading.Lock()
        self._count, self._last_hash = self._storage.tail()
        # Events the storage asked to add (a record of lost events), recorded with the
        # next event or by settle(); a deque, since the writer thread appends unlocked.
        # An EventDatabase replaces it with the actor's own, which outlives this object.
        self._owed: collections.deque[tuple[str, Any, str]] = collections.deque()

    def record(self, event_type: str, data: Any = None, description: str = "") -> ChainEvent:
        """Append an event linked to the last one.

        Args:
            event_type: what happened.
            data: a JSON value; the event keeps its own copy.
            description: a human-readable summary.

        Returns:
            The event.

        Raises:
            TypeError: ``data`` is not JSON (the message names ``event_type``).
            StoreError: the chain is saved and its database is closed.
        """
        try:
            data_json = canonical_json(data)
            head = _head(event_type, data_json, description)
        except TypeError as exc:
            raise TypeError(f"event {event_type!r}: {exc}") from None
        digest = sha256(head)
        with self._lock:
            parent = self._last_hash
            timestamp = time.time_ns() // 1_000_000
            digest.update(_tail(parent, timestamp))
            if type(data) in _IMMUTABLE:
                event = ChainEvent(
                    digest.hexdigest(), parent, event_type, data, timestamp, description
                )
            else:
                # The event keeps the canonical text, not the caller's object (which the
                # caller may change later); its data is that text decoded when first
                # read, normalized (tuples to lists, keys to strings) as the hash saw it.
                event = _recorded_event(
                    digest.hexdigest(),
                    parent,
                    event_type,
                    data_json,
                    timestamp=timestamp,
                    description=description,
                )
            written = self._storage.append(self._count, event, data_json)
            self._count += 1
            self._last_hash = event.hash
            if self._owed:
                self._record_owed()
        if written is not None and not written.wait(_DURABLE_WAIT):
            logger.warning(
                "event %r not on disk after %s s; recording goes on", event_type, _DURABLE_WAIT
            )
        return event

    def owe(self, event_type: str, data: Any, description: str) -> None:
        """Have the chain record this event with its next one (or at :meth:`settle`).

        For a storage that must add an event of its own, as a saved chain records the
        events it lost, from a thread that must not wait for the chain's lock.
        """
        self._owed.append((event_type, data, description))

    def settle(self) -> None:
        """Record the events :meth:`owe` left pending."""
        if self._owed:
            with self._lock:
                self._record_owed()

    def _record_owed(self) -> None:
        # Under the lock: each owed event links like any other.
        while self._owed:
            event_type, data, description = self._owed.popleft()
            data_json = canonical_json(data)
            digest = sha256(_head(event_type, data_json, description))
            timestamp = time.time_ns() // 1_000_000
            digest.update(_tail(self._last_hash, timestamp))
            event = ChainEvent(
                digest.hexdigest(), self._last_hash, event_type, data, timestamp, description
            )
            self._storage.append(self._count, event, data_json)
            self._count += 1
            self._last_hash = event.hash

    def events(self) -> list[ChainEvent]:
        """Return a snapshot of the events, oldest first."""
        self.settle()
        with self._lock:
            return self._storage.load()

    def verify(self) -> ChainVerification:
        """Check the chain.

        A saved chain is checked from its first event, with its events numbered without
        a gap: any deletion, insertion or change is reported at the event it breaks, and
        events the database failed to write are reported in ``missing``. A chain in
        memory that dropped its oldest events (``max_events``) checks the window it kept.
        """
        self.settle()
        with self._lock:
            return self._storage.verify()

    def status(self) -> ChainStatus:
        """Say whether the chain is saved, and whether its events reach the database."""
        return self._storage.status()

    @property
    def last_hash(self) -> str | None:
        """The last event's hash, or ``None`` for an empty chain."""
        return self._last_hash

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<EventChain {self._count} events, last {self._last_hash}>"


def __getattr__(name: str) -> Any:
    """Re-export the SQLite backend's names on first use (PEP 562).

    :mod:`theater_py._eventdb` builds on this module, so importing it here eagerly would
    make a cycle that fails whenever ``_eventdb`` is the first of the two imported.
    """
    if name in ("LOST_EVENT", "EventDatabase"):
        from theater_py import _eventdb

        return getattr(_eventdb, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
