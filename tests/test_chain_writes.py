"""A failed write of a saved chain is reported, writing resumes, and the loss is recorded."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import ManifestFactory
from theater_py import ActorStartError, Runtime
from theater_py.chain import LOST_EVENT, EventChain, EventDatabase
from theater_py.errors import StoreError

FULL = "database or disk is full"


def disk_full(db: EventDatabase, full: bool) -> None:
    """Simulate a full disk: cap the file at the pages it has (SQLite's max_page_count)."""
    with db._conn_lock:
        conn = db._conn
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0] if full else 2**30
        conn.execute(f"PRAGMA max_page_count = {pages}")


class FailingInserts:
    """A connection whose inserts fail while ``full`` is set, as on a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.full = False

    def _check(self, sql: str) -> None:
        if self.full and sql.startswith("INSERT"):
            raise sqlite3.OperationalError(FULL)

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        self._check(sql)
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, *args: object) -> sqlite3.Cursor:
        self._check(sql)
        return self.conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


def failing_disk(db: EventDatabase) -> FailingInserts:
    """Put a connection whose inserts can be made to fail under the database's writer."""
    with db._conn_lock:
        failing = FailingInserts(db._conn)  # type: ignore[arg-type]
        db._conn = failing  # type: ignore[assignment]
    return failing


def fill(db: EventDatabase, chain: EventChain) -> int:
    """Record events on a full disk until one is lost; return its number."""
    for _ in range(1000):
        event = chain.record("during", {"pad": "x" * 500})
        chain.events()  # waits for the writer, and reads still work
        if db.status().error is not None:
            return len(chain) - 1
    raise AssertionError(f"nothing was lost: {event}")


def saved_numbers(path: Path, actor_id: str) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT seq FROM events WHERE actor_id = ? ORDER BY seq", (actor_id,))
        return [row[0] for row in rows]
    finally:
        conn.close()


def test_a_full_disk_loses_events_then_writing_resumes_and_verify_names_the_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.sqlite3"
    with EventDatabase(path) as db:
        chain = db.chain("a", persist=True)
        for i in range(5):
            chain.record("before", {"i": i})
        db.flush()

        disk_full(db, True)
        first_lost = fill(db, chain)
        for _ in range(20):
            chain.record("during", {"pad": "x" * 500})
        chain.events()
        assert db.status().error == FULL
        assert chain.status().lost == db.status().lost == 21
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1  # once per failure, not once per event
        assert FULL in errors[0].getMessage()
        with pytest.raises(StoreError, match=rf"writing events failed: \d+ lost \({FULL}\)"):
            db.flush()

        disk_full(db, False)
        after = [chain.record("after", {"i": i}) for i in range(3)]
        db.flush()  # writes again: nothing new was lost
        assert db.status().error is None
        result = chain.verify()

    numbers = saved_numbers(path, "a")
    lost = sorted(set(range(numbers[-1] + 1)) - set(numbers))
    assert lost[0] == first_lost
    assert lost == list(range(first_lost, lost[-1] + 1))  # one run, recorded as one loss
    assert (result.ok, result.first_broken, result.missing) == (
        False,
        first_lost,
        ((first_lost, lost[-1]),),
    )
    assert result.reason is not None
    assert result.reason.startswith(f"events {first_lost}-{lost[-1]} were not saved ({FULL});")
    with EventDatabase(path) as db:
        reopened = db.chain("a", persist=True)
        assert reopened.verify() == result
        events = reopened.events()
    assert [e.event_type for e in events].count(LOST_EVENT) == 1
    assert all(event in events for event in after)


def test_an_actor_keeps_its_chain_going_through_a_full_disk(
    make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    with Runtime(home=tmp_path / "home") as runtime:
        actor = runtime.start_actor(make_manifest("Echo", save_chain=True))
        db = runtime.event_database
        disk = failing_disk(db)
        disk.full = True
        for i in range(50):
            assert actor.request({"n": i}) == {"echo": {"n": i}}
        actor.events()
        cell = runtime.find_cell("echo")
        assert cell is not None
        assert cell.chain.status().error == FULL
        disk.full = False
        assert actor.request("again") == {"echo": "again"}
        with pytest.raises(StoreError, match=r"\d+ lost"):
            db.flush()
        assert cell.chain.status().error is None
        result = actor.verify()
    assert not result.ok
    assert len(result.missing) == 1
    assert result.reason is not None
    assert "were not saved (database or disk is full)" in result.reason


def test_a_saved_actor_whose_database_cannot_open_fails_to_start(
    make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / "events.sqlite3").mkdir(parents=True)  # a folder where the file should be
    with Runtime(home=home) as runtime:
        with pytest.raises(ActorStartError, match="cannot open its saved chain"):
            runtime.start_actor(make_manifest("Echo", save_chain=True))
        # The runtime goes on: an actor whose chain stays in memory starts.
        assert runtime.start_actor(make_manifest("Echo", name="other")).request(1) == {"echo": 1}


def test_a_loss_record_lost_in_its_turn_is_recorded_again_with_it(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    with EventDatabase(path) as db:
        failing = failing_disk(db)
        chain = db.chain("a", persist=True)
        chain.record("before")
        db.flush()
        failing.full = True
        for _ in range(3):
            chain.record("during")  # events 1-3: lost
        chain.events()  # the writer tried them
        with pytest.raises(StoreError, match="4 lost"):
            db.flush()  # their events-lost record (event 4) is lost too
        with pytest.raises(StoreError, match="1 lost"):
            db.flush()  # and so is the next one (event 5)
        failing.full = False
        chain.record("after")
        db.flush()
        result = chain.verify()
        events = chain.events()
        db._conn = failing.conn

    assert saved_numbers(path, "a") == [0, 6, 7]
    assert [e.event_type for e in events] == ["before", "after", LOST_EVENT]
    assert events[2].data["first"] == 1
    assert events[2].data["last"] == 5
    assert result.missing == ((1, 5),)
    assert result.reason == f"events 1-5 were not saved ({FULL}); event 7 records their loss"
