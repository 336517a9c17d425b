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
