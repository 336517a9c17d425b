"""A saved chain is checked from its first event, whatever is done to its file."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import ManifestFactory
from theater_py import Runtime
from theater_py.chain import ChainEvent, EventDatabase
from theater_py.errors import StoreError


def save_chain(path: Path, actor_id: str = "a", count: int = 6) -> list[ChainEvent]:
    with EventDatabase(path) as db:
        chain = db.chain(actor_id, persist=True)
        for i in range(count):
            chain.record("step", {"i": i, "text": "é" * (i % 3)}, f"step {i}")
        return chain.events()


def edit(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def verify(path: Path, actor_id: str = "a") -> tuple[bool, int | None, str | None]:
    with EventDatabase(path) as db:
        result = db.chain(actor_id, persist=True).verify()
    return result.ok, result.first_broken, result.reason


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.sqlite3"


def test_a_saved_chain_whose_first_events_are_deleted_does_not_verify(path: Path) -> None:
    save_chain(path)
    edit(path, "DELETE FROM events WHERE seq < 2")

    assert verify(path) == (
        False,
        0,
        "event 0: missing (events 0-1 are not saved, and no event records their loss)",
    )


def test_a_saved_chain_whose_head_is_cut_and_renumbered_does_not_verify(path: Path) -> None:
    save_chain(path)
    edit(path, "DELETE FROM events WHERE seq < 2", "UPDATE events SET seq = seq - 2")

    assert verify(path) == (False, 0, "event 0: parent_hash of the first event must be null")


@pytest.mark.parametrize(
    ("statements", "first_broken", "reason"),
    [
        (
            ["DELETE FROM events WHERE seq = 3"],
            3,
            "event 3: missing (event 3 is not saved, and no event records their loss)",
        ),
        (
            ["UPDATE events SET description = 'forged' WHERE seq = 4"],
            4,
            "event 4: hash mismatch",
        ),
        (  # an insertion: renumber the tail to make room, then add a forged event
            [
                "UPDATE events SET seq = seq + 100 WHERE seq >= 2",
                "UPDATE events SET seq = seq - 99 WHERE seq >= 102",
                "INSERT INTO events SELECT actor_id, 2, hash, parent_hash, event_type, data,"
                " timestamp, 'inserted' FROM events WHERE seq = 1",
            ],
            2,
            "event 2: parent_hash does not match event 1",
        ),
        (
            ["UPDATE events SET seq = 99 WHERE seq = 5"],
            5,
            "event 5: missing (events 5-98 are not saved, and no event records their loss)",
        ),
    ],
    ids=["deleted", "changed", "inserted", "renumbered"],
)
def test_any_deletion_insertion_or_change_is_reported_where_it_breaks(
    path: Path, statements: list[str], first_broken: int, reason: str
) -> None:
    save_chain(path)
    edit(path, *statements)

    assert verify(path) == (False, first_broken, reason)


def test_a_damaged_file_is_reported_as_a_store_error(path: Path) -> None:
    save_chain(path)
    path.write_bytes(b"not a database" * 500)

    with pytest.raises(StoreError, match="cannot open"), EventDatabase(path) as db:
        db.chain("a", persist=True)


def test_rows_of_the_wrong_type_are_reported_not_raised(path: Path) -> None:
    save_chain(path)
    edit(path, "UPDATE events SET data = 7, timestamp = 'noon' WHERE seq = 1")

    assert verify(path) == (False, 1, "event 1: timestamp must be an int")
    edit(path, "UPDATE events SET seq = 'five' WHERE seq = 5")
    with pytest.raises(StoreError, match="unreadable"), EventDatabase(path) as db:
        db.chain("a", persist=True)


# -- the fuzz test: flip bytes of a saved chain file --------------------------------------


def _saved_file(folder: Path) -> tuple[bytes, dict[str, list[ChainEvent]]]:
    path = folder / "original.sqlite3"
    chains = {
        actor: save_chain(path, actor, count) for actor, count in (("alpha", 60), ("beta", 25))
    }
    return path.read_bytes(), chains


def _trial(
    original: bytes, expected: dict[str, list[ChainEvent]], rng: random.Random, path: Path
) -> str:
    """Flip 1-3 bytes; return what happened: unreadable, unchanged or detected."""
    damaged = bytearray(original)
    for _ in range(rng.randint(1, 3)):
        damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    path.write_bytes(damaged)
    try:
        with EventDatabase(path) as db:
            seen = {}
            for actor_id in db.actor_ids():
                chain = db.chain(actor_id, persist=True)
                seen[actor_id] = (chain.events(), chain.verify().ok)
    except StoreError:  # anything else (a raw sqlite3 error) fails the test
        return "unreadable"
    # A damaged b-tree can list an id whose lookup finds no event: no event changed.
    phantoms = {actor for actor, (events, _ok) in seen.items() if not events}
    same = all(seen.get(a, ([], False))[0] == events for a, events in expected.items())
    if same and set(seen) - phantoms == set(expected):
        return "unchanged"
    # Cutting a chain's end is caught by comparing its last hash with one kept elsewhere.
    intact = all(
        actor in seen and seen[actor][1] and seen[actor][0][-1:] == events[-1:]
        for actor, events in expected.items()
    )
    assert not intact, "a change went undetected"
    return "detected"


def _fuzz(tmp_path: Path, trials: int, seed: int) -> None:
    original, expected = _saved_file(tmp_path)
    rng = random.Random(seed)
    outcomes = {"unreadable": 0, "unchanged": 0, "detected": 0}
    for trial in range(trials):
        try:
            outcomes[_trial(original, expected, rng, tmp_path / "damaged.sqlite3")] += 1
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, trial {trial}: {exc}") from None
    # The flips reached the events, not only free space (each run sees all three).
    assert outcomes["detected"] > trials // 20, outcomes


def test_flipped_bytes_of_a_saved_chain_are_detected_or_reported(tmp_path: Path) -> None:
    _fuzz(tmp_path, trials=300, seed=1)


@pytest.mark.slow
def test_flipped_bytes_of_a_saved_chain_are_detected_or_reported_thousands(
    tmp_path: Path,
) -> None:
    _fuzz(tmp_path, trials=3000, seed=2)


# -- a saved chain across runs -------------------------------------------------------------


def test_an_actor_started_again_under_its_name_continues_its_saved_chain(
    tmp_path: Path, make_manifest: ManifestFactory
) -> None:
    manifest = make_manifest("Echo", save_chain=True)
    home = tmp_path / "home"
    with Runtime(home=home) as runtime:
        first = runtime.start_actor(manifest)
        first.request("first run")
        actor_id = first.id
    with Runtime(home=home) as runtime:
        again = runtime.start_actor(manifest)
        other = runtime.start_actor(manifest, name="another")
        assert again.id == actor_id
        assert other.id != actor_id
        again.request("second run")
        events = again.events()
        assert again.verify().ok
    requests = [e.data for e in events if e.event_type == "request"]
    assert requests == ["first run", "second run"]
    assert [e.event_type for e in events].count("actor-start") == 2
