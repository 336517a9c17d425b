"""Timing loops: per-call latency and process CPU time of a callable, interleaved repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

from bench._stats import summarize_runs

__all__ = ["Timed", "compare", "paired_ratio", "time_calls"]

Timed = tuple[list[float], float]
"""One run: the latency of each call in microseconds, and process CPU microseconds per call."""


def time_calls(call: Callable[[], object], count: int) -> Timed:
    """Call ``call`` ``count`` times in a row, timing each call.

    CPU time is the whole process's (every thread: the caller, the actor, a proxy's
    pool), so it counts what a call costs the machine, not only the caller.

    Returns:
        The latency of each call (us) and the process CPU time per call (us).
    """
    clock = time.perf_counter_ns
    latencies = [0.0] * count
    cpu_start = time.process_time_ns()
    for index in range(count):
        start = clock()
        call()
        latencies[index] = (clock() - start) / 1000
    cpu = (time.process_time_ns() - cpu_start) / 1000 / count
    return latencies, cpu


def compare(
    calls: Mapping[str, Callable[[], object]],
    *,
    count: int,
    repeats: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
    settle: Callable[[], object] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time several ways of doing the same thing, interleaved so drift hits them alike.

    Each repeat runs every callable ``count`` times, in turn, starting one further along
    each time; each callable is warmed up with ``warmup`` calls first. Many short repeats
    resist a noisy machine's drift better than a few long ones.

    ``settle``, if given, runs after each block, untimed: it finishes the background work
    a block left (a saved chain's queued events), so that the next block, another
    contender's, does not pay for it.

    A repeat in which a call raised is left out of the figures (a failed call may be fast)
    and counted under ``failed_repeats``, with the first error under ``error``; a callable
    with no repeat left is reported as ``{"unavailable": ...}``.

    Returns:
        Per name: :func:`~bench._stats.summarize_runs` of its latencies (``median_us``,
        ``p99_us``, ``spread_us``...) plus ``cpu_us`` (median CPU per call over repeats)
        and ``cpu_spread_us``, and ``block_medians_us``: each repeat's median in repeat
        order (``None`` for a failed repeat), so that contenders can be compared block by
        block (see :func:`paired_ratio`).
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    runs: dict[str, list[Timed]] = {name: [] for name in calls}
    blocks: dict[str, list[float | None]] = {name: [] for name in calls}
    errors: dict[str, list[str]] = {name: [] for name in calls}
    order = list(calls.items())
    for repeat in range(repeats):
        # Rotating the order keeps any contender from always following the same other one.
        shift = repeat % len(order)
        for name, call in order[shift:] + order[:shift]:
            try:
                timed = time_calls(call, count)
            except Exception as exc:
                errors[name].append(f"{type(exc).__name__}: {exc}")
                blocks[name].append(None)
            else:
                runs[name].append(timed)
                blocks[name].append(round(statistics.median(timed[0]), 3))
            if settle is not None:
                settle()
        if progress is not None:
            progress(f"repeat {repeat + 1}/{repeats}")
    results: dict[str, dict[str, Any]] = {}
    for name, timed in runs.items():
        if not timed:
            results[name] = {"unavailable": f"every repeat failed: {errors[name][0]}"}
            continue
        cpu = sorted(cpu for _, cpu in timed)
        summary = summarize_runs([latencies for latencies, _ in timed], "us")
        summary["cpu_us"] = round(statistics.median(cpu), 2)
        summary["cpu_spread_us"] = [round(cpu[0], 2), round(cpu[-1], 2)]
        summary["block_medians_us"] = blocks[name]
        if errors[name]:
            summary["failed_repeats"] = len(errors[name])
            summary["error"] = errors[name][0]
        results[name] = summary
    return results


def paired_ratio(contender: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any] | None:
    """Compare two results of one :func:`compare` run repeat by repeat.

    The two ran back to back in each repeat, so their ratio within a repeat is
    less exposed to the machine's drift than the ratio of their overall medians.

    Returns:
        ``median`` (the median of the per-repeat ratios of median latency), ``spread``
        (the lowest and highest) and ``repeats``; ``None`` when no repeat has both.
    """
    pairs = zip(
        contender.get("block_medians_us", ()), baseline.get("block_medians_us", ()), strict=False
    )
    ratios = sorted(
        mine / base for mine, base in pairs if mine is not None and base is not None and base > 0
    )
    if not ratios:
        return None
    return {
        "median": round(statistics.median(ratios), 2),
        "spread": [round(ratios[0], 2), round(ratios[-1], 2)],
        "repeats": len(ratios),
    }
