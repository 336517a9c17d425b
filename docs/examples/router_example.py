"""The router in front of two providers: a fallback, then a budget refusal.

Run it from the repository root:  python docs/examples/router_example.py

Two offline simulators stand in for two providers: "primary" (cheap) and "backup"
(dearer). The primary fails with a 500, so the router falls back to the backup and says
so (served_by, tried, and a WARNING line marked PRICED HIGHER). Then a request whose
maximum cost does not fit the rest of the budget is refused without a call.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from theater_py import Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    Message,
)
from theater_py_actors.openai_proxy.simulator import OpenAISimulator


def provider(base_url: str, model: str, input_price: float, output_price: float) -> Any:
    """A provider entry: the child proxy's init, naming its model with a context window
    and prices (a server the catalog does not know has neither)."""
    return {
        "init": {
            "config": {
                "base_url": base_url,
                "api_key_env": "EXAMPLE_API_KEY",
                "retry_config": {"max_retries": 1, "initial_delay_ms": 10},
                "models": [
                    {
                        "id": model,
                        "max_tokens": 128000,
                        "pricing": {
                            "input_cost_per_million_tokens": input_price,
                            "output_cost_per_million_tokens": output_price,
                        },
                    }
                ],
            }
        }
    }


def ask(text: str, max_tokens: int) -> GenerateCompletion:
    return GenerateCompletion(
        CompletionRequest(model="smart", messages=[Message.user(text)], max_tokens=max_tokens)
    )


def main() -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    os.environ["EXAMPLE_API_KEY"] = "example-key"
    with (
        OpenAISimulator(api_key="example-key") as primary,
        OpenAISimulator(api_key="example-key") as backup,
        Runtime(in_memory=True) as runtime,
    ):
        router = runtime.start_actor(
            "openai-router",
            {
                "config": {
                    "providers": {
                        "primary": provider(primary.base_url, "small-1", 0.15, 0.60),
                        "backup": provider(backup.base_url, "large-1", 2.50, 10.00),
                    },
                    "routes": {"smart": ["primary:small-1", "backup:large-1"]},
                    "max_total_timeout_ms": 30000,
                    "budget": {"usd": 0.05, "per": "run"},
                }
            },
        )
        listed = router.request(ListModels())
        print("models:", ", ".join(model.id for model in listed.models))

        primary.fail_next(status=500, times=2)  # the first try and the proxy's one retry
        reply = router.request(ask("Hello through the router", 200))
        assert isinstance(reply, Completion)
        print("answer:", reply.completion.content[0].text)  # type: ignore[union-attr]
        print("served_by:", reply.served_by)
        for tried in reply.tried or []:
            print(f"  tried {tried.target}: {tried.outcome} {tried.kind or ''}".rstrip())

        calls = primary.requests_seen + backup.requests_seen
        refused = router.request(ask("Write me a novel", 100_000))
        assert isinstance(refused, ErrorResponse)
        print("refused:", refused.error)
        print("calls made for it:", primary.requests_seen + backup.requests_seen - calls)


if __name__ == "__main__":
    main()
