"""The content-addressed store, with Theater's operations, in one SQLite file.

Content is saved under the hex SHA-256 of its bytes, once per store however
often it is stored. A label is a name that points to one piece of content of
the same store and can be moved to another. Stores are separate namespaces
created by :meth:`ContentStore.new_store`, as Theater's ``new-store``; any
operation on a store id that was never created raises :class:`StoreError`.
Content stays when its labels are removed or moved (there is no garbage
collection).

The file is ``store.sqlite3`` in the home folder, in WAL mode. Each
:class:`ContentStore` holds one connection and serializes its threads on it;
two instances on one file (as two processes would be) wait for each other's
writes for up to five seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any, Final, TypeAlias

import attrs

from theater_py._home import database_location, open_database, theater_home
from theater_py.errors import StoreError

__all__ = ["Bytes", "ContentRef", "ContentStore"]

Bytes: TypeAlias = bytes | bytearray | memoryview
"""What content may be given as; it is stored and read back as :class:`bytes`."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS stores (
    store_id TEXT    PRIMARY KEY,
    created  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content (
    store_id TEXT    NOT NULL REFERENCES stores (store_id),
    hash     TEXT    NOT NULL,
    size     INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    UNIQUE (store_id, hash)
);
CREATE TABLE IF NOT EXISTS labels (
    store_id TEXT NOT NULL,
    label    TEXT NOT NULL,
    hash     TEXT NOT NULL,
    PRIMARY KEY (store_id, label),
    FOREIGN KEY (store_id, hash) REFERENCES content (store_id, hash)
) WITHOUT ROWID;
"""
# Insert-from-select: the row is written only if the store exists, in one statement.
_INSERT_CONTENT: Final = """
INSERT INTO content (store_id, hash, size, data)
SELECT store_id, ?, ?, ? FROM stores WHERE store_id = ?
ON CONFLICT (store_id, hash) DO NOTHING
"""
# Points the label at the content only if that content is in the store.
_SET_LABEL: Final = """
INSERT INTO labels (store_id, label, hash)
SELECT store_id, ?, hash FROM content WHERE store_id = ? AND hash = ?
ON CONFLICT (store_id, label) DO UPDATE SET hash = excluded.hash
"""


_DIGEST: Final = re.compile("[0-9a-f]{64}")


@attrs.frozen
class ContentRef:
    """Names content by its digest."""

    hash: str = attrs.field(validator=attrs.validators.matches_re(_DIGEST))
    """The lowercase hex SHA-256 of the content."""

    @classmethod
    def of(cls, content: Bytes) -> ContentRef:
        """Return the reference ``content`` is stored under."""
        return cls(sha256(content).hexdigest())

    def __str__(self) -> str:
        return self.hash


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise StoreError(f"{name} must not be empty")


def _as_bytes(content: object) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, bytearray | memoryview):
        return bytes(content)
    raise TypeError(f"content must be bytes, not {type(content).__name__}")


def _check_ref(ref: object) -> None:
    if not isinstance(ref, ContentRef):
        raise TypeError(f"ref must be a ContentRef, not {type(ref).__name__}")


class ContentStore:
    """The content-addressed store; thread-safe."""

    def __init__(self, database: str | os.PathLike[str]) -> None:
        """Open (creating if needed) the store in a SQLite file.

        Prefer :meth:`open` and :meth:`in_memory`.

        Args:
            database: the file, or ``":memory:"``.

        Raises:
            StoreError: the file cannot be opened as a store.
        """
        self._database = database_location(database)
        self._lock = threading.Lock()
        try:
            conn = open_database(self._database)
            # Declared foreign keys as a backstop; the statements check the same themselves.
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"content store {self._database}: cannot open: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> ContentStore:
        """Open the store kept in ``path``, ``store.sqlite3`` in the home folder if omitted."""
        return cls(theater_home() / "store.sqlite3" if path is None else path)

    @classmethod
    def in_memory(cls) -> ContentStore:
        """Return a store in memory (tests); it is gone once closed."""
        return cls(":memory:")

    @property
    def path(self) -> Path | None:
        """The SQLite file, or ``None`` in memory."""
        return None if self._database == ":memory:" else Path(self._database)

    # -- stores --------------------------------------------------------------------------

    def new_store(self, store_id: str | None = None) -> str:
        """Create a store and return its id.

        Args:
            store_id: the id to give it, so that an actor can find its store again after
                a restart (Theater's named store); an existing store of that id is kept
                as it is. ``None`` makes a new uuid4 id.
        """
        if store_id is None:
            store_id = str(uuid.uuid4())
        else:
            _check_text("store_id", store_id)
        self._run(
            "INSERT OR IGNORE INTO stores VALUES (?, ?)", (store_id, time.time_ns() // 1_000_000)
        )
        return store_id

    # -- content -------------------------------------------------------------------------

    def store(self, store_id: str, content: Bytes) -> ContentRef:
        """Save ``content`` unless the store already holds it.

        Returns:
            Its reference.

        Raises:
            StoreError: the store does not exist.
        """
        content = _as_bytes(content)
        ref = ContentRef.of(content)
        with self._cursor() as conn:
            self._insert(conn, store_id, ref, content)
        return ref

    def get(self, store_id: str, ref: ContentRef) -> bytes:
        """Return the content ``ref`` names, after checking its bytes still match the digest.

        Raises:
            StoreError: the store does not exist or does not hold that content, or the
                bytes in the file were changed (they no longer hash to ``ref``).
        """
        _check_ref(ref)
        with self._cursor() as conn:
            row = conn.execute(
                "SELECT data FROM content WHERE store_id = ? AND hash = ?", (store_id, ref.hash)
            ).fetchone()
            if row is None:
                self._require_store(conn, store_id)
                raise StoreError(f"store {store_id!r} holds no content {ref.hash}")
        data = row[0]
        if not isinstance(data, bytes) or sha256(data).hexdigest() != ref.hash:
            raise StoreError(
                f"store {store_id!r}: content {ref.hash} is damaged (its bytes no longer match"
                " their digest)"
            )
        return data

    def exists(self, store_id: str, ref: ContentRef) -> bool:
        """Return whether the store holds the content ``ref`` names.

        Raises:
            StoreError: the store does not exist.
        """
        _check_ref(ref)
        with self._cursor() as conn:
            row = conn.execute(
                "SELECT 1 FROM content WHERE store_id = ? AND hash = ?", (store_id, ref.hash)
            ).fetchone()
            if row is None:
                self._require_store(conn, store_id)
        return row is not None

    def list_all_content(self, store_id: str) -> list[ContentRef]:
        """Return the references of all the store's content, in the order first stored.

        Raises:
            StoreError: the store does not exist.
        """
        with self._cursor() as conn:
            rows = conn.execute(
                "SELECT hash FROM content WHERE store_id = ? ORDER BY rowid", (store_id,)
            ).fetchall()
            if not rows:
                self._require_store(conn, store_id)
        return [self._stored_ref(store_id, row[0]) for row in rows]

    def calculate_total_size(self, store_id: str) -> int:
        """Return the size in bytes of the store's content, each piece counted once.

        Raises:
            StoreError: the store does not exist.
        """
        with self._cursor() as conn:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM content WHERE store_id = ?",
                (store_id,),
            ).fetchone()
            if row[0] == 0:
                self._require_store(conn, store_id)
        total: int = row[1]
        return total

    # -- labels --------------------------------------------------------------------------

    def label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at content the store holds, moving it if it points elsewhere.

        Raises:
            StoreError: the store does not exist or does not hold that content.
        """
        _check_text("label", label)
        _check_ref(ref)
        with self._cursor() as conn:
            self._set_label(conn, store_id, label, ref)

    def replace_at_label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at other content: Theater's ``replace-at-label``, as :meth:`label`.

        Raises:
            StoreError: the store does not exist or does not hold that content.
        """
        self.label(store_id, label, ref)

    def store_at_label(self, store_id: str, label: str, content: Bytes) -> ContentRef:
        """Save ``content`` and point ``label`` at it, in one transaction.

        Returns:
            The content's reference.

        Raises:
            StoreError: the store does not exist.
        """
        _check_text("label", label)
        content = _as_bytes(content)
        ref = ContentRef.of(content)
        with self._cursor(write=True) as conn:
            self._insert(conn, store_id, ref, content)
            self._set_label(conn, store_id, label, ref)
        return ref

    def replace_content_at_label(self, store_id: str, label: str, content: Bytes) -> ContentRef:
        """Save ``content`` and move ``label`` to it: Theater's ``replace-content-at-label``.

        Labels point at one piece of content, so this is :meth:`store_at_label`.

        Returns:
            The content's reference.

        Raises:
            StoreError: the store does not exist.
        """
        return self.store_at_label(store_id, label, content)

    def get_by_label(self, store_id: str, label: str) -> ContentRef | None:
        """Return what ``label`` points at, or ``None`` if there is no such label.

        Raises:
            StoreError: the store does not exist.
        """
        _check_text("label", label)
        with self._cursor() as conn:
            row = conn.execute(
                "SELECT hash FROM labels WHERE store_id = ? AND label = ?", (store_id, label)
            ).fetchone()
            if row is None:
                self._require_store(conn, store_id)
                return None
        return self._stored_ref(store_id, row[0])

    def remove_label(self, store_id: str, label: str) -> None:
        """Remove ``label``; the content it pointed at stays.

        Unlike Theater, which ignores it, removing a label that does not exist is an error.

        Raises:
            StoreError: the store does not exist or has no such label.
        """
        _check_text("label", label)
        with self._cursor() as conn:
            cursor = conn.execute(
                "DELETE FROM labels WHERE store_id = ? AND label = ?", (store_id, label)
            )
            if cursor.rowcount == 0:
                self._require_store(conn, store_id)
                raise StoreError(f"store {store_id!r} has no label {label!r}")

    def list_labels(self, store_id: str) -> list[str]:
        """Return the store's labels, sorted.

        Raises:
            StoreError: the store does not exist.
        """
        with self._cursor() as conn:
            rows = conn.execute(
                "SELECT label FROM labels WHERE store_id = ? ORDER BY label", (store_id,)
            ).fetchall()
            if not rows:
                self._require_store(conn, store_id)
        return [row[0] for row in rows]

    # -- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file; later operations raise :class:`StoreError`. Safe to repeat."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ContentStore {self._database}>"

    # -- internals -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _cursor(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        # One thread at a time on the connection; write=True wraps the block in a
        # transaction that takes the file's write lock up front, so another process
        # cannot slip in between its statements.
        # SQLite's own errors (a lock held past the busy timeout, a full disk) become
        # StoreError naming the file.
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"content store {self._database} is closed")
            try:
                if not write:
                    yield conn
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"content store {self._database}: {exc}") from exc

    def _run(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._cursor() as conn:
            conn.execute(sql, params)

    @staticmethod
    def _stored_ref(store_id: str, digest: object) -> ContentRef:
        # A digest read back from the file: a damaged one is the store's error to report,
        # not a ValueError from ContentRef's check.
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise StoreError(f"store {store_id!r}: a content digest is damaged ({digest!r:.80})")
        return ContentRef(digest)

    @staticmethod
    def _require_store(conn: sqlite3.Connection, store_id: str) -> None:
        if conn.execute("SELECT 1 FROM stores WHERE store_id = ?", (store_id,)).fetchone() is None:
            raise StoreError(f"unknown store {store_id!r}: create it with new_store()")

    def _insert(
        self, conn: sqlite3.Connection, store_id: str, ref: ContentRef, content: bytes
    ) -> None:
        cursor = conn.execute(_INSERT_CONTENT, (ref.hash, len(content), content, store_id))
        if cursor.rowcount == 0:  # already there, or no such store
            self._require_store(conn, store_id)

    def _set_label(
        self, conn: sqlite3.Connection, store_id: str, label: str, ref: ContentRef
    ) -> None:
        cursor = conn.execute(_SET_LABEL, (label, store_id, ref.hash))
        if cursor.rowcount == 0:
            self._require_store(conn, store_id)
            raise StoreError(f"store {store_id!r} holds no content {ref.hash} to label {label!r}")
