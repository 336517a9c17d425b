"""The runtime hop: a request round trip and a send through theater-py, against bare Pykka.

Three ways of asking an echo actor for a reply, timed call by call and interleaved:
``pykka_ask`` (``ActorRef.ask`` to a bare :class:`pykka.ThreadingActor`), ``request_typed``
(``ActorHandle.request`` with an attrs message) and ``request_json`` (``request_json``,
decoded into and encoded from the same attrs types by :mod:`theater_py.serde`). Then the
throughput of fire-and-forget messages: ``tell`` against ``send`` and ``send_json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench._timing import compare
from bench.actors import ECHO_MANIFEST, Count, Ping, Pong, PykkaEcho, Tick
from theater_py import Runtime

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
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in senders}
    for _ in range(repeats):
        for name, (send, count_ticks) in senders.items():
            runs[name].append(_throughput(send, count_ticks, messages))
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
        (per contender: messages per second and the caller's cost of a send) and
        ``ratios`` (each against its Pykka baseline).
    """
    ping = Ping(0)
    ping_json = {"Ping": {"seq": 0, "text": "ping"}}
    pong_json = {"seq": 0, "text": "ping"}
    ref = PykkaEcho.start()
    try:
        with Runtime(in_memory=True) as runtime:
            handle = runtime.start_actor(ECHO_MANIFEST)
            if ref.ask(ping) != Pong(0, "ping") or handle.request(ping) != Pong(0, "ping"):
                raise RuntimeError("an echo actor does not echo")
            if handle.request_json(ping_json) != pong_json:
                raise RuntimeError("the echo actor does not echo JSON")
            latency = compare(
                {
                    "pykka_ask": lambda: ref.ask(ping),
                    "request_typed": lambda: handle.request(ping),
                    "request_json": lambda: handle.request_json(ping_json),
                },
                count=count,
                repeats=repeats,
                warmup=min(count, 500),
                progress=lambda note: progress(f"hop latency {note}"),
            )
            count_message = Count()

            def count_pykka() -> int:
                pong = ref.ask(count_message)
                assert isinstance(pong, Pong)
                return pong.seq

            def count_theater() -> int:
                pong: Pong = handle.request(count_message)
                return pong.seq

            throughput = _throughputs(
                {
                    "pykka_tell": (lambda seq: ref.tell(Tick(seq)), count_pykka),
                    "send_typed": (lambda seq: handle.send(Tick(seq)), count_theater),
                    "send_json": (
                        lambda seq: handle.send_json({"Tick": {"seq": seq}}),
                        count_theater,
                    ),
                },
                messages,
                repeats,
            )
            handle.stop(timeout=10)
    finally:
        ref.stop(timeout=10)
    base = latency["pykka_ask"]["median_us"]
    rate = throughput["pykka_tell"]["median_msgs_per_s"]
    typed_rate = throughput["send_typed"]["median_msgs_per_s"]
    json_rate = throughput["send_json"]["median_msgs_per_s"]
    return {
        "latency": latency,
        "throughput": throughput,
        "ratios": {
            "request_typed_vs_pykka_ask": round(latency["request_typed"]["median_us"] / base, 2),
            "request_json_vs_pykka_ask": round(latency["request_json"]["median_us"] / base, 2),
            "pykka_tell_vs_send_typed": round(rate / typed_rate, 2),
            "pykka_tell_vs_send_json": round(rate / json_rate, 2),
        },
    }
