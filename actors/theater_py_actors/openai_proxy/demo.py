"""The demo behind ``make run``: the OpenAI proxy under a supervisor, offline, in one minute.

It starts the loopback simulator, starts the shipped ``openai-proxy-system`` (in a clone,
``manifests/system.toml``) with the proxy pointed at it, then asks a question, makes a
tool-calling round trip, lists models, lives through a 429 with ``Retry-After``, crashes
the proxy on purpose while requests are in flight (none is lost), routes through a router
(a fallback, then a budget refusal), and checks the event chains. No API key and no
network are needed.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from theater_py import ActorHandle, Runtime, Supervisor
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

__all__ = ["main"]

SYSTEM = Path(__file__).resolve().parent / "manifests" / "openai-proxy-system.toml"
KEY_VARIABLE = "THEATER_PY_DEMO_KEY"
DEMO_KEY = "demo-key-for-the-loopback-simulator"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
}


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def _generate(proxy: ActorHandle, messages: list[dict[str, Any]], **extra: Any) -> Any:
    request = {"model": "", "messages": messages, "max_tokens": 256, **extra}
    return proxy.request_json({"GenerateCompletion": {"request": request}}, timeout=30)


def _completion(reply: Any) -> dict[str, Any]:
    if "Completion" not in reply:
        raise RuntimeError(f"the proxy answered with an error: {reply}")
    completion: dict[str, Any] = reply["Completion"]["completion"]
    return completion


@contextlib.contextmanager
def _demo_key() -> Iterator[None]:
    previous = os.environ.get(KEY_VARIABLE)
    os.environ[KEY_VARIABLE] = DEMO_KEY
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(KEY_VARIABLE, None)
        else:
            os.environ[KEY_VARIABLE] = previous


Say = Callable[[str], None]


def _ask(proxy: ActorHandle, say: Say) -> None:
    say("> What is an actor system?")
    answer = _completion(
        _generate(proxy, [_user("What is an actor system?")], system="Answer briefly.")
    )
    say(answer["content"][0]["text"])
    usage = answer["usage"]
    say(
        f"(model {answer['model']}, {usage['input_tokens']} tokens in, "
        f"{usage['output_tokens']} out, ${usage.get('cost_usd', 0):.6f})"
    )


def _streamed(proxy: ActorHandle, sim: OpenAISimulator, out: TextIO) -> bool:
    """Stream an answer over a channel: the words print as the simulator sends them."""
    sim.fail_next(fault="token_ms=60")  # slow tokens, to watch them come
    question = "Stream me a few words about channels, please."
    print(f"> {question}", file=out, flush=True)
    request = {"messages": [_user(question)], "max_tokens": 200}
    deltas = 0
    last: Any = None
    with proxy.open_channel_json({"GenerateCompletion": {"request": request}}, 30) as channel:
        for message in channel:
            if "Delta" in message:
                deltas += 1
                print(message["Delta"]["text"], end="", file=out, flush=True)
            else:
                last = message
    print(file=out)
    if not isinstance(last, dict) or "Completion" not in last:
        print(f"the stream ended with {last}", file=out)
        return False
    usage = last["Completion"]["completion"]["usage"]
    print(
        f"({deltas} deltas, then the completion: {usage['output_tokens']} tokens out, "
        f"${usage.get('cost_usd', 0):.6f})",
        file=out,
        flush=True,
    )
    return True


def _tool_round_trip(proxy: ActorHandle, say: Say) -> None:
    question = _user("What is the weather in Paris? Use get_weather.")
    first = _completion(_generate(proxy, [question], tools=[WEATHER_TOOL]))
    call = next(part for part in first["content"] if part["type"] == "tool_use")
    say(f"the model calls {call['name']}({call['input']}) [{first['stop_reason']}]")
    result = {
        "type": "tool_result",
        "tool_use_id": call["id"],
        "content": [{"type": "text", "text": "18 C and sunny"}],
        "is_error": None,
    }
    history = [
        question,
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [result]},
    ]
    final = _completion(_generate(proxy, history, tools=[WEATHER_TOOL]))
    say(f"with the tool's result it answers: {final['content'][0]['text']}")


def _models(proxy: ActorHandle, say: Say) -> None:
    # Live: the simulator is no provider the catalog knows, so only its /models lists any.
    models = proxy.request_json({"ListModels": {"live": True}})["ListModels"]["models"]
    for model in models[:6]:
        pricing = model.get("pricing") or {}
        say(
            f"  {model['id']:<16} {model['max_tokens']:>9,} tokens   "
            f"${pricing.get('input_cost_per_million_tokens', 0):>6.2f} in / "
            f"${pricing.get('output_cost_per_million_tokens', 0):>6.2f} out per 1M"
        )
    say(f"  ... {len(models)} models in all")


def _rate_limit(proxy: ActorHandle, sim: OpenAISimulator, say: Say) -> None:
    sim.fail_next(429, retry_after="1")
    seen = sim.requests_seen
    started = time.monotonic()
    _completion(_generate(proxy, [_user("Are you there?")]))
    say(
        f"the proxy waited as asked and retried: {sim.requests_seen - seen} attempts, "
        f"answered after {time.monotonic() - started:.1f} s"
    )


def _crash(proxy: ActorHandle, supervisor: Supervisor, say: Say) -> bool:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_generate, proxy, [_user(f"request number {i}")]) for i in range(24)]
        proxy.crash("demo: crashed on purpose")
        futures += [
            pool.submit(_generate, proxy, [_user(f"request number {i}")]) for i in range(24, 32)
        ]
        replies = [f.result(60) for f in futures]
    answered = sum("Completion" in r for r in replies)
    row = supervisor.which_children()[0]
    say(
        f"the supervisor restarted {row.name} ({row.restarts} restart, "
        f"last failure: {row.last_failure})"
    )
    say(f"{answered} of {len(replies)} requests answered: none lost")
    return answered == len(replies)


def _router(runtime: Runtime, sim: OpenAISimulator, say: Say) -> bool:
    """A router over two providers (both the simulator here): a fallback, then a refusal."""
    child = {
        "base_url": sim.base_url,
        "api_key_env": KEY_VARIABLE,
        "retry_config": {"max_retries": 1, "initial_delay_ms": 10},
    }
    router = runtime.start_actor(
        "openai-router",
        {
            "config": {
                "providers": {
                    "primary": {"init": {"config": child}},
                    "backup": {"init": {"config": child}},
                },
                "routes": {"smart": ["primary:gpt-4o-mini", "backup:gpt-4o"]},
                "budget": {"usd": 0.01, "per": "run"},
            }
        },
        name="router",
    )
    say("routes: smart = primary:gpt-4o-mini, then backup:gpt-4o; budget $0.01")
    sim.fail_next(500, times=2)  # the primary's attempt and its one retry
    say("> (to smart) Hello through the router   [the primary answers 500, twice]")
    reply = router.request_json(
        {
            "GenerateCompletion": {
                "request": {
                    "model": "smart",
                    "messages": [_user("Hello through the router")],
                    "max_tokens": 200,
                }
            }
        },
        timeout=30,
    )["Completion"]
    tried = "; ".join(
        f"{t['target']} {t['outcome']} {t['kind'] or ''}".rstrip() for t in reply["tried"]
    )
    say(f"served by {reply['served_by']}, after: {tried}")
    seen = sim.requests_seen
    big = {"model": "smart", "messages": [_user("Write a novel")], "max_tokens": 100_000}
    say("> (to smart) Write a novel, max_tokens 100000")
    refused = router.request_json({"GenerateCompletion": {"request": big}}, timeout=30)["Error"]
    say(f"refused, {sim.requests_seen - seen} calls made: {refused['error']}")
    return bool(reply["served_by"] == "backup:gpt-4o" and refused["kind"] == "budget_exceeded")


def _chains(proxy: ActorHandle, supervisor: Supervisor, say: Say) -> bool:
    ok = True
    for name, events, verified in (
        ("openai-proxy", proxy.events(), proxy.verify()),
        (f"supervisor {supervisor.name}", supervisor.chain.events(), supervisor.chain.verify()),
    ):
        counts = collections.Counter(e.event_type for e in events)
        top = ", ".join(f"{kind} {n}" for kind, n in counts.most_common(6))
        say(f"{name}: {len(events)} events ({top}); verifies: {verified.ok}")
        ok = ok and verified.ok
    return ok


def main(out: TextIO = sys.stdout) -> int:
    """Run the demo, printing what happens; return 0 when every step worked."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    with (
        _demo_key(),
        tempfile.TemporaryDirectory(prefix="theater-py-demo-") as home,
        OpenAISimulator(api_key=DEMO_KEY) as sim,
        Runtime(home=home) as runtime,
    ):
        say(f"== Offline OpenAI-compatible simulator at {sim.base_url}")
        overrides = {
            "openai-proxy": {
                "config": {
                    "default_model": "gpt-4o",
                    "base_url": sim.base_url,
                    "api_key_env": KEY_VARIABLE,
                    "retry_config": {"initial_delay_ms": 200, "max_delay_ms": 2000},
                }
            }
        }
        supervisor = runtime.start_system(SYSTEM, overrides)
        proxy = runtime.handle("openai-proxy")
        children = [c.name for c in supervisor.which_children()]
        say(f"started {SYSTEM.name}: supervisor {supervisor.name!r} with {children}")
        steps: list[tuple[str, Callable[[], object]]] = [
            ("A question", lambda: _ask(proxy, say)),
            ("A streamed answer, over a channel", lambda: _streamed(proxy, sim, out)),
            ("A tool-calling round trip", lambda: _tool_round_trip(proxy, say)),
            ("Models", lambda: _models(proxy, say)),
            ("A rate limit: 429 with Retry-After: 1", lambda: _rate_limit(proxy, sim, say)),
            (
                "A crash, on purpose, with requests in flight",
                lambda: _crash(proxy, supervisor, say),
            ),
            (
                "A router over two providers: a fallback, then a budget refusal",
                lambda: _router(runtime, sim, say),
            ),
            ("The event chains", lambda: _chains(proxy, supervisor, say)),
        ]
        ok = True
        for title, run in steps:
            say()
            say(f"== {title}")
            ok = run() is not False and ok
        say()
        say("Demo complete." if ok else "Demo FAILED.")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
