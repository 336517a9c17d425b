"""Use the OpenAI proxy from Python, with typed messages, against a loopback server.

Run it from the repository root:  python docs/examples/openai_proxy_example.py

It starts the offline simulator; point `base_url` at https://api.openai.com/v1 (and set
OPENAI_API_KEY) to talk to OpenAI instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from theater_py import Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    Message,
    Text,
    Tool,
    ToolUse,
)
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "openai-proxy.toml"


def main() -> None:
    with OpenAISimulator(api_key="example-key") as sim, Runtime(in_memory=True) as runtime:
        os.environ["EXAMPLE_API_KEY"] = "example-key"
        proxy = runtime.start_actor(
            MANIFEST,
            {
                "config": {
                    "base_url": sim.base_url,
                    "api_key_env": "EXAMPLE_API_KEY",
                    "default_model": "gpt-4o-mini",
                    # A server the catalog does not know lists the models its config names.
                    "models": [{"id": "gpt-4o-mini", "max_tokens": 128000}],
                }
            },
        )

        models = proxy.request(ListModels())
        print("models:", ", ".join(model.id for model in models.models))

        reply = proxy.request(
            GenerateCompletion(
                CompletionRequest(
                    messages=[Message.user("Say hello to the actor world.")],
                    system="You are terse.",
                    max_tokens=100,
                    temperature=0.2,
                )
            )
        )
        if isinstance(reply, ErrorResponse):
            raise SystemExit(f"error ({reply.kind}): {reply.error}")
        assert isinstance(reply, Completion)
        completion = reply.completion
        text = next(part.text for part in completion.content if isinstance(part, Text))
        print("answer:", text)
        usage = completion.usage
        print(
            f"usage: {usage.input_tokens} in, {usage.output_tokens} out, "
            f"cost ${usage.cost_usd or 0:.6f}"
        )

        weather = Tool(
            name="get_weather",
            description="Current weather in a city",
            input_schema={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
        reply = proxy.request(
            GenerateCompletion(
                CompletionRequest(
                    messages=[Message.user("Weather in Oslo? Use get_weather.")],
                    tools=[weather],
                    max_tokens=100,
                )
            )
        )
        assert isinstance(reply, Completion)
        calls = [part for part in reply.completion.content if isinstance(part, ToolUse)]
        print("tool call:", calls[0].name, calls[0].input)
        print("events recorded:", len(proxy.events()), "chain verifies:", proxy.verify().ok)


if __name__ == "__main__":
    main()
