"""The runtime hop: a request round trip and a send through theater-py, against bare Pykka.

Four ways of asking an echo actor for a reply, timed call by call and interleaved:
``pykka_ask`` (``ActorRef.ask`` to a bare :class:`pykka.ThreadingActor`), ``request_typed``
(``ActorHandle.request`` with an attrs message), ``request_typed_saved`` (the same, to the
same actor started with ``save_chain = true``, so its ``request`` and ``response`` events
go to a SQLite file in a temporary ``THEATER_PY_HOME``) and ``request_json``
(``request_json``, decoded into and encoded from the same attrs types by
:mod:`theater_py.serde`). Then the throughput of fire-and-forget messages: ``tell``
against ``send`` (chain in memory, and saved) and ``send_json``.

After each block the saved events still queued are written, untimed, so that the next
block (another contender's) does not pay for them. Each ratio to ``pykka_ask`` is given
two ways: of the overall medians, and ``paired``: the median (and range) of the
per-repeat ratios, each of two blocks that ran back to back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pykka

from bench._timing import compare, paired_ratio
from bench.actors import ECHO_MANIFEST, ECHO_SAVED_MANIFEST, Count, Ping, Pong, PykkaEcho, Tick
from theater_py import ActorHandle, Runtime
from theater_py._home import HOME_ENV_VAR

__all__ = ["run"]


def _throughput(
    send: Callable[[int], object], count_ticks: Callable[[], int], messages: int
) -> tuple[float, float]:
    """Send ``messages`` messages, then wait for the actor to have counted them all.

    Returns:
        Messages handled per second (until the count came back), and the caller's cost
        of one send in microseconds.
    """
    before = count_ticks()
    start = time.perf_counter()
    for seq in range(messages):
        send(seq)
    queued = time.perf_counter()
    handled = count_ticks() - before
    done = time.perf_counter()
    if handled != messages:
        raise RuntimeError(f"the actor counted {handled} of {messages} messages")
    return messages / (done - start), (queued - start) / messages * 1e6


def _throughputs(
    senders: dict[str, tuple[Callable[[int], object], Callable[[], int]]],
    messages: int,
    repeats: int,
    settle: Callable[[], object],
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in senders}
    for _ in range(repeats):
        for name, (send, count_ticks) in senders.items():
            runs[name].append(_throughput(send, count_ticks, messages))
            settle()  # untimed: the next sender must not pay for this one's saved events
    results: dict[str, dict[str, Any]] = {}
    for name, measured in runs.items():
        rates = sorted(rate for rate, _ in measured)
        costs = sorted(cost for _, cost in measured)
        results[name] = {
            "median_msgs_per_s": round(rates[len(rates) // 2]),
            "spread_msgs_per_s": [round(rates[0]), round(rates[-1])],
            "send_cost_us": round(costs[len(costs) // 2], 2),
            "messages": messages,
            "repeats": repeats,
        }
    return results


@contextlib.contextmanager
def temporary_home() -> Iterator[str]:
    """Point ``THEATER_PY_HOME`` at a new temporary folder; restore it and delete the folder."""
    before = os.environ.get(HOME_ENV_VAR)
    with tempfile.TemporaryDirectory(prefix="theater-py-bench-") as home:
        os.environ[HOME_ENV_VAR] = home
        try:
            yield home
        finally:
            if before is None:
                del os.environ[HOME_ENV_VAR]
            else:
                os.environ[HOME_ENV_VAR] = before


def _check_saved(runtime: Runtime, handle: ActorHandle) -> int:
    """Check that the saved actor's events reached its file, and are intact; count them."""
    database = runtime.event_database
    if database.path is None or not database.path.exists():
        raise RuntimeError("the saved actor's chain is not in a file")
    database.flush()
    verified = handle.verify()
    if not verified.ok:
        raise RuntimeError(f"the saved chain does not verify: {verified.reason}")
    return verified.checked


@attrs.frozen
class EchoActors:
    """The echo actors of every contender, started and checked."""

    ref: pykka.ActorRef[PykkaEcho]
    """The bare Pykka actor."""
    runtime: Runtime
    memory: ActorHandle
    """Its chain in memory (``bench/manifests/echo.toml``)."""
    saved: ActorHandle
    """Its chain saved (``bench/manifests/echo-saved.toml``)."""

    def calls(self) -> dict[str, Callable[[], object]]:
        """One round trip per contender, by name: the hop's latency contenders."""
        ping = Ping(0)
        ping_json = {"Ping": {"seq": 0, "text": "ping"}}
        return {
            "pykka_ask": lambda: self.ref.ask(ping),
            "request_typed": lambda: self.memory.request(ping),
            "request_typed_saved": lambda: self.saved.request(ping),
            "request_json": lambda: self.memory.request_json(ping_json),
        }

    def saved_events(self) -> int:
        """Flush the saved chain and verify it from its file; return its length."""
        return _check_saved(self.runtime, self.saved)


@contextlib.contextmanager
def echo_actors() -> Iterator[EchoActors]:
    """Start a bare Pykka echo actor and two theater-py ones, the saved one in a
    temporary ``THEATER_PY_HOME``; check each echoes; stop them all on exit."""
    ref = PykkaEcho.start()
    try:
        with temporary_home(), Runtime() as runtime:
            actors = EchoActors(
                ref,
                runtime,
                runtime.start_actor(ECHO_MANIFEST),
                runtime.start_actor(ECHO_SAVED_MANIFEST),
            )
            for name, call in actors.calls().items():
                if call() not in (Pong(0, "ping"), {"seq": 0, "text": "ping"}):
                    raise RuntimeError(f"{name}: the echo actor does not echo")
            yield actors
            actors.memory.stop(timeout=10)
            actors.saved.stop(timeout=10)
    finally:
        ref.stop(timeout=10)


def run(
    *, count: int, repeats: int, messages: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Measure the hop; see the module's docstring.

    Args:
        count: round trips per repeat and contender.
        repeats: how many interleaved repeats.
        messages: sends per throughput repeat.
        progress: told of each finished repeat.

    Returns:
        ``latency`` (per contender: median, p99, spread, CPU per call), ``throughput``
        (per contender: messages per second and the caller's cost of a send),
        ``ratios`` (each against its Pykka baseline: of the medians), ``paired_ratios``
        (latency, per repeat: median and range) and ``saved_events`` (how many events
        the saved actor wrote and verified).
    """
    with echo_actors() as actors:
        ref, handle, saved = actors.ref, actors.memory, actors.saved
        latency = compare(
            actors.calls(),
            count=count,
            repeats=repeats,
            warmup=min(count, 500),
            progress=lambda note: progress(f"hop latency {note}"),
            settle=actors.runtime.event_database.flush,
        )
        count_message = Count()

        def count_pykka() -> int:
            pong = ref.ask(count_message)
            assert isinstance(pong, Pong)
            return pong.seq

        def count_theater() -> int:
            pong: Pong = handle.request(count_message)
            return pong.seq

        def count_saved() -> int:
            pong: Pong = saved.request(count_message)
            return pong.seq

        throughput = _throughputs(
            {
                "pykka_tell": (lambda seq: ref.tell(Tick(seq)), count_pykka),
                "send_typed": (lambda seq: handle.send(Tick(seq)), count_theater),
                "send_typed_saved": (lambda seq: saved.send(Tick(seq)), count_saved),
                "send_json": (
                    lambda seq: handle.send_json({"Tick": {"seq": seq}}),
                    count_theater,
                ),
            },
            messages,
            repeats,
            actors.runtime.event_database.flush,
        )
        saved_events = actors.saved_events()
    base = latency["pykka_ask"]["median_us"]
    rate = throughput["pykka_tell"]["median_msgs_per_s"]
    ratios = {
        f"{name}_vs_pykka_ask": round(latency[name]["median_us"] / base, 2)
        for name in ("request_typed", "request_typed_saved", "request_json")
    }
    for name in ("send_typed", "send_typed_saved", "send_json"):
        ratios[f"pykka_tell_vs_{name}"] = round(rate / throughput[name]["median_msgs_per_s"], 2)
    return {
        "latency": latency,
        "throughput": throughput,
        "ratios": ratios,
        "paired_ratios": {
            f"{name}_vs_pykka_ask": paired_ratio(latency[name], latency["pykka_ask"])
            for name in ("request_typed", "request_typed_saved", "request_json")
        },
        "saved_events": saved_events,
    }
