"""Concurrency: many requests from many caller threads, against a slow provider.

The same pool of caller threads makes ``requests`` calls through each contender while the
fake provider waits ``latency_ms`` before every answer. The ideal wall time is
``requests * latency / threads``: what a client costs shows as time above it. Through the
proxy, every thread asks ONE actor, which must overlap the upstream calls (its mailbox
may never wait on the network) to come near the ideal.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench._contenders import open_contenders
from bench.clients import Contender
from bench.upstream import Upstream

__all__ = ["run"]


def _burst(
    pool: concurrent.futures.ThreadPoolExecutor, contender: Contender, requests: int
) -> tuple[float, float, list[BaseException]]:
    """Make ``requests`` calls on the pool at once; return the wall and CPU seconds, and errors."""
    cpu = time.process_time()
    start = time.perf_counter()
    futures = [pool.submit(contender.call) for _ in range(requests)]
    concurrent.futures.wait(futures)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, cpu, [error for future in futures if (error := future.exception()) is not None]


def run(
    names: Sequence[str],
    *,
    requests: int,
    threads: int,
    latency_ms: int,
    repeats: int,
    upstream: str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Measure the wall time of a burst of requests per contender.

    Args:
        names: the contenders, as :data:`bench.clients.NAMES` names them.
        requests: requests per burst.
        threads: caller threads (shared by every contender).
        latency_ms: the provider's delay before each answer.
        repeats: bursts per contender, interleaved.
        upstream: the fake provider's kind (``lean`` or ``simulator``).
        progress: told of each finished repeat.

    Returns:
        The setup (``requests``, ``threads``, ``latency_ms``, ``ideal_s``), per contender the
        median wall time, its spread, its ratio to the ideal, requests per second and CPU
        milliseconds per request, and each contender's throughput relative to raw
        ``requests``. Bursts with failed requests are left out of the timings and counted
        (``failed_bursts``, ``failed_requests``, the first ``error``).
    """
    ideal = requests * latency_ms / 1000 / threads
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    failures: dict[str, list[BaseException]] = {}
    with (
        Upstream(latency_ms, upstream) as server,
        contextlib.ExitStack() as stack,
        concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="caller") as pool,
    ):
        ready, missing = open_contenders(names, server.base_url, stack, progress)
        for contender in ready.values():
            _burst(pool, contender, threads)  # every caller thread opens its connections
        walls = {name: [] for name in ready}
        cpus = {name: [] for name in ready}
        failures = {name: [] for name in ready}
        order = list(ready.items())
        for repeat in range(repeats):
            shift = repeat % len(order)
            for name, contender in order[shift:] + order[:shift]:
                wall, cpu, errors = _burst(pool, contender, requests)
                if errors:
                    # A burst with failed requests is not timed: a failure may be fast.
                    failures[name].extend(errors)
                    continue
                walls[name].append(wall)
                cpus[name].append(cpu)
            progress(f"concurrency repeat {repeat + 1}/{repeats}")
    contenders: dict[str, Any] = {}
    for name, measured in walls.items():
        errors = failures[name]
        first = f"{type(errors[0]).__name__}: {errors[0]}" if errors else ""
        if not measured:
            contenders[name] = {"unavailable": f"every burst had failed requests: {first}"}
            continue
        median = statistics.median(measured)
        contenders[name] = {
            "median_s": round(median, 4),
            "spread_s": [round(min(measured), 4), round(max(measured), 4)],
            "vs_ideal": round(median / ideal, 2),
            "requests_per_s": round(requests / median, 1),
            "cpu_ms_per_request": round(statistics.median(cpus[name]) / requests * 1000, 3),
            "repeats": len(measured),
        }
        if errors:
            contenders[name]["failed_requests"] = len(errors)
            contenders[name]["failed_bursts"] = repeats - len(measured)
            contenders[name]["error"] = first
    results: dict[str, Any] = {
        "requests": requests,
        "threads": threads,
        "latency_ms": latency_ms,
        "ideal_s": round(ideal, 4),
        "upstream": {"kind": upstream, "process": "separate"},
        "contenders": {**contenders, **missing},
    }
    base = contenders.get("requests")
    if base is not None:
        results["throughput_vs_requests"] = {
            name: round(base["median_s"] / summary["median_s"], 3)
            for name, summary in contenders.items()
        }
    return results
