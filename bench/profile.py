"""Profile one contender across all its threads, optionally against a baseline.

The proxy's work is spread over three threads (the caller, the actor, a pool thread), which
:mod:`cProfile` and pyinstrument do not follow; yappi (in the ``bench`` extra) does.
``python -m bench.profile proxy_typed --against requests`` prints, per function, the CPU
time per call the contender spends there beyond what the baseline spends: the overhead.
``python -m bench.profile hop --against pykka_ask`` profiles the typed runtime hop against a
bare Pykka ask (``hop_saved``: to an actor whose chain is saved; ``hop_json``: JSON in and out).

Profiling slows every Python function call several times over, so read the shares, not the
absolute numbers.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable, Sequence
from typing import Any

from bench.clients import NAMES, make_contender
from bench.hop import echo_actors
from bench.upstream import Upstream

__all__ = ["main"]

Profile = dict[str, list[float]]  # function -> [own us per call, total us per call, calls per call]


def _label(stat: Any) -> str:
    module = str(stat.module)
    for marker in ("site-packages/", "/work/main/", "python3.11/", "python3.12/", "python3.13/"):
        module = module.rsplit(marker, maxsplit=1)[-1]
    return f"{module}:{stat.lineno} {stat.name}"


def _profile(call: Callable[[], object], calls: int, clock: str) -> tuple[Profile, float]:
    import yappi  # type: ignore[import-untyped]

    for _ in range(min(calls, 200)):
        call()  # warm: connections, caches, lazily started threads
    yappi.clear_stats()
    yappi.set_clock_type(clock)
    yappi.start(builtins=False, profile_threads=True)
    try:
        for _ in range(calls):
            call()
    finally:
        yappi.stop()
    profile: Profile = collections.defaultdict(lambda: [0.0, 0.0, 0.0])
    for stat in yappi.get_func_stats():
        entry = profile[_label(stat)]
        entry[0] += stat.tsub / calls * 1e6
        entry[1] += stat.ttot / calls * 1e6
        entry[2] += stat.ncall / calls
    total = sum(thread.ttot for thread in yappi.get_thread_stats()) / calls * 1e6
    return profile, total


# The hop's contenders, by their names here.
_HOP = {
    "hop": "request_typed",
    "hop_saved": "request_typed_saved",
    "hop_json": "request_json",
    "pykka_ask": "pykka_ask",
}


def _print(profile: Profile, baseline: Profile | None, top: int) -> None:
    def overhead(name: str) -> float:
        own = profile[name][0]
        return own - (baseline[name][0] if baseline and name in baseline else 0.0)

    names = sorted(profile, key=overhead, reverse=True)[:top]
    print(f"{'own us':>8} {'extra us':>8} {'total us':>9} {'calls':>6}  function")
    for name in names:
        own, total, count = profile[name]
        print(f"{own:8.1f} {overhead(name):8.1f} {total:9.1f} {count:6.1f}  {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Profile a contender (or the hop) and print where its time goes."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("target", choices=(*NAMES, *_HOP))
    parser.add_argument("--against", choices=(*NAMES, "pykka_ask"), help="a baseline to subtract")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    baseline: Profile | None = None
    if args.target in _HOP:
        with echo_actors() as actors:
            calls = actors.calls()
            profile, total = _profile(calls[_HOP[args.target]], args.calls, args.clock)
            if args.against == "pykka_ask":
                baseline, base_total = _profile(calls["pykka_ask"], args.calls, args.clock)
                print(f"profiled {args.clock} us per call: pykka_ask {base_total:.1f}")
    else:
        with Upstream() as server:
            with make_contender(args.target, server.base_url) as contender:
                profile, total = _profile(contender.call, args.calls, args.clock)
            if args.against and args.against != "pykka_ask":
                with make_contender(args.against, server.base_url) as contender:
                    baseline, base_total = _profile(contender.call, args.calls, args.clock)
                print(f"profiled {args.clock} us per call: {args.against} {base_total:.1f}")
    print(f"profiled {args.clock} us per call: {args.target} {total:.1f}")
    _print(profile, baseline, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
