"""Where theater-py keeps its files (event database, content store) and how it opens them."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["HOME_ENV_VAR", "database_location", "ensure_home", "open_database", "theater_home"]

HOME_ENV_VAR = "THEATER_PY_HOME"
"""The environment variable that moves the home folder (tests point it at a tmp path)."""


def theater_home() -> Path:
    """Return the home folder, without creating it.

    Returns:
        ``$THEATER_PY_HOME`` (``~`` expanded) when set and not empty, else ``~/.theater-py``.
    """
    value = os.environ.get(HOME_ENV_VAR)
    if value:
        return Path(value).expanduser()
    return Path.home() / ".theater-py"


def ensure_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Create a home folder readable by its owner only (mode 0700) unless it exists.

    An existing folder keeps its mode: the user may have chosen it.

    Args:
        home: the folder; :func:`theater_home` when omitted.

    Returns:
        The folder.

    Raises:
        OSError: it cannot be created, or a file is in its place.
    """
    folder = theater_home() if home is None else Path(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def database_location(database: str | os.PathLike[str]) -> str:
    """Return ``":memory:"`` as it is, or a file path with ``~`` expanded."""
    database = os.fspath(database)
    return database if database == ":memory:" else os.path.expanduser(database)


def open_database(database: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a SQLite database the way theater-py uses it: WAL, autocommit, 5 s busy wait.

    Args:
        database: a file path (``~`` expanded; its folder is created like the home,
            mode 0700), or ``":memory:"``.

    Returns:
        A connection any thread may use; the caller serializes access to it.

    Raises:
        OSError: the folder cannot be created.
        sqlite3.Error: the file cannot be opened as a database.
    """
    database = database_location(database)
    if database != ":memory:":
        ensure_home(Path(database).parent)
    conn = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    try:
        # Waits for another process's write lock instead of failing at once.
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        # With WAL, NORMAL stays consistent after a power loss and saves an fsync per commit.
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:  # a damaged file can raise more than sqlite3.Error here
        conn.close()
        raise
    return conn
