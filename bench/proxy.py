"""Proxy overhead: one completion at a time, through the proxy actor and through each client.

Every contender of :mod:`bench.clients` makes the same request in a loop against the same
fake provider (answering at once), interleaved repeat by repeat. The result is the latency
of one request (median, p99) and the CPU time the whole benchmark process spends per
request; the provider runs in its own process, so its CPU is not counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from bench._contenders import open_contenders
from bench._timing import compare
from bench.upstream import Upstream

__all__ = ["run"]


def run(
    names: Sequence[str],
    *,
    count: int,
    repeats: int,
    upstream: str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Measure one request's latency and CPU cost per contender.

    Args:
        names: the contenders, as :data:`bench.clients.NAMES` names them.
        count: requests per repeat and contender.
        repeats: how many interleaved repeats.
        upstream: the fake provider's kind (``lean`` or ``simulator``).
        progress: told of each finished repeat.

    Returns:
        ``contenders`` (per name: latency summary and ``cpu_us``, or ``unavailable``) and
        ``ratios`` of each contender's median latency and CPU to raw ``requests``'.
    """
    with Upstream(0, upstream) as server, contextlib.ExitStack() as stack:
        ready, missing = open_contenders(names, server.base_url, stack, progress)
        measured = compare(
            {name: contender.call for name, contender in ready.items()},
            count=count,
            repeats=repeats,
            warmup=min(count, 50),
            progress=lambda note: progress(f"proxy overhead {note}"),
        )
    results: dict[str, Any] = {
        "upstream": {"kind": upstream, "latency_ms": 0, "process": "separate"},
        "contenders": {**measured, **missing},
    }
    base = measured.get("requests")
    if base is not None:
        results["ratios_vs_requests"] = {
            name: {
                "latency": round(summary["median_us"] / base["median_us"], 2),
                "cpu": round(summary["cpu_us"] / base["cpu_us"], 2),
            }
            for name, summary in measured.items()
        }
    return results
