"""The router's added latency against a real model server: ``python -m bench.live``.

The same four contenders as :func:`bench.router.overhead` (``proxy``, ``forward``,
``router``, ``router_budget``), interleaved block by block, against the live suite's
server: llama-cpp-python serving SmolLM2-135M-Instruct on loopback
(:mod:`tests.live.server`; ``make test-live`` installs it and caches the model). Each
request asks for ``--max-tokens`` tokens (1 by default: the fastest answer a real model
gives, about 5 ms here with its prompt cached, so the hardest real case for the goal).
Results go to ``bench/results/<date>-router-live.json`` unless ``--output`` says
otherwise. It takes a minute or two.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._machine import describe_machine
from bench.clients import KEY
from bench.report import router_overhead_table
from bench.router import measure_overhead

__all__ = ["main", "overhead_live"]

RESULTS = Path(__file__).resolve().parent / "results"


def overhead_live(*, count: int, repeats: int, max_tokens: int) -> dict[str, Any]:
    """The router's overhead against a llama-cpp-python server it starts and stops.

    Returns:
        What :func:`bench.router.overhead` returns, with ``upstream`` naming the model.

    Raises:
        ImportError: llama-cpp-python is not installed (``make test-live`` installs it).
    """
    import llama_cpp  # noqa: F401 -- fail here, with its name, rather than in the server's log

    from tests.live.server import MODEL_ALIAS, N_CTX, LlamaServer, model_path

    settings = {
        "default_model": MODEL_ALIAS,
        "models": [
            {
                "id": MODEL_ALIAS,
                "max_tokens": N_CTX,
                "provider": "llama-cpp",
                "pricing": {
                    "input_cost_per_million_tokens": 0.1,
                    "output_cost_per_million_tokens": 0.1,
                },
            }
        ],
        "timeout_ms": 60000,
    }
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        server = LlamaServer(model_path(), KEY, Path(folder) / "server.log")
        server.start()
        stack.callback(server.stop)
        return measure_overhead(
            server.base_url,
            upstream={
                "kind": "llama-cpp-python",
                "model": f"SmolLM2-135M-Instruct on llama-cpp-python, max_tokens={max_tokens}",
                "max_tokens": max_tokens,
            },
            count=count,
            repeats=repeats,
            warmup=min(count, 10),
            progress=lambda note: print(f"[bench.live] {note}", file=sys.stderr, flush=True),
            at_once=False,
            model=MODEL_ALIAS,
            settings=settings,
            max_tokens=max_tokens,
            expected=None,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, write the JSON and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    parser.add_argument("--count", type=int, default=20, help="requests per block")
    parser.add_argument("--repeats", type=int, default=15, help="blocks per contender")
    parser.add_argument("--max-tokens", type=int, default=1)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    today = datetime.date.today().isoformat()
    output = args.output or RESULTS / f"{today}-router-live.json"
    results = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(
                ["python", "-m", "bench.live", *(sys.argv[1:] if argv is None else argv)]
            ),
            **describe_machine(),
        },
        "router_live": overhead_live(
            count=args.count, repeats=args.repeats, max_tokens=args.max_tokens
        ),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(router_overhead_table(results["router_live"])))
    print(f"[bench.live] results written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
