"""Review of saved chains: a loss record outlives the chain object it was owed to."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from tests.test_chain_writes import failing_disk
from theater_py.chain import LOST_EVENT, EventDatabase


def lose_three_then_write_one(db: EventDatabase) -> None:
    """Save events 0-2, lose 3-5 to a full disk, save 6: the loss is owed to the chain."""
    chain = db.chain("a", persist=True)
    for i in range(3):
        chain.record("saved", {"i": i})
    db._wait()
    disk = failing_disk(db)
    disk.full = True
    for i in range(3):
        chain.record("lost", {"i": i})
    db._wait()
    disk.full = False
    chain.record("saved again")
    db._wait()  # written: the writer hands the loss over, to be recorded with the next event


@pytest.mark.parametrize("then", ["start again", "close"])
def test_a_loss_owed_to_a_dropped_chain_is_still_recorded(tmp_path: Path, then: str) -> None:
    # An actor that stops drops its chain object; the record of its loss went with it,
    # and the saved chain read as tampered with ("no event records their loss").
    path = tmp_path / "events.sqlite3"
    with EventDatabase(path) as db:
        lose_three_then_write_one(db)
        gc.collect()  # nothing holds the chain now
        if then == "start again":
            db.chain("a", persist=True).record("next run")
    with EventDatabase(path) as db:
        chain = db.chain("a", persist=True)
        result = chain.verify()
        assert result.missing == ((3, 5),), result.reason
        assert LOST_EVENT in {event.event_type for event in chain.events()}


def test_verify_names_events_lost_while_writing_still_fails(tmp_path: Path) -> None:
    # It said ok (3 events checked) for a chain of 6 whose last 3 the disk refused.
    with EventDatabase(tmp_path / "events.sqlite3") as db:
        chain = db.chain("a", persist=True)
        for i in range(3):
            chain.record("saved", {"i": i})
        db._wait()
        disk = failing_disk(db)
        disk.full = True
        for i in range(3):
            chain.record("lost", {"i": i})
        result = chain.verify()
        assert not result.ok
        assert (result.first_broken, result.missing) == (3, ((3, 5),))
        assert result.reason is not None and "events 3-5 were not saved" in result.reason
        disk.full = False


def test_verify_just_after_writing_works_again_is_not_a_broken_chain(tmp_path: Path) -> None:
    # The loss record is owed to the chain until its next event: verify read the file
    # before it and said "no event records their loss", as for a file tampered with.
    with EventDatabase(tmp_path / "events.sqlite3") as db:
        chain = db.chain("a", persist=True)
        for i in range(3):
            chain.record("saved", {"i": i})
        db._wait()
        disk = failing_disk(db)
        disk.full = True
        for i in range(3):
            chain.record("lost", {"i": i})
        db._wait()
        disk.full = False
        chain.record("saved again")  # still queued when verify begins
        result = chain.verify()
    assert result.missing == ((3, 5),)
    assert result.reason is not None and "no event records" not in result.reason
