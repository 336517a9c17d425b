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
:class:`EventDatabase`, in a SQLite file that outlives the process.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from hashlib import sha256
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from theater_py._home import database_location, open_database, theater_home
from theater_py.errors import StoreError

__all__ = [
    "ChainEvent",
    "ChainStorage",
    "ChainVerification",
    "EventChain",
    "EventDatabase",
    "MemoryChainStorage",
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


@attrs.frozen
class ChainEvent:
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


def _encode_data(data: Any) -> str:
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
    digest = sha256(_head(event_type, _encode_data(data), description))
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
    """Ends the check of one event with its reason (never escapes verify_events)."""


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
            digest, parent, event_type, data, timestamp, description = _fields(event, index)
            if index == 0 and from_start and parent is not None:
                raise _Broken("event 0: parent_hash of the first event must be null")
            if index > 0 and parent != previous:
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
        except _Broken as broken:
            return ChainVerification(False, index, index, str(broken))
        previous = digest
    return ChainVerification(True, len(events))


class ChainStorage(Protocol):
    """Where an :class:`EventChain` keeps its events.

    The chain calls these methods while holding its lock, one at a time.
    """

    def tail(self) -> tuple[int, str | None]:
        """Return how many events are stored and the last one's hash (``None`` if none)."""

    def append(self, index: int, event: ChainEvent, data_json: str) -> None:
        """Keep one more event.

        Args:
            index: the event's position in the chain, from 0.
            event: the event.
            data_json: ``event.data`` as canonical JSON, so a backend need not encode it again.
        """

    def load(self) -> list[ChainEvent]:
        """Return every stored event, oldest first."""


class MemoryChainStorage:
    """Keeps a chain's events in memory; they are gone when the process ends.

    Args:
        max_events: keep only the newest this many (a long-running actor's chain would
            otherwise grow without bound); ``None`` keeps every event.
    """

    __slots__ = ("_events",)

    def __init__(self, max_events: int | None = None) -> None:
        self._events: collections.deque[ChainEvent] = collections.deque(maxlen=max_events)

    def tail(self) -> tuple[int, str | None]:
        """Return how many events are stored and the last one's hash."""
        events = self._events
        return len(events), events[-1].hash if events else None

    def append(self, index: int, event: ChainEvent, data_json: str) -> None:
        """Keep one more event."""
        self._events.append(event)

    def load(self) -> list[ChainEvent]:
        """Return a copy of the events, oldest first."""
        return list(self._events)


class EventChain:
    """One actor's event chain; any thread may record into it.

    Recording takes a lock only to link the event to the one before, so the
    events of concurrent threads form one chain, in the order they were linked.
    """

    __slots__ = ("__weakref__", "_count", "_last_hash", "_lock", "_storage")

    def __init__(self, storage: ChainStorage | None = None) -> None:
        """Open a chain that continues from what ``storage`` holds.

        Args:
            storage: where events are kept; a new :class:`MemoryChainStorage` if omitted.
        """
        self._storage = MemoryChainStorage() if storage is None else storage
        self._lock = threading.Lock()
        self._count, self._last_hash = self._storage.tail()

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
            StoreError: the chain is persisted and its database is closed.
        """
        try:
            data_json = _encode_data(data)
            head = _head(event_type, data_json, description)
        except TypeError as exc:
            raise TypeError(f"event {event_type!r}: {exc}") from None
        if type(data) not in _IMMUTABLE:
            # A copy, so the caller mutating its object later cannot alter the event;
            # decoding the canonical text is the cheapest deep copy, and it normalizes
            # (tuples to lists, keys to strings) exactly as the hash saw it.
            data = _decode_canonical(data_json, 0)[0]
        digest = sha256(head)
        with self._lock:
            parent = self._last_hash
            timestamp = time.time_ns() // 1_000_000
            digest.update(_tail(parent, timestamp))
            event = ChainEvent(digest.hexdigest(), parent, event_type, data, timestamp, description)
            self._storage.append(self._count, event, data_json)
            self._count += 1
            self._last_hash = event.hash
        return event

    def events(self) -> list[ChainEvent]:
        """Return a snapshot of the events, oldest first."""
        with self._lock:
            return self._storage.load()

    def verify(self) -> ChainVerification:
        """Check the chain with :func:`verify_events` (a bounded one: the events it kept)."""
        with self._lock:
            events, count = self._storage.load(), self._count
        return verify_events(events, from_start=len(events) == count)

    @property
    def last_hash(self) -> str | None:
        """The last event's hash, or ``None`` for an empty chain."""
        return self._last_hash

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<EventChain {self._count} events, last {self._last_hash}>"


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    actor_id    TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    parent_hash TEXT,
    event_type  TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    description TEXT    NOT NULL,
    PRIMARY KEY (actor_id, seq)
) WITHOUT ROWID;
"""
_INSERT: Final = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_QUEUE_SIZE: Final = 10_000
_BATCH: Final = 1_000
_Row = tuple[str, int, str, str | None, str, str, int, str]


class _SqliteChainStorage:
    __slots__ = ("_actor_id", "_db")

    def __init__(self, db: EventDatabase, actor_id: str) -> None:
        self._db = db
        self._actor_id = actor_id

    def tail(self) -> tuple[int, str | None]:
        # The database's own helper, so it may use the database's internals.
        rows = self._db._read(
            "SELECT seq, hash FROM events WHERE actor_id = ? ORDER BY seq DESC LIMIT 1",
            (self._actor_id,),
        )
        return (rows[0][0] + 1, rows[0][1]) if rows else (0, None)

    def append(self, index: int, event: ChainEvent, data_json: str) -> None:
        row = (self._actor_id, index, event.hash, event.parent_hash, event.event_type)
        self._db._enqueue((*row, data_json, event.timestamp, event.description))

    def load(self) -> list[ChainEvent]:
        rows = self._db._read(
            "SELECT hash, parent_hash, event_type, data, timestamp, description"
            " FROM events WHERE actor_id = ? ORDER BY seq",
            (self._actor_id,),
        )
        return [ChainEvent(h, p, t, _decode(d), ts, desc) for h, p, t, d, ts, desc in rows]


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # an edited row: its hash no longer matches, which verify() reports


class EventDatabase:
    """Hands out actors' event chains, keeping the persisted ones in one SQLite file.

    A background thread writes persisted events in batches, so recording one costs
    a queue put; :meth:`flush` waits until all are written and :meth:`close` writes
    every event recorded before it. The file (WAL mode) has one table, ``events``,
    keyed by ``(actor_id, seq)``, whose ``data`` column holds the canonical JSON.
    One process at a time should record a given actor's chain.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, connect: bool = True):
        """Create the database kept in the file at ``path``.

        Args:
            path: the SQLite file; ``events.sqlite3`` in the home folder if omitted, or
                ``":memory:"`` for a database that lasts as long as this object.
            connect: open the file now; if false, when a chain is first persisted.

        Raises:
            StoreError: the file cannot be opened.
        """
        if path is None:
            path = theater_home() / "events.sqlite3"
        self._database = database_location(path)
        # Reentrant: chain() holds it while a new persisted chain reads its tail.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()
        self._queue: queue.Queue[_Row | threading.Event | None] = queue.Queue(_QUEUE_SIZE)
        self._writer: threading.Thread | None = None
        self._error: sqlite3.Error | None = None
        self._closed = False
        self._chains: weakref.WeakValueDictionary[str, EventChain] = weakref.WeakValueDictionary()
        if connect:
            with self._lock:
                self._connect()

    @classmethod
    def lazy(cls, path: str | os.PathLike[str]) -> EventDatabase:
        """Return a database that creates its file only when a chain is persisted."""
        return cls(path, connect=False)

    @classmethod
    def in_memory(cls) -> EventDatabase:
        """Return a database in memory (tests): persisted chains last until it is closed."""
        return cls(":memory:")

    @property
    def path(self) -> Path | None:
        """The SQLite file, or ``None`` in memory."""
        return None if self._database == ":memory:" else Path(self._database)

    def chain(
        self, actor_id: str, *, persist: bool, max_memory_events: int | None = None
    ) -> EventChain:
        """Return the actor's chain: the same object as long as it is in use.

        Args:
            actor_id: the actor's id.
            persist: keep the events in the database, where a new process continues the
                chain from its last hash, rather than in memory.
            max_memory_events: for a chain in memory, keep only the newest this many.

        Returns:
            The chain.

        Raises:
            ValueError: the actor's chain is in use with the other ``persist``.
            StoreError: the database is closed, or cannot be opened.
        """
        if not isinstance(actor_id, str):
            raise TypeError(f"actor_id must be a str, not {type(actor_id).__name__}")
        with self._lock:
            chain = self._chains.get(actor_id)
            if chain is not None:
                if isinstance(chain._storage, _SqliteChainStorage) != persist:
                    raise ValueError(
                        f"actor {actor_id!r}: its chain is in use with persist={not persist}"
                    )
                return chain
            if persist:
                self._connect()
                chain = EventChain(_SqliteChainStorage(self, actor_id))
            else:
                chain = EventChain(MemoryChainStorage(max_memory_events))
            self._chains[actor_id] = chain
            return chain

    def actor_ids(self) -> list[str]:
        """Return the ids of the actors with persisted events, sorted."""
        with self._lock:
            if self._conn is None and not self._closed:
                if self.path is not None and not self.path.exists():
                    return []  # a lazy database whose file was never needed
                self._connect()
        rows = self._read("SELECT DISTINCT actor_id FROM events ORDER BY actor_id", ())
        return [row[0] for row in rows]

    def flush(self) -> None:
        """Wait until every persisted event recorded so far is written.

        Raises:
            StoreError: writing failed (it is also logged when it happens).
        """
        with self._lock:
            done = None
            if self._writer is not None and not self._closed:
                done = threading.Event()
                self._queue.put(done)
        if done is not None:
            done.wait()
        if self._error is not None:
            raise StoreError(
                f"event database {self._database}: writing events failed: {self._error}"
            )

    def close(self) -> None:
        """Write the pending events, stop the writer and close the file; safe to repeat."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()
            atexit.unregister(self.close)
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> EventDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<EventDatabase {self._database}>"

    # -- internals: callers hold self._lock ------------------------------------------

    def _connect(self) -> None:
        if self._closed:
            raise StoreError(f"event database {self._database} is closed")
        if self._conn is not None:
            return
        try:
            conn = open_database(self._database)
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"event database {self._database}: cannot open: {exc}") from exc
        self._conn = conn
        self._writer = threading.Thread(
            target=self._write_loop, name="theater-py-event-writer", daemon=True
        )
        self._writer.start()
        # A daemon, so a forgotten close() cannot hang the interpreter; this still
        # writes what is queued when the interpreter exits.
        atexit.register(self.close)

    # -- internals: the hot path and the writer --------------------------------------

    def _enqueue(self, row: _Row) -> None:
        # Under the lock, so no row is ever queued behind close()'s stop sentinel.
        with self._lock:
            if self._closed:
                raise StoreError(f"event database {self._database} is closed")
            self._queue.put(row)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        self.flush()
        with self._conn_lock:
            if self._conn is None or self._closed:
                raise StoreError(f"event database {self._database} is closed")
            return self._conn.execute(sql, params).fetchall()

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            rows: list[_Row] = []
            waiters: list[threading.Event] = []
            while item is not None:
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    rows.append(item)
                if len(rows) >= _BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if rows:
                self._write(rows)
            for waiter in waiters:
                waiter.set()
            if item is None:
                return

    def _write(self, rows: list[_Row]) -> None:
        with self._conn_lock:
            conn = self._conn
            assert conn is not None
            try:
                with conn:
                    conn.execute("BEGIN")
                    conn.executemany(_INSERT, rows)
                return
            except sqlite3.Error:
                pass
            # One bad row must not cost the batch: write them one by one.
            for row in rows:
                try:
                    conn.execute(_INSERT, row)
                except sqlite3.Error as exc:
                    logger.error(
                        "event database %s: lost event %d of actor %s: %s",
                        self._database,
                        row[1],
                        row[0],
                        exc,
                    )
                    self._error = self._error or exc
