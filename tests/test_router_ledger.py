"""The router's budget ledger and rate limiter on injected clocks, and its config files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from theater_py.capabilities import StoreAccess
from theater_py.store import ContentStore
from theater_py_actors.genai_types import RateLimitInfo
from theater_py_actors.openai_proxy.ratelimit_headers import parse_duration_ms, rate_limit_of
from theater_py_actors.router.ledger import BudgetLedger, period_key
from theater_py_actors.router.limiter import RateLimiter

DAY = 86_400.0
NOV_30 = 1_796_000_000.0  # 2026-11-30 (UTC)


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Quiet:
    def record(self, event_type: str, data: Any = None, description: str = "") -> object:
        return None


@pytest.fixture
def store(tmp_path: Path) -> StoreAccess:
    return StoreAccess(ContentStore(tmp_path / "store.sqlite3"), _Quiet())


# -- the ledger -----------------------------------------------------------------------------


def test_a_reservation_that_does_not_fit_is_refused() -> None:
    ledger = BudgetLedger(1.0)
    held = ledger.reserve(0.6)
    assert held is not None
    assert ledger.reserve(0.5) is None
    ledger.settle(held, 0.1)
    assert ledger.spent == pytest.approx(0.1)
    assert ledger.reserve(0.5) is not None
    assert ledger.remaining() == pytest.approx(0.4)


def test_settling_twice_counts_once() -> None:
    ledger = BudgetLedger(1.0)
    held = ledger.reserve(0.5)
    assert held is not None
    ledger.settle(held, 0.2)
    ledger.settle(held, 0.2)
    ledger.release(held)
    assert ledger.spent == pytest.approx(0.2)
    assert ledger.reserved == 0


def test_concurrent_reservations_never_exceed_the_budget() -> None:
    ledger = BudgetLedger(1.0)
    granted: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def take() -> None:
        start.wait(timeout=10)
        for _ in range(50):
            held = ledger.reserve(0.01)
            if held is not None:
                with lock:
                    granted.append(held)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(granted) == 100
    assert ledger.reserved == pytest.approx(1.0)


def test_spend_and_reservations_survive_a_restart_with_the_same_store(
    store: StoreAccess,
) -> None:
    store.new_store("budget")
    first = BudgetLedger(1.0, "run", store, "budget")
    settled = first.reserve(0.3)
    assert settled is not None
    first.settle(settled, 0.25)
    orphan = first.reserve(0.5)  # its incarnation ends before it settles
    assert orphan is not None
    first.close()  # the router's stop writes the ledger (a crash's too)
    second = BudgetLedger(1.0, "run", store, "budget")
    assert second.spent == pytest.approx(0.75)  # the orphan may have been billed
    assert second.reserve(0.3) is None
    assert second.reserve(0.25) is not None


def test_a_day_budget_starts_over_the_next_day(store: StoreAccess) -> None:
    store.new_store("budget")
    clock = Clock(NOV_30)
    ledger = BudgetLedger(1.0, "day", store, "budget", wall_clock=clock)
    held = ledger.reserve(1.0)
    assert held is not None
    assert ledger.reserve(0.01) is None
    clock.now += DAY
    late = ledger.reserve(1.0)
    assert late is not None  # a new day, a new budget
    ledger.settle(held, 1.0)  # yesterday's request settles: it does not count today
    assert ledger.spent == 0
    ledger.close()
    clock.now -= DAY
    assert BudgetLedger(1.0, "day", store, "budget", wall_clock=clock).spent == 1.0


def test_changes_reach_the_store_without_a_stop(store: StoreAccess) -> None:
    store.new_store("budget")
    ledger = BudgetLedger(1.0, "run", store, "budget")
    held = ledger.reserve(0.4)
    assert held is not None
    ledger.settle(held, 0.3)
    deadline = time.monotonic() + 10
    while _saved(store) != {"spent": pytest.approx(0.3), "reserved": {}}:
        assert time.monotonic() < deadline, "the flusher never wrote the change"
        time.sleep(0.01)
    ledger.close()


def _saved(store: StoreAccess) -> Any:
    ref = store.get_by_label("budget", "router-budget:run")
    return None if ref is None else json.loads(store.get("budget", ref))


def test_period_keys() -> None:
    assert period_key("run", NOV_30) == "run"
    assert period_key("day", NOV_30) == "2026-11-30"
    assert period_key("month", NOV_30) == "2026-11"


# -- the limiter ----------------------------------------------------------------------------


def test_requests_per_minute_refill_continuously() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=60, clock=clock)
    for _ in range(60):
        assert limiter.take(0) == 0
    assert limiter.take(0) == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.take(0) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take(0) == 0


def test_tokens_per_minute_and_giving_back_what_was_not_used() -> None:
    clock = Clock()
    limiter = RateLimiter(tpm=6000, clock=clock)
    assert limiter.take(5000) == 0
    assert limiter.take(2000) == pytest.approx(10.0)  # 1000 short at 100 per second
    limiter.give_back(5000, used=1000)
    assert limiter.take(2000) == 0


def test_the_providers_headers_correct_the_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)  # nothing configured: unlimited
    assert limiter.take(10**9) == 0
    limiter.observe(RateLimitInfo(limit_requests=100, remaining_requests=0, reset_requests_ms=2000))
    assert limiter.take(1) == pytest.approx(2.0)
    clock.now += 2.0
    assert limiter.take(1) == 0


def test_a_retry_after_closes_the_provider() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=1000, clock=clock)
    limiter.close_for(30)
    assert limiter.take(1) == pytest.approx(30.0)
    clock.now += 30
    assert limiter.take(1) == 0


def test_reset_durations_and_header_parsing() -> None:
    assert parse_duration_ms("6m0s") == 360_000
    assert parse_duration_ms("20ms") == 20
    assert parse_duration_ms("1h2m3.5s") == 3_723_500
    assert parse_duration_ms("1.5") == 1500
    assert parse_duration_ms("soon") is None
    assert parse_duration_ms("5x") is None
    assert rate_limit_of({"content-type": "application/json"}) is None
    assert rate_limit_of(
        {"x-ratelimit-remaining-tokens": "12", "x-ratelimit-limit-tokens": "x"}
    ) == (RateLimitInfo(remaining_tokens=12))


def test_the_shipped_example_init_file_is_a_valid_router_config() -> None:
    from theater_py_actors.router import manifests
    from theater_py_actors.router.config import parse_router_init

    path = Path(manifests.__file__).parent / "init-router-example.json"
    init, proxies = parse_router_init(path.read_text(encoding="utf-8"))
    assert set(proxies) == {"openai", "moonshot"}
    assert init.config.budget is not None and init.config.budget.per == "day"
    assert proxies["moonshot"].config.api_key_env == "MOONSHOT_API_KEY"
