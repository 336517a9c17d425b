"""The queue between the threads that record saved events and the database's writer.

A saved chain records two events per request, and :class:`queue.Queue` makes each of
them cost a lock, a condition and a notify on the recording thread, and nearly each
one a wake-up of the writer thread and a transaction of one or two rows: about half
of a saved request's overhead over a chain in memory. Here a put is an append that
wakes the writer only when it sleeps, and the writer lingers a moment after waking to
gather a batch, unless an item is urgent (someone waits for it) or a batch is full.

Lock-free puts rely on the GIL making ``deque.append`` and attribute reads and writes
atomic and ordered; the writer announces that it sleeps under the lock *before* it
looks at the items a last time, and a put reads that announcement *after* appending,
so no put is missed (see :meth:`BatchQueue.take`).
"""

from __future__ import annotations

import collections
import threading
from typing import Final, Generic, TypeVar

__all__ = ["BatchQueue"]

T = TypeVar("T")

_BUSY: Final = 0  # the writer is writing: a put need not wake it
_IDLE: Final = 1  # the writer waits for any item
_LINGERING: Final = 2  # the writer waits for a batch: only an urgent or a full one wakes it
_POLL: Final = 1.0
"""Seconds between the checks of a waiting writer or of a put waiting for room: a
safety net only, since every change that matters is notified."""


class BatchQueue(Generic[T]):
    """A FIFO of many producers and one consumer that takes items in batches.

    Args:
        maxsize: a put waits while this many items are queued (back-pressure).
        batch: the most items :meth:`take` returns.
        linger: seconds :meth:`take` waits for more items once it has one that is not
            urgent.
    """

    __slots__ = ("_batch", "_cond", "_hurry", "_items", "_linger", "_maxsize", "_state")

    def __init__(self, maxsize: int, batch: int, linger: float) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._maxsize = maxsize
        self._batch = batch
        self._linger = linger
        self._state = _BUSY
        self._hurry = False

    def put(self, item: T, *, urgent: bool = False) -> None:
        """Queue an item; wait while the queue is full.

        Args:
            item: the item.
            urgent: someone waits for it to be taken: the consumer stops lingering.
        """
        items = self._items
        while len(items) >= self._maxsize:  # the consumer lags: wait for room
            with self._cond:
                self._cond.notify_all()
                if len(items) >= self._maxsize:
                    self._cond.wait(_POLL)
        items.append(item)
        if urgent:
            self._hurry = True  # before reading the state: see take()
        state = self._state
        if state == _IDLE or (state == _LINGERING and (urgent or len(items) >= self._batch)):
            with self._cond:
                self._cond.notify_all()

    def take(self) -> list[T]:
        """Wait for items (the consumer's thread only); return up to a batch, oldest first."""
        items = self._items
        cond = self._cond
        with cond:
            # Announce the wait before each last look at the items: a put that appended
            # before the announcement is seen here; one after it reads the new state
            # and notifies, which cannot happen before this thread waits (it holds the lock).
            self._state = _IDLE
            while not items:
                cond.wait(_POLL)
            self._state = _LINGERING
            if not self._hurry and len(items) < self._batch:
                cond.wait(self._linger)
            self._state = _BUSY
            self._hurry = False
            full = len(items) >= self._maxsize
            taken = [items.popleft() for _ in range(min(len(items), self._batch))]
            if full:
                cond.notify_all()  # the puts waiting for room
        return taken

    def __len__(self) -> int:
        return len(self._items)
