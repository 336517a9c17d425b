"""Order statistics over repeated runs: medians, p99 and the spread between repeats.

A shared, noisy machine makes any single run suspect, so every figure is measured in
several repeats and reported as the median of the repeats' medians, with the lowest and
highest repeat median beside it as the spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["percentile", "summarize", "summarize_runs"]


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Return the sample at ``fraction`` of the sorted samples (nearest rank).

    Args:
        samples: the values, in any order; at least one.
        fraction: between 0 and 1 (``0.99`` for p99).

    Raises:
        ValueError: ``samples`` is empty.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[rank]


def _rounded(value: float) -> float:
    return round(value, 3 if abs(value) < 100 else 1)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Return the median and p99 of one run's samples, keys ``median`` and ``p99``."""
    return {
        "median": _rounded(statistics.median(samples)),
        "p99": _rounded(percentile(samples, 0.99)),
    }


def summarize_runs(runs: Sequence[Sequence[float]], unit: str) -> dict[str, Any]:
    """Summarize repeated runs of one measurement.

    Args:
        runs: each repeat's samples (latencies, or one wall time per repeat).
        unit: the samples' unit, used in the keys (``us``, ``ms``, ``s``).

    Returns:
        ``median_<unit>`` (median of the repeat medians), ``p99_<unit>`` (median of the
        repeat p99s), ``spread_<unit>`` (lowest and highest repeat median), ``repeats``
        and ``samples`` (per repeat).
    """
    per_run = [summarize(run) for run in runs if run]
    medians = [run["median"] for run in per_run]
    return {
        f"median_{unit}": _rounded(statistics.median(medians)),
        f"p99_{unit}": _rounded(statistics.median(run["p99"] for run in per_run)),
        f"spread_{unit}": [min(medians), max(medians)],
        "repeats": len(per_run),
        "samples": max((len(run) for run in runs), default=0),
    }
