"""The budget ledger: reserve a request's most it can cost before the call, settle after.

A request reserves its maximum cost (input estimate plus ``max_tokens`` at the model's
prices) before it is sent; the reservation either fits under the budget beside what is
spent and reserved already, or the request is refused without a call. After the call
the actual cost replaces the reservation. The check and the reservation happen under
one lock, so concurrent requests can never together exceed the budget.

Spend and open reservations are kept in the store (one label per period), so a router
restarted with the same ``store_id`` keeps them. A reservation found in the store at
start belonged to a request of an incarnation that is gone: whether its provider billed
it is unknown, so it counts as spent (the budget errs on the side of not overspending).

Writes are batched: a change reaches the store within :data:`FLUSH_INTERVAL` seconds (one
write for every change of that interval, off the request's path), and at :meth:`close`
(the router's stop, a crash's included). A ``kill -9`` of the whole process loses at most
that interval's changes.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from theater_py.capabilities import StoreAccess
    from theater_py_actors.router.config import Period

__all__ = ["BudgetLedger", "Reservation", "period_key"]

logger = logging.getLogger(__name__)

LABEL_PREFIX = "router-budget:"
FLUSH_INTERVAL = 0.01
"""Seconds a ledger change may wait before it is written to the store."""


def period_key(per: Period, now: float) -> str:
    """The period ``now`` (seconds since the epoch) is in: ``run``, ``2026-11-30``, ``2026-11``."""
    if per == "run":
        return "run"
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    return day if per == "day" else day[:7]


class Reservation:
    """One request's hold on the budget; settle it (or release it) exactly once."""

    __slots__ = ("amount", "id", "period", "settled")

    def __init__(self, reservation_id: str, amount: float, period: str) -> None:
        self.id = reservation_id
        self.amount = amount
        self.period = period
        self.settled = False


class BudgetLedger:
    """Spend and reservations against a budget of ``usd`` per ``per``.

    Args:
        usd: the budget.
        per: ``run``, ``day`` or ``month`` (UTC).
        store: where spend and reservations are kept; ``None`` keeps them in memory.
        store_id: the store to keep them in.
        wall_clock: seconds since the epoch (injected in tests).
    """

    def __init__(
        self,
        usd: float,
        per: Period = "run",
        store: StoreAccess | None = None,
        store_id: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.usd = usd
        self.per: Period = per
        self._store = store if store_id is not None else None
        self._store_id = store_id
        self._clock = wall_clock
        self._lock = threading.Lock()
        self._period = ""
        self._spent = 0.0
        self._open: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._prefix = f"{int(wall_clock() * 1000):x}-"
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._flusher: threading.Thread | None = None
        with self._lock:
            self._roll(period_key(per, wall_clock()))
            self._write()  # what _roll adopted (orphans as spent) is saved at once
        if self._store is not None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"budget-ledger-{store_id}", daemon=True
            )
            self._flusher.start()

    @property
    def spent(self) -> float:
        """Dollars spent in the current period (settled requests only)."""
        with self._lock:
            self._roll(period_key(self.per, self._clock()))
            return self._spent

    @property
    def reserved(self) -> float:
        """Dollars held by requests not yet settled, in the current period."""
        with self._lock:
            self._roll(period_key(self.per, self._clock()))
            return sum(self._open.values())

    def reserve(self, amount: float) -> Reservation | None:
        """Hold ``amount`` dollars; ``None`` if it does not fit beside what is spent and held."""
        with self._lock:
            period = period_key(self.per, self._clock())
            self._roll(period)
            if self._spent + sum(self._open.values()) + amount > self.usd + 1e-12:
                return None
            reservation = Reservation(f"{self._prefix}{next(self._ids)}", amount, period)
            self._open[reservation.id] = amount
            self._save()
            return reservation

    def settle(self, reservation: Reservation, cost: float) -> None:
        """Replace the reservation with what the request actually cost (0 to release it)."""
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            if reservation.period != self._period:
                return  # its period is over: its spend belongs to a budget that has rolled
            self._open.pop(reservation.id, None)
            self._spent += max(cost, 0.0)
            self._save()

    def release(self, reservation: Reservation) -> None:
        """Give the reservation back: the request cost nothing."""
        self.settle(reservation, 0.0)

    def remaining(self) -> float:
        """Dollars neither spent nor held."""
        with self._lock:
            self._roll(period_key(self.per, self._clock()))
            return self.usd - self._spent - sum(self._open.values())

    # -- the store ---------------------------------------------------------------------------

    def _roll(self, period: str) -> None:
        """Move to ``period`` if it is a new one: load what the store has for it."""
        if period == self._period:
            return
        if self._period:
            self._write()  # the ending period's last changes
        self._period = period
        self._spent, self._open = 0.0, {}
        if self._store is None or self._store_id is None:
            return
        try:
            ref = self._store.get_by_label(self._store_id, LABEL_PREFIX + period)
            if ref is None:
                return
            saved = json.loads(self._store.get(self._store_id, ref))
            spent = float(saved.get("spent", 0.0))
            orphans = sum(float(v) for v in dict(saved.get("reserved", {})).values())
        except Exception as exc:  # noqa: BLE001 -- an unreadable ledger must not stop the router
            logger.error(
                "the budget ledger in store %s is unreadable (%s): counting the whole "
                "budget as spent until it is repaired",
                self._store_id,
                type(exc).__name__,
            )
            self._spent = self.usd
            return
        # Requests of an incarnation that is gone: they may have been billed.
        self._spent = spent + orphans
        if orphans:
            logger.warning(
                "budget: %.6f USD reserved by requests of a previous incarnation counted as spent",
                orphans,
            )

    def _save(self) -> None:
        """Note a change; the flusher writes it soon (under the lock: no write here)."""
        if self._store is not None:
            self._dirty.set()

    def close(self) -> None:
        """Write what is not written yet, and stop the flusher."""
        self._closing.set()
        self._dirty.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)
        with self._lock:
            self._write()

    def flush(self) -> None:
        """Write the ledger now."""
        with self._lock:
            self._write()

    def _flush_loop(self) -> None:
        while True:
            self._dirty.wait()
            time.sleep(FLUSH_INTERVAL)  # let the changes of the interval join this write
            self._dirty.clear()
            with self._lock:
                self._write()
            if self._closing.is_set():  # set before close() sets _dirty: never missed
                return

    def _write(self) -> None:
        if self._store is None or self._store_id is None:
            return
        data = json.dumps({"spent": self._spent, "reserved": self._open}).encode()
        try:
            self._store.replace_content_at_label(self._store_id, LABEL_PREFIX + self._period, data)
        except Exception as exc:  # noqa: BLE001 -- the ledger in memory still holds
            logger.error("could not save the budget ledger: %s", type(exc).__name__)
