"""Instructions per round trip of each hop contender, counted by Valgrind (callgrind).

Wall-clock medians on a shared 2-vCPU machine move with its load; an instruction count
does not. ``python -m bench.instructions`` runs each contender of :mod:`bench.hop`
(``pykka_ask``, ``request_typed``, ``request_typed_saved``, ``request_json``) in its own
process under ``valgrind --tool=callgrind``, twice: with ``--low`` and with ``--high``
round trips after the same start-up and warm-up. The difference of the two totals over
the difference of the counts is the instructions of one round trip, every thread
included (the caller, the actor, the saved chain's writer), and nothing of the start-up.
Each is then divided by ``pykka_ask``'s. ``--only requests --only proxy_typed`` counts a
plain proxied completion against raw ``requests`` (``stream_requests``, ``stream_proxy``: a
streamed one of 200 chunks; ``router_proxy``, ``router_forward``, ``router_router``: a plain
completion through :func:`bench.router.contenders`' proxy, pass-through actor and
router), the fake provider running untraced in its own process.

What it cannot see: time spent waiting (a thread hand-off, a wake-up of an idle vCPU),
cache misses, and contention. Read it beside the timed hop, not instead of it. And
Valgrind runs the program some 50 times slower, one thread at a time, so what depends on
the clock behaves differently: the saved chain's writer, which waits up to 5 ms to gather
events into one transaction, would gather about 7 events instead of about 250, so the
child stretches that wait by :data:`LINGER_SCALE` to write batches of the native size
(about 200 events).

```--repeats`` runs the pairs again, so that the spread of the method shows (thread
scheduling under Valgrind varies a little from run to run). Results go to
``bench/results/<date>-instructions.json`` unless ``--output`` says otherwise. Each
process takes about half a minute to a minute, mostly waiting, and ``--jobs`` (4) run at
once: the default (2 repeats x 4 contenders x 2 counts) takes a few minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._machine import describe_machine

__all__ = ["CONTENDERS", "count_instructions", "main"]

HOP_CONTENDERS = ("pykka_ask", "request_typed", "request_typed_saved", "request_json")
PROXY_CONTENDERS = ("requests", "proxy_typed", "proxy_json")
"""A plain completion per round trip, against :mod:`bench.upstream` in its own process
(not traced: only the client's instructions count)."""
STREAM_CONTENDERS = ("stream_requests", "stream_proxy")
"""One streamed completion of :data:`~bench.upstream.STREAM_CHUNKS` chunks per round trip."""
ROUTER_CONTENDERS = ("router_proxy", "router_forward", "router_router")
"""A plain completion through :func:`bench.router.contenders`' ``proxy``, ``forward``
(one more actor that passes it on: the hop alone) and ``router``."""
CONTENDERS = (*HOP_CONTENDERS, *PROXY_CONTENDERS, *STREAM_CONTENDERS, *ROUTER_CONTENDERS)
RESULTS = Path(__file__).resolve().parent / "results"
_WARMUP = 300
LINGER_SCALE = 50
"""How much longer the saved chain's writer waits for a batch under Valgrind."""
_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)$", re.MULTILINE)


def _child(name: str, count: int) -> None:
    """Start the echo actors (or the fake provider), warm ``name`` up, then make ``count``
    round trips."""
    if name not in HOP_CONTENDERS:
        _child_upstream(name, count)
        return
    from bench.hop import echo_actors
    from theater_py.chain import EventDatabase

    # theater_py._eventdb cannot be imported before theater_py.chain (a cycle).
    eventdb = sys.modules[EventDatabase.__module__]
    eventdb._LINGER *= LINGER_SCALE  # type: ignore[attr-defined]
    with echo_actors() as actors:
        call = actors.calls()[name]
        for _ in range(_WARMUP):
            call()
        for _ in range(count):
            call()
        if name == "request_typed_saved":
            # Every event written (counted); not verified, which reads them all back.
            actors.runtime.event_database.flush()


def _child_upstream(name: str, count: int) -> None:
    import contextlib

    from bench.clients import make_contender
    from bench.stream import STREAMERS
    from bench.upstream import Upstream

    with Upstream() as server, contextlib.ExitStack() as stack:
        if name in STREAM_CONTENDERS:
            call = STREAMERS[name.removeprefix("stream_")](server.base_url, stack)
        elif name in ROUTER_CONTENDERS:
            from bench.router import contenders
            from theater_py import Runtime

            runtime = Runtime(in_memory=True)
            stack.callback(runtime.shutdown, 10)
            call = contenders(runtime, server.base_url)[name.removeprefix("router_")]
        else:
            call = stack.enter_context(make_contender(name, server.base_url)).call
        for _ in range(_WARMUP // 10 if name in STREAM_CONTENDERS else _WARMUP):
            call()
        for _ in range(count):
            call()


def count_instructions(name: str, count: int, valgrind: str = "valgrind") -> int:
    """Return the instructions callgrind counted in a process making ``count`` round trips.

    Raises:
        RuntimeError: the process failed, or callgrind printed no total.
    """
    with tempfile.TemporaryDirectory(prefix="theater-py-callgrind-") as folder:
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={folder}/callgrind.out",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                name,
                "--count",
                str(count),
            ],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"{name} x {count} under callgrind failed: {' / '.join(tail)}")
    return int(found.group(1))


def measure(
    names: Sequence[str], *, low: int, high: int, repeats: int, valgrind: str, jobs: int
) -> dict[str, Any]:
    """Count each contender's instructions per round trip ``repeats`` times; compare them.

    The processes run ``jobs`` at a time: a count does not depend on the load.

    Returns:
        ``per_round_trip`` (per contender: ``median``, ``spread`` and every ``run``),
        ``ratios`` (each contender's median over ``pykka_ask``'s, when it was measured).
    """
    tasks = [(name, count) for _ in range(repeats) for name in names for count in (low, high)]
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        totals = list(pool.map(lambda task: count_instructions(*task, valgrind), tasks))
    runs: dict[str, list[float]] = {name: [] for name in names}
    for index in range(0, len(tasks), 2):
        name = tasks[index][0]
        runs[name].append((totals[index + 1] - totals[index]) / (high - low))
    per_trip = {
        name: {
            "median": round(statistics.median(values)),
            "spread": [round(min(values)), round(max(values))],
            "runs": [round(value) for value in values],
        }
        for name, values in runs.items()
    }
    ratios: dict[str, float] = {}
    for base_name, group in (
        ("pykka_ask", HOP_CONTENDERS),
        ("requests", PROXY_CONTENDERS),
        ("stream_requests", STREAM_CONTENDERS),
        ("router_proxy", ROUTER_CONTENDERS),
    ):
        if base_name in per_trip:
            base = per_trip[base_name]["median"]
            ratios.update(
                {
                    f"{name}_vs_{base_name}": round(entry["median"] / base, 2)
                    for name, entry in per_trip.items()
                    if name != base_name and name in group
                }
            )
    return {"per_round_trip": per_trip, "ratios": ratios}


def main(argv: Sequence[str] | None = None) -> int:
    """Count the hop contenders' instructions per round trip and write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions",
        description="Instructions per hop round trip, by callgrind (see the module docstring).",
    )
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=CONTENDERS, action="append", help="these contenders")
    parser.add_argument("--low", type=int, default=500, help="round trips of the short run")
    parser.add_argument("--high", type=int, default=2500, help="round trips of the long run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--valgrind", default=shutil.which("valgrind") or "valgrind")
    parser.add_argument("--jobs", type=int, default=4, help="processes under Valgrind at once")
    parser.add_argument(
        "--output", type=Path, help="default: bench/results/<date>-instructions.json"
    )
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.count)
        return 0
    if args.high <= args.low:
        parser.error("--high must be more than --low")
    names = [name for name in (args.only or HOP_CONTENDERS) if name in CONTENDERS]
    measured = measure(
        names,
        low=args.low,
        high=args.high,
        repeats=args.repeats,
        valgrind=args.valgrind,
        jobs=args.jobs,
    )
    version = subprocess.run(
        [args.valgrind, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    results = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python", "-m", "bench.instructions", *(argv or sys.argv[1:])]),
            "valgrind": version,
            "round_trips": [args.low, args.high],
            "linger_scale": LINGER_SCALE,
            "repeats": args.repeats,
            **describe_machine(),
            "load_average_after": list(os.getloadavg()),
        },
        **measured,
    }
    today = datetime.date.today().isoformat()
    output = args.output or RESULTS / f"{today}-instructions.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in measured["per_round_trip"].items():
        ratio = next((v for k, v in measured["ratios"].items() if k.startswith(f"{name}_vs_")), 1.0)
        print(f"{name}: {entry['median']:,} instructions/round trip {entry['spread']} {ratio}x")
    print(f"results written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
