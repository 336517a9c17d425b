"""The SQLite file of saved event chains; use it as :class:`theater_py.chain.EventDatabase`.

Import it through :mod:`theater_py.chain`, which imports this module once its own
names exist.

Events are numbered per actor from 0 (``seq``), so a saved chain is checked from its
first event and any missing number is found. A background thread writes them in
batches. When a write fails (a full disk, an I/O error) the events of that batch are
lost, which is logged at ERROR and counted (:meth:`EventDatabase.status`); writing
goes on with the next batch, and once it works the chain records what was lost as an
``events-lost`` event (:data:`LOST_EVENT`), so :meth:`~theater_py.chain.EventChain.verify`
names the missing events instead of reporting a broken chain.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

import attrs

from theater_py._batchqueue import BatchQueue
from theater_py._home import database_location, open_database, theater_home
from theater_py.chain import (
    ChainEvent,
    ChainStatus,
    ChainVerification,
    EventChain,
    MemoryChainStorage,
    _Broken,
    _check,
)
from theater_py.errors import StoreError

__all__ = ["LOST_EVENT", "Durability", "EventDatabase"]

logger = logging.getLogger("theater_py.chain")

LOST_EVENT: Final = "events-lost"
"""The event type a saved chain records for events its database could not write.

Its data: ``first`` and ``last`` (the lost events' numbers, inclusive),
``parent_hash`` (the parent of the first lost event), ``last_hash`` (the hash of the
last one, the parent of the event after them) and ``error`` (why writing failed)."""

Durability: TypeAlias = Literal["batched", "fsync"]
"""How a saved chain's events reach the disk (a manifest's ``chain_durability``)."""

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
CREATE TABLE IF NOT EXISTS actors (
    name     TEXT PRIMARY KEY,
    actor_id TEXT NOT NULL
) WITHOUT ROWID;
"""
_INSERT: Final = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT: Final = (
    "SELECT seq, hash, parent_hash, event_type, data, timestamp, description"
    " FROM events WHERE actor_id = ? ORDER BY seq"
)
_QUEUE_SIZE: Final = 10_000
_BATCH: Final = 1_000
_LINGER: Final = 0.005
"""Seconds the writer waits, once it has an event, for more to write in the same
transaction (a ``batched`` chain's only; an ``fsync`` row or a flush is written at once)."""
_WAIT: Final = 60.0
"""Seconds a flush, a read or close waits for the writer to catch up."""
_Row = tuple[str, int, str, str | None, str, str, int, str]
# What reading a damaged file can raise besides sqlite3.Error: text that is not UTF-8
# (UnicodeDecodeError), numbers out of range.
_UNREADABLE: Final = (sqlite3.Error, ValueError, OverflowError)


class _Durable:
    """A row of an ``fsync`` chain: its recorder waits until it is synced to disk."""

    __slots__ = ("done", "row")

    def __init__(self, row: _Row) -> None:
        self.row = row
        self.done = threading.Event()


@attrs.frozen
class _Gap:
    """A run of one actor's events that could not be written."""

    first: int
    last: int
    parent_hash: str | None
    last_hash: str
    error: str

    def data(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def read(cls, data: Any) -> _Gap | None:
        """Read an ``events-lost`` event's data back; ``None`` if it is not one."""
        if not isinstance(data, dict) or set(data) != set(attrs.fields_dict(cls)):
            return None
        first, last = data["first"], data["last"]
        if type(first) is not int or type(last) is not int or not 0 <= first <= last:
            return None
        if not isinstance(data["last_hash"], str) or not isinstance(data["error"], str):
            return None
        if data["parent_hash"] is not None and not isinstance(data["parent_hash"], str):
            return None
        return cls(**data)


def _span(first: int, last: int, one: str = "", many: str = "") -> str:
    """Name a run of events, with the verb that agrees with it (``is``/``are``)."""
    text = f"event {first} {one}" if first == last else f"events {first}-{last} {many}"
    return text.rstrip()


def _decode(text: object) -> Any:
    if not isinstance(text, str):
        return text  # a damaged row: its hash no longer matches, which verify() reports
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _declared_losses(
    rows: list[tuple[Any, ChainEvent]], pending: Sequence[_Gap]
) -> dict[int, tuple[_Gap, int | None]]:
    """Each run of lost events by its first number, with the event recording it (``None``
    for a run still pending)."""
    declared: dict[int, tuple[_Gap, int | None]] = {}
    for seq, event in rows:
        if event.event_type == LOST_EVENT:
            gap = _Gap.read(event.data)
            if gap is not None and type(seq) is int and seq > gap.last:
                declared.setdefault(gap.first, (gap, seq))
    for gap in pending:
        declared.setdefault(gap.first, (gap, None))
    return declared


def verify_saved(
    rows: list[tuple[Any, ChainEvent]], pending: Sequence[_Gap] = ()
) -> ChainVerification:
    """Check a saved chain's events, by number, from event 0.

    Every number from 0 to the last must be present, each event intact and linked to
    the one before; a run of missing numbers is accepted only when a later
    :data:`LOST_EVENT` event records exactly that run and its boundary hashes, and it
    is then reported in ``missing`` (the chain is not ``ok``: it is incomplete).

    Args:
        rows: ``(seq, event)`` pairs in ``seq`` order, as the database holds them.
        pending: runs this process lost whose loss is not recorded in the chain yet;
            they count as recorded ones do.
    """
    declared = _declared_losses(rows, pending)
    missing: list[tuple[int, int]] = []
    first_loss = ""

    def lost(gap: _Gap, by: int | None) -> None:
        nonlocal first_loss
        missing.append((gap.first, gap.last))
        recorded = (
            "their loss is not recorded yet" if by is None else f"event {by} records their loss"
        )
        first_loss = first_loss or (
            f"{_span(gap.first, gap.last, 'was', 'were')} not saved ({gap.error}); {recorded}"
        )

    expected, previous = 0, None
    for seq, event in rows:
        try:
            if type(seq) is not int or seq < expected:
                raise _Broken(f"event {expected}: an event numbered {seq!r} is out of place")
            if seq > expected:
                gap, by = declared.get(expected, (None, None))
                if gap is None or gap.last != seq - 1:
                    raise _Broken(
                        f"event {expected}: missing ({_span(expected, seq - 1, 'is', 'are')}"
                        " not saved, and no event records their loss)"
                    )
                if gap.parent_hash != previous:
                    raise _Broken(
                        f"event {expected}: the loss event {by} records does not follow"
                        f" event {expected - 1}"
                    )
                lost(gap, by)
                previous, expected = gap.last_hash, seq
            previous = _check(event, seq, previous, link=seq > 0, origin=seq == 0)
        except _Broken as broken:
            intact = min(expected, missing[0][0]) if missing else expected
            return ChainVerification(False, intact, expected, str(broken), tuple(missing))
        expected += 1
    for gap in pending:  # the newest events, lost with none saved after them
        if gap.first >= expected:
            lost(gap, None)
    if missing:
        start = missing[0][0]
        return ChainVerification(False, start, start, first_loss, tuple(missing))
    return ChainVerification(True, expected)


class _SqliteChainStorage:
    """One actor's saved chain: rows of the database's ``events`` table."""

    __slots__ = ("_actor_id", "_db", "durable")

    def __init__(self, db: EventDatabase, actor_id: str, *, durable: bool) -> None:
        self._db = db
        self._actor_id = actor_id
        self.durable = durable

    def tail(self) -> tuple[int, str | None]:
        rows = self._db._read(
            "SELECT seq, hash FROM events WHERE actor_id = ? ORDER BY seq DESC LIMIT 1",
            (self._actor_id,),
        )
        if not rows:
            count, last = 0, None
        elif type(rows[0][0]) is int and isinstance(rows[0][1], str):
            count, last = rows[0][0] + 1, rows[0][1]
        else:
            raise StoreError(
                f"event database {self._db._database}: the last event of actor"
                f" {self._actor_id!r} is unreadable"
            )
        # Events lost after the last saved one still took their numbers and hashes.
        return self._db._after_losses(self._actor_id, count, last)

    def append(self, index: int, event: ChainEvent, data_json: str) -> threading.Event | None:
        row = (
            self._actor_id,
            index,
            event.hash,
            event.parent_hash,
            event.event_type,
            data_json,
            event.timestamp,
            event.description,
        )
        if self.durable:
            item = _Durable(row)
            self._db._enqueue(item, urgent=True)
            return item.done
        self._db._enqueue(row, urgent=False)
        return None

    def rows(self) -> list[tuple[Any, ChainEvent]]:
        rows = self._db._read(_SELECT, (self._actor_id,))
        return [(s, ChainEvent(h, p, t, _decode(d), ts, desc)) for s, h, p, t, d, ts, desc in rows]

    def load(self) -> list[ChainEvent]:
        return [event for _seq, event in self.rows()]

    def verify(self) -> ChainVerification:
        rows = self.rows()  # waits for the writer: what it lost is known after this
        return verify_saved(rows, self._db._pending_losses(self._actor_id))

    def status(self) -> ChainStatus:
        return self._db._status(self._actor_id)


class EventDatabase:
    """Hands out actors' event chains, keeping the saved ones in one SQLite file.

    A background thread writes saved events in batches, so recording one costs a
    queue put (``batched``) or a wait for its sync to disk (``fsync``); :meth:`flush`
    waits until all are written and :meth:`close` writes every event recorded before
    it. The file (WAL mode) has two tables: ``events``, keyed by ``(actor_id, seq)``,
    whose ``data`` column holds the canonical JSON, and ``actors``, the id each saved
    actor name was given. One process at a time should record a given actor's chain.
    A failed write loses its batch (see the module docstring) and never stops the
    writer.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, connect: bool = True):
        """Create the database kept in the file at ``path``.

        Args:
            path: the SQLite file; ``events.sqlite3`` in the home folder if omitted, or
                ``":memory:"`` for a database that lasts as long as this object.
            connect: open the file now; if false, when a chain is first saved.

        Raises:
            StoreError: the file cannot be opened.
        """
        if path is None:
            path = theater_home() / "events.sqlite3"
        self._database = database_location(path)
        # Reentrant: chain() holds it while a new saved chain reads its tail.
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()
        self._queue: BatchQueue[_Row | _Durable | threading.Event | None] = BatchQueue(
            _QUEUE_SIZE, _BATCH, _LINGER
        )
        self._writer: threading.Thread | None = None
        self._closed = False
        self._chains: weakref.WeakValueDictionary[str, EventChain] = weakref.WeakValueDictionary()
        self._saved: weakref.WeakValueDictionary[str, EventChain] = weakref.WeakValueDictionary()
        # What writing lost, under _losses_lock: counts by actor, and the runs not yet
        # recorded in their chains.
        self._losses_lock = threading.Lock()
        self._lost: collections.Counter[str] = collections.Counter()
        self._gaps: dict[str, list[_Gap]] = {}
        self._reported = 0
        # Each saved actor's events owed to its chain (EventChain.owe), kept here so that
        # they outlive a chain object dropped before recording them (an actor stopped).
        self._owed: dict[str, collections.deque[tuple[str, Any, str]]] = {}
        self._error: str | None = None  # why writing fails now
        self._last_error = ""  # why it failed last, for flush's report
        if connect:
            with self._lock:
                self._connect()

    @classmethod
    def lazy(cls, path: str | os.PathLike[str]) -> EventDatabase:
        """Return a database that creates its file only when a chain is saved."""
        return cls(path, connect=False)

    @classmethod
    def in_memory(cls) -> EventDatabase:
        """Return a database in memory (tests): saved chains last until it is closed."""
        return cls(":memory:")

    @property
    def path(self) -> Path | None:
        """The SQLite file, or ``None`` in memory."""
        return None if self._database == ":memory:" else Path(self._database)

    def chain(
        self,
        actor_id: str,
        *,
        persist: bool,
        max_memory_events: int | None = None,
        durability: Durability = "batched",
    ) -> EventChain:
        """Return the actor's chain: the same object as long as it is in use.

        Args:
            actor_id: the actor's id.
            persist: keep the events in the database, where a new process continues the
                chain from its last hash, rather than in memory.
            max_memory_events: for a chain in memory, keep only the newest this many.
            durability: for a saved chain, ``batched`` (recording returns at once; a
                background thread writes) or ``fsync`` (recording returns once the event
                is synced to disk); see docs/events-and-store.md for what each loses.

        Returns:
            The chain.

        Raises:
            ValueError: the actor's chain is in use with the other ``persist``, or
                ``durability`` is neither ``batched`` nor ``fsync``.
            StoreError: the database is closed, or cannot be opened or read.
        """
        if not isinstance(actor_id, str):
            raise TypeError(f"actor_id must be a str, not {type(actor_id).__name__}")
        if durability not in ("batched", "fsync"):
            raise ValueError(f"durability must be 'batched' or 'fsync', not {durability!r}")
        with self._lock:
            chain = self._chains.get(actor_id)
            if chain is not None:
                if (actor_id in self._saved) != persist:
                    raise ValueError(
                        f"actor {actor_id!r}: its chain is in use with persist={not persist}"
                    )
                if persist:
                    storage = chain._storage
                    assert isinstance(storage, _SqliteChainStorage)
                    storage.durable = durability == "fsync"
                return chain
            if persist:
                self._connect()
                storage = _SqliteChainStorage(self, actor_id, durable=durability == "fsync")
                chain = EventChain(storage)
                chain._owed = self._owed.setdefault(actor_id, collections.deque())
                self._saved[actor_id] = chain
            else:
                chain = EventChain(MemoryChainStorage(max_memory_events))
            self._chains[actor_id] = chain
        if persist:
            self._hand_over([actor_id])  # losses of an earlier chain object of this actor
        return chain

    def saved_actor_id(self, name: str) -> str:
        """Return the id of the saved actor called ``name``, the same every time.

        The first call for a name makes a new uuid4 and keeps it in the file, so an
        actor started again under the same name (in this process or a later one)
        continues its chain.

        Raises:
            StoreError: the database cannot be opened, read or written.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        with self._lock:
            self._connect()
        with self._conn_lock:
            conn = self._open_connection()
            try:
                row = conn.execute("SELECT actor_id FROM actors WHERE name = ?", (name,)).fetchone()
                if row is None:  # a write only for a new name: restarts work on a full disk
                    conn.execute(
                        "INSERT OR IGNORE INTO actors VALUES (?, ?)", (name, str(uuid.uuid4()))
                    )
                    row = conn.execute(
                        "SELECT actor_id FROM actors WHERE name = ?", (name,)
                    ).fetchone()
            except _UNREADABLE as exc:
                raise StoreError(f"event database {self._database}: {exc}") from exc
        if row is None or not isinstance(row[0], str):
            raise StoreError(f"event database {self._database}: the id of {name!r} is unreadable")
        actor_id: str = row[0]
        return actor_id

    def actor_ids(self) -> list[str]:
        """Return the ids of the actors with saved events, sorted.

        Raises:
            StoreError: the database is closed, or cannot be opened or read.
        """
        with self._lock:
            if self._conn is None and not self._closed:
                if self.path is not None and not self.path.exists():
                    return []  # a lazy database whose file was never needed
                self._connect()
        rows = self._read("SELECT DISTINCT actor_id FROM events ORDER BY actor_id", ())
        ids = [row[0] for row in rows]
        if not all(isinstance(actor_id, str) for actor_id in ids):
            raise StoreError(f"event database {self._database}: an actor id is not text")
        return ids

    def status(self) -> ChainStatus:
        """Say whether writing works: events lost since the file was opened, and why."""
        with self._losses_lock:
            return ChainStatus(saved=True, lost=sum(self._lost.values()), error=self._error)

    def flush(self) -> None:
        """Wait until every saved event recorded so far is written.

        Losses not yet recorded in their chains are recorded first (so a flush after
        the disk has space again completes the chains).

        Raises:
            StoreError: events were lost since the previous flush (each failure is also
                logged when it happens), or the writer did not catch up within 60 s.
        """
        self._hand_over(None)
        with self._lock:
            chains = list(self._saved.values())
            orphans = [
                actor_id
                for actor_id, owed in self._owed.items()
                if owed and actor_id not in self._saved
            ]
        for actor_id in orphans:  # their chain objects were dropped with events owed
            with contextlib.suppress(ValueError):  # the id is now used by a chain in memory
                chains.append(self.chain(actor_id, persist=True))
        for chain in chains:
            chain.settle()
        self._wait()
        with self._losses_lock:
            total = sum(self._lost.values())
            lost, self._reported = total - self._reported, total
            error = self._last_error
        if lost:
            why = f" ({error})" if error else ""
            raise StoreError(
                f"event database {self._database}: writing events failed: {lost} lost{why}"
            )

    def close(self) -> None:
        """Write the pending events, stop the writer and close the file; safe to repeat."""
        if self._writer is not None and not self._closed:
            with contextlib.suppress(StoreError):  # losses were logged as they happened
                self.flush()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._writer
            if writer is not None:
                self._queue.put(None, urgent=True)
        if writer is not None:
            writer.join(_WAIT)
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
        except (OSError, *_UNREADABLE) as exc:
            raise StoreError(f"event database {self._database}: cannot open: {exc}") from exc
        try:
            conn.executescript(_SCHEMA)
        except _UNREADABLE as exc:
            conn.close()
            raise StoreError(f"event database {self._database}: cannot open: {exc}") from exc
        self._conn = conn
        self._writer = threading.Thread(
            target=self._write_loop, name="theater-py-event-writer", daemon=True
        )
        self._writer.start()
        # A daemon, so a forgotten close() cannot hang the interpreter; this still
        # writes what is queued when the interpreter exits.
        atexit.register(self.close)

    # -- internals: the hot path, reads and the writer --------------------------------

    def _open_connection(self) -> sqlite3.Connection:
        # Callers hold self._conn_lock.
        if self._conn is None or self._closed:
            raise StoreError(f"event database {self._database} is closed")
        return self._conn

    def _enqueue(self, item: _Row | _Durable, *, urgent: bool) -> None:
        # Under the lock, so no row is ever queued behind close()'s stop sentinel.
        # urgent: its recorder waits for it (an fsync row).
        with self._lock:
            if self._closed:
                raise StoreError(f"event database {self._database} is closed")
            self._queue.put(item, urgent=urgent)

    def _wait(self) -> None:
        with self._lock:
            if self._writer is None or self._closed:
                return
            done = threading.Event()
            self._queue.put(done, urgent=True)
        if not done.wait(_WAIT):
            raise StoreError(
                f"event database {self._database}: events not written within {_WAIT:.0f} s"
            )

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        self._wait()
        with self._conn_lock:
            conn = self._open_connection()
            try:
                return conn.execute(sql, params).fetchall()
            except _UNREADABLE as exc:
                raise StoreError(f"event database {self._database}: cannot read: {exc}") from exc

    def _status(self, actor_id: str) -> ChainStatus:
        with self._losses_lock:
            return ChainStatus(saved=True, lost=self._lost[actor_id], error=self._error)

    def _write_loop(self) -> None:
        while True:
            rows: list[_Row] = []
            synced: list[threading.Event] = []
            waiters: list[threading.Event] = []
            stop = False
            for item in self._queue.take():
                if isinstance(item, tuple):
                    rows.append(item)
                elif isinstance(item, _Durable):
                    rows.append(item.row)
                    synced.append(item.done)
                elif item is None:
                    stop = True  # close() queues nothing after it
                else:
                    waiters.append(item)
            if rows:
                try:
                    self._write(rows, sync=bool(synced))
                except Exception:  # the writer must outlive any surprise
                    logger.exception("event database %s: writing failed", self._database)
            for waiter in (*synced, *waiters):
                waiter.set()
            if stop:
                return

    def _write(self, rows: list[_Row], *, sync: bool) -> None:
        failed: list[tuple[_Row, sqlite3.Error]] = []
        with self._conn_lock:
            conn = self._conn
            assert conn is not None
            try:
                if sync:  # this batch holds an fsync chain's rows: sync the WAL at commit
                    conn.execute("PRAGMA synchronous = FULL")
                _insert(conn, rows)
            except sqlite3.IntegrityError:
                # One bad row (another writer took its number) must not cost the batch.
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
                        failed.append((row, exc))
            except sqlite3.Error as exc:
                failed = [(row, exc) for row in rows]
            finally:
                if sync:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous = NORMAL")
        if failed:
            self._lose(failed)
        elif self._error is not None:
            with self._losses_lock:
                self._error = None
            logger.warning("event database %s: writing events works again", self._database)
        if len(failed) < len(rows):  # writing works: record what was lost
            self._hand_over(None)

    def _lose(self, failed: list[tuple[_Row, sqlite3.Error]]) -> None:
        error = str(failed[-1][1]) or type(failed[-1][1]).__name__
        with self._losses_lock:
            for actor_id, seq, digest, parent, event_type, data_json, *_rest in (
                row for row, _exc in failed
            ):
                self._lost[actor_id] += 1
                self._add_gap(actor_id, _Gap(seq, seq, parent, digest, error))
                if event_type == LOST_EVENT:  # the record of an earlier loss is lost too
                    declared = _Gap.read(_decode(data_json))
                    if declared is not None:
                        self._add_gap(actor_id, declared)
            first, self._error, self._last_error = self._error is None, error, error
        if first:
            logger.error(
                "event database %s: cannot write events (%s); they are lost until writing"
                " works again, then recorded in their chains as %r events",
                self._database,
                error,
                LOST_EVENT,
            )

    def _add_gap(self, actor_id: str, gap: _Gap) -> None:
        # Under _losses_lock: keep the runs sorted, merging those that touch.
        merged: list[_Gap] = []
        for run in sorted([*self._gaps.get(actor_id, ()), gap], key=lambda g: g.first):
            if merged and run.first <= merged[-1].last + 1:
                if run.last > merged[-1].last:
                    merged[-1] = attrs.evolve(merged[-1], last=run.last, last_hash=run.last_hash)
            else:
                merged.append(run)
        self._gaps[actor_id] = merged

    def _hand_over(self, actor_ids: list[str] | None) -> None:
        """Have the chains record the losses not yet recorded (with their next event)."""
        with self._losses_lock:
            for actor_id in list(self._gaps) if actor_ids is None else actor_ids:
                chain = self._saved.get(actor_id)
                gaps = self._gaps.get(actor_id)
                if chain is None or not gaps:
                    continue
                del self._gaps[actor_id]
                for gap in gaps:
                    span = _span(gap.first, gap.last)
                    chain.owe(LOST_EVENT, gap.data(), f"{span} not saved: {gap.error}")

    def _pending_losses(self, actor_id: str) -> list[_Gap]:
        """The runs of an actor's events lost and not yet recorded in its chain: those
        still waiting for writing to work, and those owed to the chain."""
        with self._losses_lock:
            gaps = list(self._gaps.get(actor_id, ()))
        owed = list(self._owed.get(actor_id, ()))
        gaps += [
            gap
            for event_type, data, _description in owed
            if event_type == LOST_EVENT and (gap := _Gap.read(data)) is not None
        ]
        return sorted(gaps, key=lambda gap: gap.first)

    def _after_losses(self, actor_id: str, count: int, last: str | None) -> tuple[int, str | None]:
        """Return a chain's tail, counting the events lost after its last saved one."""
        with self._losses_lock:
            gaps = self._gaps.get(actor_id)
            if gaps and gaps[-1].last >= count:
                return gaps[-1].last + 1, gaps[-1].last_hash
        return count, last


def _insert(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    """Insert the rows in one transaction, or none of them."""
    conn.execute("BEGIN")
    try:
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
