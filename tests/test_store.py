"""Tests of the content-addressed store."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from theater_py.errors import StoreError
from theater_py.store import ContentRef, ContentStore


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ContentStore]:
    """A content store on a file, and one in memory."""
    opened = (
        ContentStore.open(tmp_path / "store.sqlite3")
        if request.param == "file"
        else ContentStore.in_memory()
    )
    yield opened
    opened.close()


@pytest.fixture
def sid(store: ContentStore) -> str:
    """A new store id in the store."""
    return store.new_store()


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_new_store_ids_are_distinct_uuid4s(store: ContentStore) -> None:
    first, second = store.new_store(), store.new_store()
    assert first != second
    assert uuid.UUID(first).version == 4
    assert store.list_labels(first) == []
    assert store.list_all_content(first) == []
    assert store.calculate_total_size(first) == 0


def test_content_is_stored_under_its_sha256(store: ContentStore, sid: str) -> None:
    ref = store.store(sid, b"hello")

    assert ref == ContentRef(digest(b"hello"))
    assert str(ref) == ref.hash
    assert store.get(sid, ref) == b"hello"
    assert store.exists(sid, ref)
    assert not store.exists(sid, ContentRef.of(b"other"))


def test_same_bytes_are_saved_once(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with ContentStore.open(path) as store:
        sid = store.new_store()
        first = store.store(sid, b"same")
        second = store.store(sid, bytearray(b"same"))
        store.store(sid, b"different")

        assert first == second
        assert store.list_all_content(sid) == [first, ContentRef.of(b"different")]
        assert store.calculate_total_size(sid) == len(b"same") + len(b"different")

    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT count(*) FROM content WHERE hash = ?", (first.hash,))
        assert rows.fetchone() == (1,)
    conn.close()


def test_stores_are_separate(store: ContentStore) -> None:
    one, two = store.new_store(), store.new_store()
    ref = store.store_at_label(one, "x", b"only in one")

    assert not store.exists(two, ref)
    assert store.get_by_label(two, "x") is None
    with pytest.raises(StoreError, match="holds no content"):
        store.get(two, ref)
    with pytest.raises(StoreError, match="holds no content"):
        store.label(two, "x", ref)


def test_labels_point_at_content_and_move(store: ContentStore, sid: str) -> None:
    old, new = store.store(sid, b"v1"), store.store(sid, b"v2")

    store.label(sid, "current", old)
    assert store.get_by_label(sid, "current") == old
    store.label(sid, "current", new)
    assert store.get_by_label(sid, "current") == new
    store.replace_at_label(sid, "current", old)
    assert store.get_by_label(sid, "current") == old
    store.label(sid, "another", new)

    assert store.list_labels(sid) == ["another", "current"]
    assert store.get_by_label(sid, "missing") is None


def test_remove_label_keeps_the_content(store: ContentStore, sid: str) -> None:
    ref = store.store_at_label(sid, "doc", b"body")

    store.remove_label(sid, "doc")

    assert store.get_by_label(sid, "doc") is None
    assert store.list_labels(sid) == []
    assert store.get(sid, ref) == b"body"
    with pytest.raises(StoreError, match="no label 'doc'"):
        store.remove_label(sid, "doc")


def test_store_at_label_and_replace_content_at_label(store: ContentStore, sid: str) -> None:
    first = store.store_at_label(sid, "state", b"one")
    assert first == ContentRef.of(b"one")
    assert store.get_by_label(sid, "state") == first

    second = store.replace_content_at_label(sid, "state", b"two")

    assert store.get_by_label(sid, "state") == second
    assert store.get(sid, second) == b"two"
    assert store.list_all_content(sid) == [first, second]


def test_total_size_counts_each_content_once(store: ContentStore, sid: str) -> None:
    store.store(sid, b"a" * 10)
    store.store(sid, b"a" * 10)
    store.store_at_label(sid, "x", b"a" * 10)
    store.store_at_label(sid, "y", b"b" * 5)

    assert store.calculate_total_size(sid) == 15


def test_labelling_missing_content_names_it(store: ContentStore, sid: str) -> None:
    ghost = ContentRef.of(b"never stored")

    for operation in (store.label, store.replace_at_label):
        with pytest.raises(StoreError, match=ghost.hash):
            operation(sid, "x", ghost)
    with pytest.raises(StoreError, match=ghost.hash):
        store.get(sid, ghost)
    assert store.list_labels(sid) == []


ANY_REF = ContentRef.of(b"x")
OPERATIONS: dict[str, Callable[[ContentStore, str], Any]] = {
    "store": lambda s, i: s.store(i, b"x"),
    "get": lambda s, i: s.get(i, ANY_REF),
    "exists": lambda s, i: s.exists(i, ANY_REF),
    "label": lambda s, i: s.label(i, "l", ANY_REF),
    "get_by_label": lambda s, i: s.get_by_label(i, "l"),
    "remove_label": lambda s, i: s.remove_label(i, "l"),
    "store_at_label": lambda s, i: s.store_at_label(i, "l", b"x"),
    "replace_content_at_label": lambda s, i: s.replace_content_at_label(i, "l", b"x"),
    "replace_at_label": lambda s, i: s.replace_at_label(i, "l", ANY_REF),
    "list_labels": lambda s, i: s.list_labels(i),
    "list_all_content": lambda s, i: s.list_all_content(i),
    "calculate_total_size": lambda s, i: s.calculate_total_size(i),
}


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_an_unknown_store_id_is_an_error(
    store: ContentStore, operation: Callable[[ContentStore, str], Any]
) -> None:
    other = store.new_store()
    store.store_at_label(other, "l", b"x")  # present elsewhere, so only the id is at fault

    with pytest.raises(StoreError, match="unknown store 'nope'"):
        operation(store, "nope")


def test_bad_arguments_are_typed_errors(store: ContentStore, sid: str) -> None:
    with pytest.raises(TypeError, match="content must be bytes"):
        store.store(sid, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ref must be a ContentRef"):
        store.get(sid, ANY_REF.hash)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="label must be a str"):
        store.get_by_label(sid, None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="label must not be empty"):
        store.store_at_label(sid, "", b"x")
    with pytest.raises(ValueError, match="hash"):
        ContentRef("not-a-digest")
    assert store.list_all_content(sid) == []


def test_large_blob_round_trip(store: ContentStore, sid: str) -> None:
    blob = random.Random(7).randbytes(8 * 1024 * 1024)

    ref = store.store_at_label(sid, "big", blob)

    assert ref.hash == digest(blob)
    assert store.get(sid, ref) == blob
    assert store.calculate_total_size(sid) == len(blob)


def test_concurrent_threads(store: ContentStore, sid: str) -> None:
    threads, per_thread = 8, 40
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(per_thread):
                store.store(sid, b"shared")
                store.store_at_label(sid, f"w{worker}", f"{worker}-{i}".encode())
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=30)

    assert errors == []
    assert len(store.list_all_content(sid)) == 1 + threads * per_thread
    assert store.list_labels(sid) == sorted(f"w{w}" for w in range(threads))
    for worker in range(threads):
        last = f"{worker}-{per_thread - 1}".encode()
        assert store.get_by_label(sid, f"w{worker}") == ContentRef.of(last)


def test_two_instances_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with ContentStore.open(path) as first, ContentStore.open(path) as second:
        sid = first.new_store()
        start = threading.Barrier(2)

        def work(store: ContentStore, name: str) -> None:
            start.wait(timeout=10)
            for i in range(50):
                store.store_at_label(sid, name, f"{name}-{i}".encode())
                store.store(sid, b"both")

        pool = [
            threading.Thread(target=work, args=(store, name))
            for store, name in ((first, "a"), (second, "b"))
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=30)

        assert second.get_by_label(sid, "a") == ContentRef.of(b"a-49")
        assert first.get_by_label(sid, "b") == ContentRef.of(b"b-49")
        assert len(first.list_all_content(sid)) == 101


def test_content_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "store.sqlite3"
    store = ContentStore.open(path)
    sid = store.new_store()
    ref = store.store_at_label(sid, "kept", b"persistent")
    store.close()
    store.close()

    with pytest.raises(StoreError, match="closed"):
        store.get(sid, ref)
    with ContentStore.open(path) as reopened:
        assert reopened.get_by_label(sid, "kept") == ref
        assert reopened.get(sid, ref) == b"persistent"


def test_in_memory_stores_are_independent() -> None:
    with ContentStore.in_memory() as one, ContentStore.in_memory() as two:
        sid = one.new_store()
        assert one.path is None
        with pytest.raises(StoreError, match="unknown store"):
            two.list_labels(sid)


def test_default_file_lives_in_the_home_folder(theater_home: Path) -> None:
    with ContentStore.open() as store:
        assert store.path == theater_home / "store.sqlite3"
        sid = store.new_store()
    with ContentStore.open() as store:
        assert store.list_labels(sid) == []


def test_get_refuses_content_whose_bytes_were_changed_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with ContentStore.open(path) as store:
        sid = store.new_store()
        ref = store.store(sid, b"the original bytes")
        other = store.store(sid, b"untouched")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE content SET data = ? WHERE hash = ?", (b"forged bytes!", ref.hash))
    conn.close()

    with ContentStore.open(path) as store:
        with pytest.raises(StoreError, match=f"content {ref.hash} is damaged"):
            store.get(sid, ref)
        assert store.get(sid, other) == b"untouched"
