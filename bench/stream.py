"""Streaming: the proxy streaming a completion over a channel, against raw clients streaming it.

Every contender streams the same answer of :data:`~bench.upstream.STREAM_CHUNKS` text
chunks from the same fake provider (which writes the whole event stream at once, so the
rate is the client's) and checks the text it put together:

- ``requests``: a :class:`requests.Session` per thread, ``stream=True``, ``iter_lines()``
  and ``json.loads`` of each ``data:`` line (the floor for a Python client);
- ``openai``: the SDK's ``chat.completions.create(stream=True)``, one shared client;
- ``litellm``: ``litellm.completion(stream=True)``;
- ``proxy``: ``open_channel_json({"GenerateCompletion": ...})`` on ONE proxy actor,
  iterating ``Delta`` messages up to the ``Completion``.

Measured, in interleaved blocks: time to first token (from the call to the first text
delta in the caller's hands), the whole stream's time, the process CPU per chunk (every
thread, the proxy's pool included; the provider runs in its own process), and the chunk
throughput of ``concurrent`` streams at once from as many threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench._stats import summarize_runs
from bench._timing import paired_ratio
from bench.clients import KEY, KEY_ENV, PROXY_MANIFEST
from bench.upstream import MODEL, PROMPT, STREAM_CHUNKS, STREAM_TEXT, Upstream

__all__ = ["STREAMERS", "run"]

Streamer = Callable[[], float]
"""Streams the answer once, checks it; returns the time to first token in microseconds."""

_MESSAGES = [{"role": "user", "content": PROMPT}]


def _check(text: str) -> None:
    if text != STREAM_TEXT:
        raise RuntimeError(f"unexpected streamed text {text[:60]!r}...")


def _read(start: int, texts: Iterable[str]) -> tuple[float, str]:
    """Read a stream's text pieces: the time to the first, from ``start`` (ns), in us; the text.

    Every contender reads through here, so each pays the same per-chunk cost for the timing.
    """
    first = 0
    parts: list[str] = []
    for text in texts:
        if not first:
            first = time.perf_counter_ns()
        parts.append(text)
    text = "".join(parts)
    _check(text)
    return (first - start) / 1000, text


def _sdk_texts(chunks: Iterable[Any]) -> Iterator[str]:
    """The text pieces of OpenAI-SDK-shaped chunks (the openai SDK's, LiteLLM's)."""
    for chunk in chunks:
        if chunk.choices and (text := chunk.choices[0].delta.content):
            yield text


def _requests(base_url: str, stack: contextlib.ExitStack) -> Streamer:
    import requests

    url = f"{base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {
        "model": MODEL,
        "messages": _MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    @stack.callback
    def close() -> None:
        for session in sessions:
            session.close()

    def stream() -> float:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            with lock:
                sessions.append(session)
        start = time.perf_counter_ns()
        with session.post(url, json=body, headers=headers, timeout=30, stream=True) as response:
            response.raise_for_status()
            return _read(start, _texts(response.iter_lines()))[0]

    def _texts(lines: Iterable[bytes]) -> Iterator[str]:
        for line in lines:
            if not line.startswith(b"data: "):
                continue
            data = line[6:]
            if data == b"[DONE]":
                return
            chunk = json.loads(data)
            if chunk["choices"] and (text := chunk["choices"][0]["delta"].get("content")):
                yield text

    return stream


def _openai(base_url: str, stack: contextlib.ExitStack) -> Streamer:
    import openai

    client = stack.enter_context(
        openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=30)
    )
    messages: Any = _MESSAGES

    def stream() -> float:
        start = time.perf_counter_ns()
        chunks = client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        with chunks:
            return _read(start, _sdk_texts(chunks))[0]

    return stream


def _litellm(base_url: str, stack: contextlib.ExitStack) -> Streamer:
    # Without this litellm fetches its model price list from the internet at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True

    def stream() -> float:
        start = time.perf_counter_ns()
        chunks: Any = litellm.completion(
            model=f"openai/{MODEL}",
            messages=_MESSAGES,
            api_base=base_url,
            api_key=KEY,
            max_retries=0,
            timeout=30,
            stream=True,
            stream_options={"include_usage": True},
        )
        return _read(start, _sdk_texts(chunks))[0]

    return stream


def _proxy(base_url: str, stack: contextlib.ExitStack) -> Streamer:
    from theater_py import Runtime

    os.environ[KEY_ENV] = KEY
    runtime = Runtime(in_memory=True)
    stack.callback(runtime.shutdown, timeout=10)
    # Enough pool threads and connections for every concurrent stream; no cache.
    config = {
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "max_cache_size": 0,
        "max_concurrent_requests": 128,
    }
    handle = runtime.start_actor(PROXY_MANIFEST, {"config": config}, name="bench-proxy")
    message = {
        "GenerateCompletion": {
            "request": {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
            }
        }
    }

    def stream() -> float:
        start = time.perf_counter_ns()
        last: Any = None

        def deltas(channel: Iterable[Any]) -> Iterator[str]:
            nonlocal last
            for item in channel:
                if "Delta" in item:
                    yield item["Delta"]["text"]
                else:
                    last = item
            if not isinstance(last, dict) or "Completion" not in last:
                raise RuntimeError(f"the proxy ended the stream with {last!r}")

        with handle.open_channel_json(message, timeout=30) as channel:
            first_us, text = _read(start, deltas(channel))
        if last["Completion"]["completion"]["content"][0]["text"] != text:
            raise RuntimeError("the Completion's text is not the deltas'")
        return first_us

    return stream


STREAMERS: dict[str, Callable[[str, contextlib.ExitStack], Streamer]] = {
    "requests": _requests,
    "openai": _openai,
    "litellm": _litellm,
    "proxy": _proxy,
}
"""Every streaming contender, by name."""


def _block(stream: Streamer, count: int) -> tuple[list[float], list[float], float]:
    """``count`` streams in a row: their TTFTs and total times (us), CPU per chunk (us)."""
    firsts, totals = [0.0] * count, [0.0] * count
    cpu_start = time.process_time_ns()
    for index in range(count):
        start = time.perf_counter_ns()
        firsts[index] = stream()
        totals[index] = (time.perf_counter_ns() - start) / 1000
    cpu = (time.process_time_ns() - cpu_start) / 1000 / (count * STREAM_CHUNKS)
    return firsts, totals, cpu


def _burst(stream: Streamer, concurrent: int, pool: ThreadPoolExecutor) -> float:
    """``concurrent`` streams at once, one per thread; returns chunks per second."""
    barrier = threading.Barrier(concurrent + 1)

    def one() -> float:
        barrier.wait(30)
        return stream()

    futures = [pool.submit(one) for _ in range(concurrent)]
    barrier.wait(30)
    start = time.perf_counter()
    for future in futures:
        future.result(timeout=120)
    return concurrent * STREAM_CHUNKS / (time.perf_counter() - start)


def _rotations(names: Sequence[str], repeats: int) -> Iterator[tuple[int, list[str]]]:
    for repeat in range(repeats):
        shift = repeat % len(names)
        yield repeat, [*names[shift:], *names[:shift]]


def _open(
    names: Sequence[str],
    base_url: str,
    stack: contextlib.ExitStack,
    warmup: int,
    progress: Callable[[str], None],
) -> tuple[dict[str, Streamer], dict[str, Any]]:
    """Build and warm up the contenders; those that fail are reported, not measured."""
    ready: dict[str, Streamer] = {}
    missing: dict[str, Any] = {}
    for name in names:
        try:
            streamer = STREAMERS[name](base_url, stack)
            for _ in range(warmup):
                streamer()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            progress(f"stream: {name} unavailable ({reason})")
            missing[name] = {"unavailable": reason}
            continue
        ready[name] = streamer
    return ready, missing


def _sequential(
    ready: dict[str, Streamer], count: int, repeats: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Interleaved blocks of ``count`` streams in a row per contender."""
    blocks: dict[str, list[tuple[list[float], list[float], float]]] = {n: [] for n in ready}
    for repeat, order in _rotations(list(ready), repeats):
        for name in order:
            blocks[name].append(_block(ready[name], count))
        progress(f"stream repeat {repeat + 1}/{repeats}")
    measured: dict[str, Any] = {}
    for name, runs in blocks.items():
        cpu = sorted(run[2] for run in runs)
        ttft = summarize_runs([run[0] for run in runs], "us")
        ttft["block_medians_us"] = [round(statistics.median(run[0]), 3) for run in runs]
        measured[name] = {
            "ttft": ttft,
            "stream": summarize_runs([run[1] for run in runs], "us"),
            "cpu_per_chunk_us": round(statistics.median(cpu), 2),
            "cpu_per_chunk_spread_us": [round(cpu[0], 2), round(cpu[-1], 2)],
        }
    return measured


def _bursts(
    ready: dict[str, Streamer], streams: int, bursts: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Interleaved bursts of ``streams`` streams at once, ``requests`` against ``proxy``."""
    many: list[str] = [name for name in ("requests", "proxy") if name in ready]
    rates: dict[str, list[float]] = {name: [] for name in many}
    with ThreadPoolExecutor(streams) as pool:
        for name in many:  # warm up every thread's connection
            _burst(ready[name], streams, pool)
        for repeat, order in _rotations(many, bursts):
            for name in order:
                rates[name].append(_burst(ready[name], streams, pool))
            progress(f"stream burst {repeat + 1}/{bursts}")
    summary: dict[str, Any] = {"streams": streams, "bursts": bursts, "contenders": {}}
    for name, values in rates.items():
        ordered = sorted(values)
        summary["contenders"][name] = {
            "chunks_per_s": round(statistics.median(values)),
            "spread": [round(ordered[0]), round(ordered[-1])],
            "per_burst": [round(value) for value in values],
        }
    if len(rates) == 2:
        paired = sorted(p / r for p, r in zip(rates["proxy"], rates["requests"], strict=True))
        summary["proxy_vs_requests"] = {
            "ratio_of_medians": round(
                statistics.median(rates["proxy"]) / statistics.median(rates["requests"]), 3
            ),
            "paired_median": round(statistics.median(paired), 3),
            "paired_spread": [round(paired[0], 3), round(paired[-1], 3)],
        }
    return summary


def _ratios(measured: dict[str, Any]) -> dict[str, Any]:
    """TTFT and CPU per chunk against ``requests``, CPU per chunk against the openai SDK."""
    timed = {name: entry for name, entry in measured.items() if "ttft" in entry}
    ratios: dict[str, Any] = {}
    base = timed.get("requests")
    if base is not None:
        ratios["ratios_vs_requests"] = {
            name: {
                "ttft_extra_us": round(entry["ttft"]["median_us"] - base["ttft"]["median_us"], 1),
                "ttft_paired": paired_ratio(entry["ttft"], base["ttft"]),
                "cpu_per_chunk": round(entry["cpu_per_chunk_us"] / base["cpu_per_chunk_us"], 2),
            }
            for name, entry in timed.items()
        }
    sdk = timed.get("openai")
    if sdk is not None:
        ratios["cpu_per_chunk_vs_openai"] = {
            name: round(entry["cpu_per_chunk_us"] / sdk["cpu_per_chunk_us"], 2)
            for name, entry in timed.items()
        }
    return ratios


def _goals(results: dict[str, Any]) -> dict[str, Any]:
    """Issue 12's three streaming goals: measured, and met (``None``: not measured)."""
    versus = results.get("ratios_vs_requests", {}).get("proxy", {})
    extra = versus.get("ttft_extra_us")
    cpu = results.get("cpu_per_chunk_vs_openai", {}).get("proxy")
    burst = results.get("concurrent", {}).get("proxy_vs_requests", {}).get("paired_median")
    return {
        "ttft_within_1ms_of_requests": {
            "measured_extra_us": extra,
            "met": None if extra is None else extra <= 1000,
        },
        "cpu_per_chunk_at_most_half_openai": {
            "measured": cpu,
            "met": None if cpu is None else cpu <= 0.5,
        },
        "concurrent_at_least_90pct_of_requests": {
            "measured": burst,
            "met": None if burst is None else burst >= 0.9,
        },
    }


def run(
    names: Sequence[str],
    *,
    count: int,
    repeats: int,
    concurrent: int,
    bursts: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Measure streaming per contender.

    Args:
        names: the contenders (of :data:`STREAMERS`) to run; unavailable ones are
            reported as ``{"unavailable": reason}``.
        count: streams per block and contender.
        repeats: how many interleaved blocks.
        concurrent: streams at once in a burst (``requests`` and ``proxy`` only).
        bursts: how many interleaved bursts.
        progress: told of each finished repeat.

    Returns:
        ``contenders`` (per name: ``ttft`` and ``stream`` latency summaries,
        ``cpu_per_chunk_us`` and its spread), ``ratios_vs_requests`` (TTFT difference and
        paired ratio, CPU per chunk), ``cpu_per_chunk_vs_openai``, ``concurrent`` (chunks
        per second per burst, and proxy over requests) and ``goals`` (issue 12's, judged).
    """
    results: dict[str, Any] = {
        "upstream": {"kind": "lean", "chunks": STREAM_CHUNKS, "process": "separate"},
    }
    with Upstream(0, "lean") as server, contextlib.ExitStack() as stack:
        ready, missing = _open(names, server.base_url, stack, max(3, count // 2), progress)
        results["contenders"] = {**_sequential(ready, count, repeats, progress), **missing}
        if "requests" in ready and "proxy" in ready:
            results["concurrent"] = _bursts(ready, concurrent, bursts, progress)
    results.update(_ratios(results["contenders"]))
    results["goals"] = _goals(results)
    return results
