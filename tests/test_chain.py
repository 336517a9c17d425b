"""Tests of the event chain, its verification and the event database."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theater_py._home import ensure_home, theater_home
from theater_py.chain import (
    ChainEvent,
    EventChain,
    EventDatabase,
    MemoryChainStorage,
    event_hash,
    verify_events,
)
from theater_py.errors import StoreError


def canonical_hash(event: dict[str, Any]) -> str:
    """Hash an event as docs/events-and-store.md says, independently of the module."""
    body = {**event, "hash": ""}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_chain(count: int = 6) -> EventChain:
    chain = EventChain()
    for i in range(count):
        chain.record("step", {"i": i, "tags": ["a", "b"]}, f"step {i}")
    return chain


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db" / "events.sqlite3"


@pytest.fixture
def database(db_path: Path) -> Iterator[EventDatabase]:
    db = EventDatabase(db_path)
    yield db
    db.close()


# -- recording ---------------------------------------------------------------------------


def test_first_event_has_no_parent_and_each_next_links_to_the_one_before() -> None:
    chain = EventChain()
    first = chain.record("actor-start", {"component": "x"}, "start")
    second = chain.record("request", [1, 2, 3], "request")

    assert first.parent_hash is None
    assert second.parent_hash == first.hash
    assert chain.last_hash == second.hash
    assert len(chain) == 2
    assert chain.events() == [first, second]


def test_hash_is_sha256_of_the_documented_canonical_json() -> None:
    chain = EventChain()
    data = {"zeta": [1, 2.5, None, True], "alpha": {"ünïcode": '日本語 "quoted"\n'}}
    first = chain.record("request", data, "façade")
    second = chain.record("actor-stop")

    assert first.hash == canonical_hash(first.to_json())
    assert second.hash == canonical_hash(second.to_json())
    assert len(first.hash) == 64
    assert first.hash == event_hash(
        parent_hash=None,
        event_type="request",
        data=data,
        timestamp=first.timestamp,
        description="façade",
    )


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(data=JSON, event_type=st.text(), description=st.text())
def test_any_json_event_hashes_canonically_and_survives_a_json_round_trip(
    data: Any, event_type: str, description: str
) -> None:
    chain = EventChain()
    chain.record("before")
    event = chain.record(event_type, data, description)

    assert event.hash == canonical_hash(event.to_json())
    read_back = json.loads(json.dumps([e.to_json() for e in chain.events()]))
    assert verify_events(read_back).ok


def test_event_fields_and_json_shape() -> None:
    before = time.time_ns() // 1_000_000
    event = EventChain().record("init", {"incarnation": 1}, "init done")
    after = time.time_ns() // 1_000_000

    assert before <= event.timestamp <= after
    assert event.to_json() == {
        "hash": event.hash,
        "parent_hash": None,
        "event_type": "init",
        "data": {"incarnation": 1},
        "timestamp": event.timestamp,
        "description": "init done",
    }


def test_recorded_data_is_a_copy_the_caller_cannot_change() -> None:
    chain = EventChain()
    messages = [{"role": "user", "content": "hi"}]
    event = chain.record("request", {"messages": messages, "pair": (1, 2)})
    messages.append({"role": "assistant", "content": "hello"})

    assert event.data == {"messages": [{"role": "user", "content": "hi"}], "pair": [1, 2]}
    assert chain.verify().ok


def test_recorded_data_is_the_canonical_json_decoded_as_an_eager_copy_was() -> None:
    # An event keeps its data's canonical text and decodes it when first read: the value
    # is the one an eager decoded copy had (tuples to lists, integer keys to strings),
    # whatever the caller does to its object after recording, and read twice it is the
    # same object.
    chain = EventChain()
    data: dict[str, Any] = {"pair": (1, 2), "by_id": {3: "c", 1: "a"}, "nested": [{"x": 1.5}]}
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    event = chain.record("request", data, "request")
    data["pair"] = "changed"
    data["by_id"][2] = "b"
    data["nested"][0]["x"] = 0

    expected = json.loads(canonical)
    assert (
        event.data
        == expected
        == {"by_id": {"1": "a", "3": "c"}, "nested": [{"x": 1.5}], "pair": [1, 2]}
    )
    assert event.data is event.data
    assert event.hash == canonical_hash(event.to_json())
    eager = ChainEvent(
        event.hash, event.parent_hash, "request", expected, event.timestamp, "request"
    )
    assert event == eager and eager == event
    assert hash(chain.record("n", 1)) == hash(chain.events()[-1])
    assert repr(event) == repr(eager)
    assert attrs.evolve(event, description="x").data == expected
    assert attrs.asdict(event) == attrs.asdict(eager)
    unread = chain.record("request", {"pair": (1, 2)})
    assert pickle.loads(pickle.dumps(unread)) == unread
    assert copy.deepcopy(unread).data == {"pair": [1, 2]}
    assert chain.verify().ok
    with pytest.raises(AttributeError, match="no attribute 'datum'"):
        getattr(unread, "datum")  # noqa: B009 -- the attribute is missing on purpose


def test_recorded_data_reads_alike_from_every_thread() -> None:
    chain = EventChain()
    events = [chain.record("step", {"i": i, "tags": ("a", "b")}) for i in range(200)]
    seen: list[list[Any]] = [[], []]

    def read(into: list[Any]) -> None:
        into.extend(event.data for event in events)

    threads = [threading.Thread(target=read, args=(into,)) for into in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    expected = [{"i": i, "tags": ["a", "b"]} for i in range(200)]
    assert seen[0] == seen[1] == [event.data for event in events] == expected


@pytest.mark.parametrize(
    "data",
    [
        b"bytes",
        {1, 2},
        object(),
        float("nan"),
        {"nested": [float("inf")]},
        {1: "a", "b": 2},
        "lone surrogate \ud800",
    ],
    ids=["bytes", "set", "object", "nan", "inf", "mixed-keys", "surrogate"],
)
def test_non_json_data_raises_type_error_naming_the_event_type(data: object) -> None:
    chain = EventChain()
    chain.record("ok")

    with pytest.raises(TypeError, match="'http-response'"):
        chain.record("http-response", data)
    assert len(chain) == 1
    assert chain.verify().ok


def test_event_type_and_description_must_be_text() -> None:
    chain = EventChain()
    with pytest.raises(TypeError, match="event_type"):
        chain.record(42, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="description"):
        chain.record("x", None, None)  # type: ignore[arg-type]
    assert len(chain) == 0


def test_concurrent_recording_forms_one_unbroken_chain() -> None:
    chain = EventChain()
    threads, per_thread = 8, 300
    start = threading.Barrier(threads)

    def work(worker: int) -> None:
        start.wait(timeout=10)
        for i in range(per_thread):
            chain.record("tick", {"worker": worker, "i": i})

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)

    events = chain.events()
    assert len(events) == len(chain) == threads * per_thread
    assert chain.verify().ok
    assert len({event.hash for event in events}) == len(events)
    for worker in range(threads):
        own = [e.data["i"] for e in events if e.data["worker"] == worker]
        assert own == list(range(per_thread))


# -- verification ------------------------------------------------------------------------


def test_fresh_and_empty_chains_verify() -> None:
    assert make_chain().verify() == verify_events(make_chain().events())
    result = make_chain(6).verify()
    assert (result.ok, result.checked, result.first_broken, result.reason) == (True, 6, None, None)
    assert verify_events([]).ok


def edit_data(events: list[ChainEvent]) -> list[ChainEvent]:
    events[3] = attrs.evolve(events[3], data={"i": 999})
    return events


def edit_hash(events: list[ChainEvent]) -> list[ChainEvent]:
    events[3] = attrs.evolve(events[3], hash="0" * 64)
    return events


def edit_parent_hash(events: list[ChainEvent]) -> list[ChainEvent]:
    events[3] = attrs.evolve(events[3], parent_hash=events[1].hash)
    return events


def edit_and_rehash(events: list[ChainEvent]) -> list[ChainEvent]:
    # A careful forger recomputes the edited event's own hash: the next link breaks.
    fields = {**events[3].to_json(), "description": "forged"}
    events[3] = attrs.evolve(events[3], description="forged", hash=canonical_hash(fields))
    return events


def delete_middle(events: list[ChainEvent]) -> list[ChainEvent]:
    del events[3]
    return events


def delete_first(events: list[ChainEvent]) -> list[ChainEvent]:
    del events[0]
    return events


def reorder(events: list[ChainEvent]) -> list[ChainEvent]:
    events[2], events[3] = events[3], events[2]
    return events


def edit_timestamp(events: list[ChainEvent]) -> list[ChainEvent]:
    events[5] = attrs.evolve(events[5], timestamp=events[5].timestamp + 1)
    return events


@pytest.mark.parametrize(
    ("tamper", "first_broken", "reason"),
    [
        (edit_data, 3, "event 3: hash mismatch"),
        (edit_hash, 3, "event 3: hash mismatch"),
        (edit_parent_hash, 3, "event 3: parent_hash does not match event 2"),
        (edit_and_rehash, 4, "event 4: parent_hash does not match event 3"),
        (delete_middle, 3, "event 3: parent_hash does not match event 2"),
        (delete_first, 0, "event 0: parent_hash of the first event must be null"),
        (reorder, 2, "event 2: parent_hash does not match event 1"),
        (edit_timestamp, 5, "event 5: hash mismatch"),
    ],
)
def test_verify_finds_the_first_broken_event(tamper: Any, first_broken: int, reason: str) -> None:
    events = tamper(make_chain(6).events())

    for form in (events, [json.loads(json.dumps(e.to_json())) for e in events]):
        result = verify_events(form)
        assert not result.ok
        assert result.first_broken == first_broken
        assert result.checked == first_broken
        assert result.reason == reason


def test_verify_reads_events_back_from_json() -> None:
    text = json.dumps([event.to_json() for event in make_chain(4).events()])
    assert verify_events(json.loads(text)).ok


def test_verify_reports_malformed_events_instead_of_raising() -> None:
    events: list[Any] = [e.to_json() for e in make_chain(3).events()]
    del events[1]["timestamp"]
    assert verify_events(events).reason == "event 1: missing field 'timestamp'"

    events = [e.to_json() for e in make_chain(3).events()]
    events[2]["timestamp"] = "yesterday"
    result = verify_events(events)
    assert (result.first_broken, result.reason) == (2, "event 2: timestamp must be an int")

    mixed: list[Any] = [e.to_json() for e in make_chain(2).events()]
    mixed.append(7)  # not an event at all
    assert verify_events(mixed).first_broken == 2


# -- storage -----------------------------------------------------------------------------


def test_memory_storage_continues_a_chain_it_already_holds() -> None:
    storage = MemoryChainStorage()
    first = EventChain(storage)
    first.record("a")
    first.record("b")

    again = EventChain(storage)
    event = again.record("c")

    assert len(again) == 3
    assert event.parent_hash == first.last_hash
    assert again.verify().ok


def test_persisted_chain_continues_across_database_instances(db_path: Path) -> None:
    with EventDatabase(db_path) as db:
        chain = db.chain("actor-1", persist=True)
        for i in range(3):
            chain.record("step", {"i": i})
        last = chain.last_hash

    with EventDatabase(db_path) as db:
        chain = db.chain("actor-1", persist=True)
        assert (len(chain), chain.last_hash) == (3, last)
        resumed = chain.record("step", {"i": 3})
        assert resumed.parent_hash == last
        assert db.actor_ids() == ["actor-1"]

    with EventDatabase(db_path) as db:
        events = db.chain("actor-1", persist=True).events()
        assert [e.data["i"] for e in events] == [0, 1, 2, 3]
        assert verify_events(events).ok


def test_events_edited_in_the_sqlite_file_fail_verification(db_path: Path) -> None:
    with EventDatabase(db_path) as db:
        chain = db.chain("a", persist=True)
        for i in range(5):
            chain.record("step", {"i": i})
        db.chain("b", persist=True).record("other")

    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE events SET data = ? WHERE actor_id = 'a' AND seq = 2", ('{"i":7}',))
        conn.execute("UPDATE events SET data = 'not json' WHERE actor_id = 'b' AND seq = 0")
    conn.close()

    with EventDatabase(db_path) as db:
        result = db.chain("a", persist=True).verify()
        assert (result.ok, result.first_broken, result.reason) == (
            False,
            2,
            "event 2: hash mismatch",
        )
        assert db.chain("b", persist=True).verify().first_broken == 0

    with sqlite3.connect(db_path) as conn:
        conn.execute("DELETE FROM events WHERE actor_id = 'a' AND seq = 1")
    conn.close()
    with EventDatabase(db_path) as db:
        assert db.chain("a", persist=True).verify().first_broken == 1


def test_chain_is_the_same_object_while_in_use(database: EventDatabase) -> None:
    persisted = database.chain("p", persist=True)
    memory = database.chain("m", persist=False)

    assert database.chain("p", persist=True) is persisted
    assert database.chain("m", persist=False) is memory
    with pytest.raises(ValueError, match="'p'"):
        database.chain("p", persist=False)


def test_memory_chains_stay_out_of_the_file(database: EventDatabase) -> None:
    database.chain("m", persist=False).record("x")
    database.chain("p", persist=True).record("x")

    assert database.actor_ids() == ["p"]


def test_close_writes_every_event_recorded_before_it(db_path: Path) -> None:
    db = EventDatabase(db_path)
    chains = [db.chain(f"actor-{n}", persist=True) for n in range(4)]
    recorded = [0] * len(chains)
    closing = threading.Event()

    def work(n: int) -> None:
        while True:
            try:
                chains[n].record("tick", {"n": recorded[n]})
            except StoreError:
                return
            recorded[n] += 1
            if recorded[n] == 200:
                closing.set()

    pool = [threading.Thread(target=work, args=(n,)) for n in range(len(chains))]
    for thread in pool:
        thread.start()
    assert closing.wait(timeout=30)
    db.close()
    for thread in pool:
        thread.join(timeout=30)

    with EventDatabase(db_path) as reopened:
        for n in range(len(chains)):
            chain = reopened.chain(f"actor-{n}", persist=True)
            assert len(chain) == recorded[n]
            assert chain.verify().ok


def test_a_closed_database_refuses_persisted_events(db_path: Path) -> None:
    db = EventDatabase(db_path)
    chain = db.chain("a", persist=True)
    db.close()
    db.close()

    with pytest.raises(StoreError, match="closed"):
        chain.record("late")
    with pytest.raises(StoreError, match="closed"):
        db.chain("b", persist=True)


def test_write_failures_surface_on_flush(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Two databases recording the same actor's chain collide on (actor_id, seq).
    with EventDatabase(db_path) as first, EventDatabase(db_path) as second:
        stale = first.chain("a", persist=True)
        second.chain("a", persist=True).record("one")
        second.flush()
        stale.record("clash")
        with pytest.raises(StoreError, match="writing events failed"):
            first.flush()
    assert "lost event 0 of actor a" in caplog.text


def test_in_memory_database_persists_in_memory() -> None:
    with EventDatabase.in_memory() as db:
        db.chain("a", persist=True).record("x", {"y": 1})
        assert db.path is None
        assert db.actor_ids() == ["a"]
        assert db.chain("a", persist=True).events()[0].data == {"y": 1}


def test_lazy_database_creates_its_file_only_for_a_persisted_chain(db_path: Path) -> None:
    with EventDatabase.lazy(db_path) as db:
        db.chain("m", persist=False).record("x")
        assert db.actor_ids() == []
        assert not db_path.exists()
        db.chain("p", persist=True).record("x")
        assert db_path.exists()


def test_default_database_lives_in_the_home_folder(theater_home: Path) -> None:
    with EventDatabase() as db:
        assert db.path == theater_home / "events.sqlite3"
        assert db.path.exists()
        assert stat.S_IMODE(theater_home.stat().st_mode) == 0o700


# -- the home folder ---------------------------------------------------------------------


def test_home_comes_from_the_environment_else_the_user_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THEATER_PY_HOME", str(tmp_path / "h"))
    assert theater_home() == tmp_path / "h"

    monkeypatch.setenv("THEATER_PY_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert theater_home() == tmp_path / "user" / ".theater-py"
    assert not theater_home().exists()


def test_ensure_home_creates_a_private_folder_once(theater_home: Path) -> None:
    assert ensure_home() == theater_home
    assert stat.S_IMODE(theater_home.stat().st_mode) == 0o700

    theater_home.chmod(0o750)
    ensure_home()
    assert stat.S_IMODE(theater_home.stat().st_mode) == 0o750


def test_database_paths_expand_the_user_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with EventDatabase("~/chains/events.sqlite3") as db:
        assert db.path == tmp_path / "chains" / "events.sqlite3"
        assert db.path.exists()


def test_a_bounded_memory_chain_verifies_its_window_and_catches_edits():
    from theater_py.chain import EventChain, MemoryChainStorage, verify_events

    chain = EventChain(MemoryChainStorage(max_events=5))
    for n in range(12):
        chain.record("tick", {"n": n})
    events = chain.events()
    assert [e.data["n"] for e in events] == [7, 8, 9, 10, 11]
    assert chain.verify().ok
    assert not verify_events(events).ok  # as a whole chain its start is missing
    tampered = [e.to_json() for e in events]
    tampered[2]["data"] = {"n": 99}
    result = verify_events(tampered, from_start=False)
    assert (result.ok, result.first_broken) == (False, 2)


@pytest.mark.parametrize(
    "first", ["theater_py._eventdb", "theater_py.chain"], ids=["eventdb-first", "chain-first"]
)
def test_the_sqlite_backend_imports_whichever_module_comes_first(first: str) -> None:
    # A fresh interpreter: in this one both modules are already imported.
    code = (
        f"import {first}\n"
        "from theater_py.chain import LOST_EVENT, EventDatabase\n"
        "from theater_py._eventdb import EventDatabase as Backend\n"
        "assert EventDatabase is Backend and LOST_EVENT == 'events-lost'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
