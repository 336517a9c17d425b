"""The router: its added latency over a single proxy, and a soak through faulty providers.

``overhead``: the same completion, one at a time, against the same fake provider, through
ONE proxy actor and through a router in front of one such proxy (with and without a
budget, which adds a reservation and a settlement per request), interleaved repeat by
repeat. The goal is under 10 % added latency. A fourth contender, ``forward``, is an actor
that only passes each request to a child proxy: the runtime's price of the extra hop,
so that the router's own logic is the difference between it and ``router``.

``soak``: many requests from many threads through a router over three simulators, while
a thread injects faults into them (5xx, 429 with ``Retry-After``, resets, stalls, malformed
200s, streams without usage or broken after their first delta). A fifth of the requests
stream, and one in ten of those is closed by its caller (before or after its first delta).
It checks that every request got exactly one reply (none lost, none answered twice), that
every completion answers its own request, and that the spend never passed the budget, which
is set to run out partway through. The spend is what the simulators billed: every chat
completion they answered ``200`` (read or not, usage reported or not) at one request's
price, not what the replies said they cost.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench._timing import compare, paired_ratio
from bench.actors import FORWARD_MANIFEST
from bench.clients import KEY, KEY_ENV
from bench.upstream import MODEL, PROMPT, Upstream
from theater_py import Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    Message,
    Text,
)
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

__all__ = [
    "JUDGED_LATENCY_MS",
    "added_latency",
    "contenders",
    "measure_overhead",
    "overhead",
    "run",
    "soak",
]

JUDGED_LATENCY_MS = 5
"""The provider's time to answer that the 10 % goal is judged at: about what the smallest
real model answered one token in on this machine (SmolLM2-135M on llama-cpp-python, its
prompt cached: 5.5 ms; see ``bench/live.py``). Against a provider answering at once the
whole request is local work, and the runtime's hop alone is over 10 % of it (see
docs/performance.md, "The router's goal, judged")."""

_EXPECTED = f"You said: {PROMPT}"
_FAULTS = (
    {"status": 500},
    {"status": 503},
    {"status": 429, "retry_after_ms": "30"},
    {"fault": "reset"},
    {"fault": "stall=150"},
    {"fault": "malformed"},
    {"fault": "no_usage"},
    {"fault": "stream_error"},
)
_CANCELLED = "cancelled by its caller"
"""The outcome of a stream the soak closed itself."""


def _ask(model: str, text: str = PROMPT, max_tokens: int = 64) -> GenerateCompletion:
    return GenerateCompletion(
        CompletionRequest(
            model=model,
            messages=[Message.user(text)],
            max_tokens=max_tokens,
            temperature=0.7,
        )
    )


def _caller(
    handle: Any, message: GenerateCompletion, expected: str | None = _EXPECTED
) -> Callable[[], None]:
    """A call that makes one completion and checks its text (``expected``; ``None``: any
    text, for a real model)."""

    def call() -> None:
        reply = handle.request(message, timeout=120)
        if not isinstance(reply, Completion):
            raise RuntimeError(f"answered {reply!r}")
        block = reply.completion.content[0]
        if not isinstance(block, Text) or (expected is not None and block.text != expected):
            raise RuntimeError(f"unexpected completion {block!r}")

    return call


def contenders(
    runtime: Runtime,
    base_url: str,
    *,
    model: str = MODEL,
    settings: dict[str, Any] | None = None,
    max_tokens: int = 64,
    expected: str | None = _EXPECTED,
) -> dict[str, Callable[[], None]]:
    """The overhead's contenders on ``runtime``, against the provider at ``base_url``: a
    call each that makes one completion of ``model`` and checks it (``proxy``,
    ``forward``, ``router``, ``router_budget``).

    ``settings`` are added to each proxy's config (the router's providers' too);
    ``expected`` is the completion's text (``None``: any).
    """
    os.environ[KEY_ENV] = KEY
    config = {"base_url": base_url, "api_key_env": KEY_ENV, "max_cache_size": 0, **(settings or {})}
    proxy = runtime.start_actor("openai-proxy", {"config": config}, name="bench-proxy")
    forward = runtime.start_actor(
        FORWARD_MANIFEST,
        {"manifest": "openai-proxy", "init": {"config": config}},
        name="bench-forward",
    )
    direct = _ask(model, max_tokens=max_tokens)
    calls = {
        "proxy": _caller(proxy, direct, expected),
        "forward": _caller(forward, direct, expected),
    }
    for name, extra in (("router", {}), ("router_budget", {"budget": {"usd": 1e9}})):
        router = runtime.start_actor(
            "openai-router",
            {
                "config": {
                    "providers": {"p": {"init": {"config": config}}},
                    "routes": {"r": [f"p:{model}"]},
                    **extra,
                }
            },
            name=f"bench-{name}",
        )
        calls[name] = _caller(router, _ask("r", max_tokens=max_tokens), expected)
    return calls


def added_latency(measured: dict[str, Any], *, at_once: bool = True) -> dict[str, Any]:
    """What each of ``forward``, ``router`` and ``router_budget`` adds to ``proxy`` in
    ``measured`` (a :func:`~bench._timing.compare` result).

    Per contender: ``latency_ratio`` (paired, block by block), ``added_latency_us`` and
    ``added_cpu_us`` (medians' differences), ``cpu_ratio``, and, ``at_once`` (the
    provider answered at once, so the proxy's latency is its own time), ``break_even_ms``:
    how long a provider would have to take for the added latency to be under 10 % of a
    request, ``10 x added - proxy``, at least 0 (``None`` for a paced or real provider).
    It holds if the added latency did not grow with the provider's time; on a machine
    whose idle makes work slower it does grow (docs/performance.md), so it is a lower
    bound, and the paced runs are the measure.
    """
    base = measured.get("proxy")
    added: dict[str, Any] = {}
    if base is None or "cpu_us" not in base:
        return added
    for name in ("forward", "router", "router_budget"):
        mine = measured.get(name, {})
        if "cpu_us" not in mine:
            continue
        extra_us = mine["median_us"] - base["median_us"]
        added[name] = {
            "latency_ratio": paired_ratio(mine, base),
            "added_latency_us": round(extra_us, 1),
            "cpu_ratio": round(mine["cpu_us"] / base["cpu_us"], 2),
            "added_cpu_us": round(mine["cpu_us"] - base["cpu_us"], 1),
            "break_even_ms": (
                round(max(0.0, 10 * extra_us - base["median_us"]) / 1000, 2) if at_once else None
            ),
        }
    return added


def measure_overhead(
    base_url: str,
    *,
    upstream: dict[str, Any],
    count: int,
    repeats: int,
    warmup: int,
    progress: Callable[[str], None],
    at_once: bool,
    **options: Any,
) -> dict[str, Any]:
    """Time the :func:`contenders` (``options`` are theirs) on a fresh runtime against the
    provider at ``base_url``, interleaved; ``upstream`` describes that provider, and
    ``at_once`` says whether it answers at once (see :func:`added_latency`).

    Returns:
        ``upstream``, ``contenders`` (latency summaries and ``cpu_us``) and ``added``
        (:func:`added_latency`).
    """
    with contextlib.ExitStack() as stack:
        runtime = Runtime(in_memory=True)
        stack.callback(runtime.shutdown, 10)
        measured = compare(
            contenders(runtime, base_url, **options),
            count=count,
            repeats=repeats,
            warmup=warmup,
            progress=progress,
        )
    return {
        "upstream": upstream,
        "contenders": measured,
        "added": added_latency(measured, at_once=at_once),
    }


def overhead(
    *,
    count: int,
    repeats: int,
    upstream: str,
    progress: Callable[[str], None],
    latency_ms: int = 0,
) -> dict[str, Any]:
    """One request's latency and CPU through a proxy, a router, and a router with a budget,
    against a provider that answers after ``latency_ms`` (0: at once, the worst case, where
    the whole request is local work): :func:`measure_overhead`."""
    with Upstream(latency_ms, upstream) as server:
        return measure_overhead(
            server.base_url,
            upstream={"kind": upstream, "latency_ms": latency_ms},
            count=count,
            repeats=repeats,
            warmup=min(count, 50),
            progress=lambda note: progress(f"router overhead ({latency_ms} ms) {note}"),
            at_once=latency_ms == 0,
        )


def soak(
    *,
    requests: int,
    concurrency: int = 32,
    budget_share: float = 0.7,
    seed: int = 13,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Drive ``requests`` requests through a router over three faulty simulators.

    Args:
        requests: how many requests.
        concurrency: how many at once.
        budget_share: the budget, as a share of what all the requests would cost.
        seed: the fault injector's random seed.
        progress: told every tenth of the way.

    Returns:
        The counts (``served``, ``errors`` by kind), the checks (``lost``,
        ``answered_twice``, ``wrong_answer``, ``over_budget``: each must be 0 or false),
        ``spent_usd`` and ``budget_usd``, and ``ok``: every check passed.
    """
    os.environ[KEY_ENV] = KEY
    with contextlib.ExitStack() as stack:
        # Thousands of injected faults: their retry and fallback lines would drown the run.
        for name in ("theater_py_actors", "theater_py"):
            quiet = logging.getLogger(name)
            stack.callback(quiet.setLevel, quiet.level)
            quiet.setLevel(logging.CRITICAL)
        sims = [stack.enter_context(OpenAISimulator(api_key=KEY)) for _ in range(3)]
        runtime = Runtime(in_memory=True)
        stack.callback(runtime.shutdown, 10)
        config, unit = _soak_router(runtime, sims)
        budget = unit * requests * budget_share
        router = runtime.start_actor(
            "openai-router",
            {"config": {**config, "budget": {"usd": budget}}},
            name="soak-router",
        )
        pilot_billed = sum(sim.billed for sim in sims)
        stop = threading.Event()
        injector = threading.Thread(
            target=_inject, args=(sims, stop, random.Random(seed)), name="soak-faults", daemon=True
        )
        injector.start()
        stack.callback(injector.join, 5)
        stack.callback(stop.set)
        replies: dict[int, list[Any]] = {i: [] for i in range(requests)}
        started = time.perf_counter()

        def one_request(index: int) -> tuple[int, Any]:
            # The text ends in a word no other request's ends in: the answer quotes it.
            message = _ask("soak", f"soak request {index}", max_tokens=16)
            try:
                if index % 5:
                    return index, router.request(message, timeout=30)
                return index, _stream(router, message, close_after=_close_after(index))
            except Exception as exc:  # a lost request is what this counts
                return index, exc

        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            step = max(requests // 10, 1)
            for done, (index, reply) in enumerate(pool.map(one_request, range(requests)), 1):
                replies[index].append(reply)
                if progress is not None and done % step == 0:
                    progress(f"router soak {done}/{requests}")
        elapsed = time.perf_counter() - started
        router.stop(timeout=10)
        billed = sum(sim.billed for sim in sims) - pilot_billed
    result = _tally(replies, budget, billed * unit)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "providers": len(sims),
        **result,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(requests / elapsed, 1) if elapsed else None,
    }


def _soak_router(runtime: Runtime, sims: list[OpenAISimulator]) -> tuple[dict[str, Any], float]:
    """A router's config over ``sims`` (without its budget), and one soak request's price."""
    retry = {"max_retries": 2, "initial_delay_ms": 1, "max_delay_ms": 5}
    providers = {
        name: {
            "init": {
                "config": {
                    "base_url": sim.base_url,
                    "api_key_env": KEY_ENV,
                    "max_cache_size": 0,
                    "retry_config": {**retry, "max_total_timeout_ms": 5000},
                }
            }
        }
        for name, sim in zip("abc", sims, strict=True)
    }
    pilot = runtime.start_actor(
        "openai-router", {"config": {"providers": {"a": providers["a"]}}}, name="soak-pilot"
    )
    # A request of the soak's shape: every soak request costs what it costs.
    priced = pilot.request(_ask(f"a:{MODEL}", "soak request 0", max_tokens=16), timeout=30)
    pilot.stop(timeout=10)
    if not isinstance(priced, Completion) or not priced.completion.usage.cost_usd:
        raise RuntimeError(f"the pilot request failed: {priced!r}")
    config = {
        "providers": providers,
        "routes": {"soak": [f"{name}:{MODEL}" for name in providers]},
        "max_total_timeout_ms": 10_000,
    }
    return config, priced.completion.usage.cost_usd


def _close_after(index: int) -> int | None:
    """How many deltas a stream's caller reads before it closes it (``None``: all)."""
    if index % 50 == 0:
        return 0  # closed before its first delta
    if index % 50 == 25:
        return 1
    return None


def _stream(router: Any, message: GenerateCompletion, close_after: int | None) -> Any:
    """Stream ``message``; its last message, or :data:`_CANCELLED` if the caller closed it."""
    with router.open_channel(message, timeout=30) as channel:
        if close_after == 0:
            return _CANCELLED  # closed at once: before its first delta
        last = None
        for count, item in enumerate(channel):
            if close_after is not None and count >= close_after:
                return _CANCELLED
            last = item
        return last


def _inject(sims: list[OpenAISimulator], stop: threading.Event, rng: random.Random) -> None:
    """Queue a random fault on a random simulator every 10 ms until ``stop``."""
    while not stop.wait(0.01):
        sim = rng.choice(sims)
        fault = dict(rng.choice(_FAULTS))
        if "fault" in fault:
            sim.fail_next(fault=str(fault["fault"]))
        else:
            sim.fail_next(**fault, times=rng.randint(1, 3))


def _tally(replies: dict[int, list[Any]], budget: float, spent: float) -> dict[str, Any]:
    served = lost = answered_twice = wrong = cancelled = 0
    kinds: Counter[str] = Counter()
    for index, got in replies.items():
        answered_twice += max(len(got) - 1, 0)
        if not got or isinstance(got[0], Exception):
            lost += 1
            continue
        reply = got[0]
        if reply == _CANCELLED:
            cancelled += 1
        elif isinstance(reply, Completion):
            served += 1
            block = reply.completion.content[0]
            if not isinstance(block, Text) or block.text != f"You said: soak request {index}":
                wrong += 1
        elif isinstance(reply, ErrorResponse):
            kinds[str(reply.kind)] += 1
        else:
            wrong += 1
    over = spent > budget + 1e-12
    return {
        "served": served,
        "cancelled": cancelled,
        "errors": dict(kinds),
        "lost": lost,
        "answered_twice": answered_twice,
        "wrong_answer": wrong,
        "spent_usd": round(spent, 8),
        "budget_usd": round(budget, 8),
        "over_budget": over,
        "ok": not (lost or answered_twice or wrong or over),
    }


def run(
    *,
    count: int,
    repeats: int,
    soak_requests: int,
    upstream: str,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Both parts: ``overhead`` (against a provider answering at once: local work alone),
    ``overhead_paced`` (one per :data:`PACED_LATENCIES_MS`, each still faster than a real
    model) and ``soak``."""
    return {
        "overhead": overhead(count=count, repeats=repeats, upstream=upstream, progress=progress),
        "overhead_paced": [
            overhead(
                # The judged run gets the full sizes; the others, a fifth and a third.
                count=count if latency_ms == JUDGED_LATENCY_MS else max(1, count // 5),
                repeats=repeats if latency_ms == JUDGED_LATENCY_MS else max(1, repeats // 3),
                upstream=upstream,
                progress=progress,
                latency_ms=latency_ms,
            )
            for latency_ms in PACED_LATENCIES_MS
        ],
        "soak": soak(requests=soak_requests, progress=progress),
    }


PACED_LATENCIES_MS = (2, JUDGED_LATENCY_MS, 20)
"""The paced providers' times to answer: around the break-even, at the judged latency,
and a tenth of a fast real completion's."""
