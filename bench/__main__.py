"""``python -m bench``: run the benchmarks, write the results JSON, print the tables."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import concurrency, footprint, hop, proxy, router, stream
from bench._machine import describe_machine
from bench.clients import EXTERNAL, NAMES
from bench.report import judge_targets, render_markdown
from bench.upstream import Upstream

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("hop", "proxy", "concurrency", "footprint", "stream", "router")

# Sizes per mode. Full: many short interleaved repeats, so that a noisy machine's drift
# spreads over every contender alike (a few minutes); quick: a smoke run of a few seconds
# that exercises every path.
_FULL: dict[str, dict[str, int]] = {
    "hop": {"count": 1000, "repeats": 21, "messages": 20000},
    "proxy": {"count": 100, "repeats": 30},
    "concurrency": {"requests": 200, "threads": 50, "latency_ms": 100, "repeats": 7},
    "footprint": {"runs": 15, "actors": 1000},
    "stream": {"count": 10, "repeats": 15, "concurrent": 100, "bursts": 25},
    "router": {"count": 100, "repeats": 30, "soak_requests": 10_000},
}
_QUICK: dict[str, dict[str, int]] = {
    "hop": {"count": 200, "repeats": 3, "messages": 2000},
    "proxy": {"count": 20, "repeats": 3},
    "concurrency": {"requests": 40, "threads": 20, "latency_ms": 50, "repeats": 1},
    "footprint": {"runs": 2, "actors": 50},
    "stream": {"count": 3, "repeats": 2, "concurrent": 10, "bursts": 1},
    "router": {"count": 20, "repeats": 3, "soak_requests": 200},
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark theater-py against bare Pykka, raw requests, the openai SDK "
        "and LiteLLM, against one loopback fake provider.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--no-external",
        action="store_true",
        help="leave out the openai SDK and LiteLLM (the `bench` extra)",
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only this part (repeatable); all by default",
    )
    parser.add_argument(
        "--upstream",
        choices=("lean", "simulator"),
        default="lean",
        help="the fake provider: a lean asyncio server (default) or the OpenAISimulator",
    )
    parser.add_argument(
        "--repeats", type=int, help="override the number of repeats of every measurement"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="where to write the JSON (default bench/results/<date>.json; "
        "<date>-hop.json with --only hop, <date>-quick.json with --quick)",
    )
    return parser


def _progress(note: str) -> None:
    print(f"[bench] {note}", file=sys.stderr, flush=True)


def _write(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(partial, path)


def _default_name(today: str, quick: bool, only: Sequence[str] | None) -> str:
    """``<date>.json`` for a full run; ``-<part>...`` for parts, ``-quick`` for a smoke run."""
    parts = [today]
    if only and set(only) != set(SECTIONS):
        parts += [name for name in SECTIONS if name in only]
    if quick:
        parts.append("quick")
    return "-".join(parts) + ".json"


def run(
    *,
    quick: bool,
    external: bool,
    sections: Sequence[str],
    upstream: str,
    repeats: int | None,
    command: Sequence[str],
) -> dict[str, Any]:
    """Run the chosen parts of the benchmark.

    Args:
        quick: use the smoke-run sizes.
        external: include the openai SDK and LiteLLM.
        sections: which of :data:`SECTIONS` to run.
        upstream: the fake provider's kind.
        repeats: overrides every part's number of repeats.
        command: the command line, recorded in the results.

    Returns:
        The results: ``meta`` (date, mode, machine, versions, command), one entry per
        part, and ``targets`` (the issue's targets, judged).
    """
    sizes = {name: dict(size) for name, size in (_QUICK if quick else _FULL).items()}
    if repeats is not None:
        for size in sizes.values():
            if "repeats" in size:
                size["repeats"] = repeats
    names = [name for name in NAMES if external or name not in EXTERNAL]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "mode": "quick" if quick else "full",
            "command": " ".join(command),
            "sizes": {name: sizes[name] for name in sections},
            "contenders": names,
            "external_skipped": [] if external else list(EXTERNAL),
            **describe_machine(),
        }
    }
    if "hop" in sections:
        results["hop"] = hop.run(**sizes["hop"], progress=_progress)
    if "proxy" in sections:
        results["proxy"] = proxy.run(names, **sizes["proxy"], upstream=upstream, progress=_progress)
    if "concurrency" in sections:
        results["concurrency"] = concurrency.run(
            names, **sizes["concurrency"], upstream=upstream, progress=_progress
        )
    if "footprint" in sections:
        with Upstream(0, upstream) as server:
            results["footprint"] = footprint.run(
                **sizes["footprint"], base_url=server.base_url, progress=_progress
            )
    if "stream" in sections:
        streamers = [name for name in stream.STREAMERS if external or name not in EXTERNAL]
        results["stream"] = stream.run(streamers, **sizes["stream"], progress=_progress)
    if "router" in sections:
        results["router"] = router.run(**sizes["router"], upstream=upstream, progress=_progress)
    results["meta"]["load_average_after"] = list(os.getloadavg())
    results["meta"]["duration_s"] = round(time.perf_counter() - started, 1)
    results["targets"] = judge_targets(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks, write the JSON and print the Markdown tables."""
    args = _parser().parse_args(argv)
    today = datetime.date.today().isoformat()
    output = args.output or RESULTS / _default_name(today, args.quick, args.only)
    results = run(
        quick=args.quick,
        external=not args.no_external,
        sections=args.only or SECTIONS,
        upstream=args.upstream,
        repeats=args.repeats,
        command=["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)],
    )
    _write(output, results)
    print(render_markdown(results))
    _progress(f"results written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
