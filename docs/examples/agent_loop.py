"""An agent loop with the OpenAI proxy, typed from end to end.

Ask; when the model calls tools, append its turn, run the tools, answer with their
results; repeat until it answers in text. ``mypy --strict`` accepts this file (a test
checks it, and runs it).

Run it:  python docs/examples/agent_loop.py
It starts the offline simulator; drop ``base_url`` (and set OPENAI_API_KEY) to ask OpenAI.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from actors.genai_types import (
    Completion,
    CompletionRequest,
    CompletionResponse,
    GenerateCompletion,
    Message,
    Role,
    Text,
    Tool,
    ToolResult,
    ToolText,
    ToolUse,
)
from actors.openai_proxy import ProxyHandle
from actors.openai_proxy.simulator import OpenAISimulator
from theater_py import Runtime

WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city",
    input_schema={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city name"}},
        "required": ["city"],
    },
)


def get_weather(arguments: object) -> str:
    """The tool itself (a real one would ask a weather service)."""
    city = arguments.get("city") if isinstance(arguments, dict) else None
    return f"18 C and sunny in {city or 'that city'}"


TOOLS: dict[str, Callable[[object], str]] = {"get_weather": get_weather}


def complete(proxy: ProxyHandle, messages: list[Message]) -> CompletionResponse:
    """One turn of the model; an error reply becomes an exception that says why."""
    request = CompletionRequest(messages=messages, tools=[WEATHER], max_tokens=200)
    reply = proxy.request(GenerateCompletion(request), timeout=120)
    if not isinstance(reply, Completion):  # an ErrorResponse ({"Error": ...})
        raise RuntimeError(f"the proxy answered {reply}")
    return reply.completion


def run_tool(call: ToolUse) -> ToolResult:
    tool = TOOLS.get(call.name)
    if tool is None:
        return ToolResult(call.id, [ToolText(f"no tool named {call.name}")], is_error=True)
    return ToolResult(call.id, [ToolText(tool(call.input))])


def run_agent(proxy: ProxyHandle, question: str, max_turns: int = 5) -> str:
    """Ask, run the tools the model calls, and return its answer in text."""
    messages = [Message.user(question)]
    for _ in range(max_turns):
        completion = complete(proxy, messages)
        calls = [part for part in completion.content if isinstance(part, ToolUse)]
        if not calls:
            return "".join(part.text for part in completion.content if isinstance(part, Text))
        for call in calls:
            print(f"tool call: {call.name} {call.input}")
        messages.append(Message(Role.ASSISTANT, completion.content))  # the model's turn
        results = [run_tool(call) for call in calls]
        messages.append(Message(Role.USER, results))  # a list[ToolResult] is content too
    raise RuntimeError(f"no answer after {max_turns} turns")


def main() -> None:
    with OpenAISimulator(api_key="example-key") as sim, Runtime(in_memory=True) as runtime:
        os.environ["EXAMPLE_API_KEY"] = "example-key"
        config = {"base_url": sim.base_url, "api_key_env": "EXAMPLE_API_KEY"}
        proxy: ProxyHandle = runtime.start_actor("openai-proxy", {"config": config})
        print("answer:", run_agent(proxy, "What is the weather in Oslo? Use get_weather."))


if __name__ == "__main__":
    main()
