"""Where the proxy actor's overhead over raw requests goes, one layer at a time.

Each rung adds one layer of what a ``GenerateCompletion`` through the proxy actor does, on
top of the rung before, all against the same fake provider and interleaved:

1. ``requests``: a raw ``Session.post`` and ``.json()``;
2. ``chat_client``: the proxy's
   :class:`~theater_py_actors.openai_proxy.client.ChatClient` over a plain session (its
   retry loop, pre-encoded body, auth object, JSON parse);
3. ``chat_client_recording``: the same over the ``http-client`` capability's
   :class:`~theater_py._http.RecordingSession` (two chain events per request);
4. ``pipeline_inline``: the actor's whole per-request work on the caller's thread: the
   request's ``request`` event, the conversion to and from Chat Completions, pricing, and
   the reply's ``response`` event;
5. ``pipeline_one_hop``: the same, run on a pool thread while the caller waits (one thread
   hop there and back);
6. ``proxy_typed``: the proxy actor itself (caller to actor, actor to pool, pool to caller).

The difference between neighbouring rungs is that layer's cost. A last entry,
``prototype_caller_side``, is not a rung but a sketch of a cheaper design: a bare Pykka
actor records and converts the request, and the caller's own thread (blocked in the
request anyway) makes the HTTP call and converts the reply, so there is no pool hop.

It reaches into the proxy's internals, so it is a diagnostic (``python -m bench.ladder``),
not part of ``python -m bench``: an internal change may need it updated.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pykka

from bench._timing import compare
from bench.clients import KEY, make_contender
from bench.upstream import MODEL, PROMPT, Upstream

__all__ = ["main", "run"]


def _rungs(base_url: str, stack: contextlib.ExitStack) -> dict[str, Callable[[], object]]:
    import requests

    from theater_py import serde
    from theater_py._http import RecordingSession
    from theater_py.chain import EventDatabase
    from theater_py_actors.genai_types import (
        Completion,
        CompletionRequest,
        GenerateCompletion,
        Message,
        ProxyResponse,
        Role,
        Text,
    )
    from theater_py_actors.openai_proxy.catalog import load_catalog
    from theater_py_actors.openai_proxy.client import ChatClient
    from theater_py_actors.openai_proxy.config import RetryConfig
    from theater_py_actors.openai_proxy.convert import from_chat_response, to_chat_request

    database = EventDatabase.in_memory()
    stack.callback(database.close)
    chain = database.chain("ladder", persist=False)
    request = GenerateCompletion(
        CompletionRequest(
            model=MODEL,
            messages=[Message(role=Role.USER, content=[Text(PROMPT)])],
            max_tokens=64,
            temperature=0.7,
        )
    )

    def client(session: requests.Session) -> ChatClient:
        made = ChatClient(
            session,
            base_url=base_url,
            api_key=KEY,
            timeout_ms=30000,
            retry=RetryConfig(),
            max_connections=64,
        )
        stack.callback(made.close)
        stack.callback(session.close)
        return made

    plain = client(requests.Session())
    recording = client(RecordingSession(chain))
    catalog = load_catalog()
    body = to_chat_request(
        request.request,
        default_model=MODEL,
        content_format="Array",
    ).body

    def pipeline() -> object:
        chain.record("request", serde.unstructure(request), "request")
        chat = to_chat_request(
            request.request,
            default_model=MODEL,
            content_format="Array",
        )
        result = recording.complete(chat.body)
        pricing = catalog.pricing_for(result.body.get("model") or MODEL)
        reply = Completion(completion=from_chat_response(result.body, pricing=pricing))
        chain.record("response", serde.unstructure(reply, ProxyResponse), "response")
        return reply

    class Preparer(pykka.ThreadingActor):
        # The actor's half of the caller-side design: record and convert, no I/O.
        def on_receive(self, message: Any) -> Any:
            chain.record("request", serde.unstructure(message), "request")
            return to_chat_request(
                message.request,
                default_model=MODEL,
                content_format="Array",
            ).body

    preparer = Preparer.start()
    stack.callback(preparer.stop)

    def caller_side() -> object:
        body = preparer.ask(request)
        assert isinstance(body, dict)
        result = recording.complete(body)
        pricing = catalog.pricing_for(result.body.get("model") or MODEL)
        reply = Completion(completion=from_chat_response(result.body, pricing=pricing))
        chain.record("response", serde.unstructure(reply, ProxyResponse), "response")
        return reply

    pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(4))
    raw = stack.enter_context(make_contender("requests", base_url))
    proxy = stack.enter_context(make_contender("proxy_typed", base_url))
    return {
        "requests": raw.call,
        "chat_client": lambda: plain.complete(body),
        "chat_client_recording": lambda: recording.complete(body),
        "pipeline_inline": pipeline,
        "pipeline_one_hop": lambda: pool.submit(pipeline).result(),
        "proxy_typed": proxy.call,
        "prototype_caller_side": caller_side,
    }


def run(*, count: int, repeats: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Measure every rung; return each rung's summary and its cost over the rung before."""
    with Upstream() as server, contextlib.ExitStack() as stack:
        rungs = _rungs(server.base_url, stack)
        measured = compare(
            rungs,
            count=count,
            repeats=repeats,
            warmup=min(count, 100),
            progress=lambda note: progress(f"ladder {note}"),
        )
    names = list(measured)
    steps = {
        name: {
            "latency_us": round(measured[name]["median_us"] - measured[before]["median_us"], 1),
            "cpu_us": round(measured[name]["cpu_us"] - measured[before]["cpu_us"], 1),
        }
        for before, name in itertools.pairwise(names[:-1])
    }
    return {"rungs": measured, "added_by_each_rung": steps}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ladder, print it, and write it as JSON if asked."""
    parser = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    results = run(count=args.count, repeats=args.repeats, progress=print)
    base = results["rungs"]["requests"]
    print(
        f"{'rung':<24}{'median us':>10}{'CPU us':>9}{'vs requests':>12}{'+lat us':>9}{'+CPU us':>9}"
    )
    for name, summary in results["rungs"].items():
        step = results["added_by_each_rung"].get(name, {"latency_us": 0.0, "cpu_us": 0.0})
        print(
            f"{name:<24}{summary['median_us']:>10.0f}{summary['cpu_us']:>9.0f}"
            f"{summary['median_us'] / base['median_us']:>11.2f}x"
            f"{step['latency_us']:>9.0f}{step['cpu_us']:>9.0f}"
        )
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
