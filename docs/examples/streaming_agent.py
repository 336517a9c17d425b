"""An agent that streams: text appears as the model writes it, tool calls are run.

Each turn opens a channel on the proxy with the request; the proxy sends ``Delta``s (text,
printed at once), ``ToolUseDelta``s (a tool call being written), then one ``Completion``
(the same as a plain request's) or ``Error``. Tool calls are run from the ``Completion``,
whose tool inputs are already parsed, and answered with their results.

Run it:  python docs/examples/streaming_agent.py
It starts the offline simulator; drop ``base_url`` (and set OPENAI_API_KEY) to ask OpenAI.
"""

from __future__ import annotations

import os
import sys

from theater_py import Runtime
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    CompletionResponse,
    Delta,
    ErrorResponse,
    GenerateCompletion,
    Message,
    Role,
    Tool,
    ToolResult,
    ToolText,
    ToolUse,
    ToolUseDelta,
)
from theater_py_actors.openai_proxy import ProxyHandle
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city",
    input_schema={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def get_weather(arguments: object) -> str:
    city = arguments.get("city") if isinstance(arguments, dict) else None
    return f"18 C and sunny in {city or 'that city'}"


def stream_turn(proxy: ProxyHandle, messages: list[Message]) -> CompletionResponse:
    """One turn, streamed: print the text as it comes; return the final completion."""
    request = CompletionRequest(messages=messages, tools=[WEATHER], max_tokens=200)
    with proxy.open_channel(GenerateCompletion(request), timeout=120) as channel:
        for message in channel:  # ends when the proxy closes the channel
            if isinstance(message, Delta):
                print(message.text, end="", flush=True)
            elif isinstance(message, ToolUseDelta) and message.name:
                print(f"[calling {message.name}...]", flush=True)
            elif isinstance(message, Completion):
                return message.completion
            elif isinstance(message, ErrorResponse):
                raise RuntimeError(f"the stream failed ({message.kind}): {message.error}")
    raise RuntimeError("the stream ended without a completion")


def run_agent(proxy: ProxyHandle, question: str, max_turns: int = 5) -> CompletionResponse:
    messages = [Message.user(question)]
    for _ in range(max_turns):
        completion = stream_turn(proxy, messages)
        calls = [part for part in completion.content if isinstance(part, ToolUse)]
        if not calls:
            print()
            return completion
        messages.append(Message(Role.ASSISTANT, completion.content))
        results = [ToolResult(call.id, [ToolText(get_weather(call.input))]) for call in calls]
        messages.append(Message(Role.USER, results))
    raise RuntimeError(f"no answer after {max_turns} turns")


def main() -> None:
    with OpenAISimulator(api_key="example-key") as sim, Runtime(in_memory=True) as runtime:
        os.environ["EXAMPLE_API_KEY"] = "example-key"
        config = {"base_url": sim.base_url, "api_key_env": "EXAMPLE_API_KEY"}
        proxy: ProxyHandle = runtime.start_actor("openai-proxy", {"config": config})
        final = run_agent(proxy, "What is the weather in Oslo? Use get_weather.")
        usage = final.usage
        print(f"{usage.input_tokens} input + {usage.output_tokens} output tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
