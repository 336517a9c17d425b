"""A small soak of the router through three faulty simulators (``bench/router.py`` runs
10,000 requests; this runs 300 in a few seconds), and its overhead measurement's shape."""

from __future__ import annotations

import pytest

from bench.router import overhead, soak


def test_300_requests_through_three_faulty_providers_none_lost_none_over_budget() -> None:
    result = soak(requests=300, concurrency=32)
    assert result["lost"] == 0
    assert result["answered_twice"] == 0
    assert result["wrong_answer"] == 0
    assert result["over_budget"] is False
    assert result["spent_usd"] <= result["budget_usd"]
    assert result["served"] > 0
    assert result["errors"].get("budget_exceeded", 0) > 0  # the budget ran out partway
    assert result["ok"] is True


@pytest.mark.slow
def test_the_overhead_measurement_compares_the_router_with_one_proxy() -> None:
    result = overhead(count=5, repeats=2, upstream="lean", progress=lambda _: None)
    assert set(result["contenders"]) == {"proxy", "forward", "router", "router_budget"}
    for name in ("forward", "router", "router_budget"):
        assert result["added"][name]["latency_ratio"]["repeats"] == 2
