"""What a request will take before it is sent: its input tokens, and its most it can cost.

The estimate is deliberately cheap and errs high: about four characters to a token
(English prose runs nearer 4.5 with OpenAI's tokenizers), plus a few tokens per message
for the chat template. It decides two things before any call: whether a model's context
window can hold the request, and how much of the budget to reserve.
"""

from __future__ import annotations

import json

from theater_py_actors.genai_types import (
    CompletionRequest,
    CompletionResponse,
    ModelPricing,
    Text,
    ToolResult,
    ToolText,
    ToolUse,
)

__all__ = ["DEFAULT_MAX_OUTPUT_TOKENS", "completion_cost", "estimate_tokens", "max_cost"]

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4
_OTHER_BLOCK = 1000  # an image or audio block: the estimate cannot see inside it cheaply
DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""The output a request without ``max_tokens`` is budgeted for."""


def estimate_tokens(request: CompletionRequest) -> int:
    """An upper-leaning estimate of the request's input tokens."""
    chars = len(request.system or "")
    blocks = 0
    for message in request.messages:
        for block in message.content:
            if isinstance(block, Text):
                chars += len(block.text)
            elif isinstance(block, ToolUse):
                chars += len(block.name) + len(json.dumps(block.input))
            elif isinstance(block, ToolResult):
                for part in block.content:
                    if isinstance(part, ToolText):
                        chars += len(part.text)
                    else:
                        blocks += 1
            else:
                blocks += 1
    if request.tools:
        for tool in request.tools:
            chars += len(tool.name) + len(tool.description or "")
            chars += len(json.dumps(tool.input_schema))
    return (
        chars // _CHARS_PER_TOKEN
        + 1
        + _PER_MESSAGE * (len(request.messages) + 1)
        + _OTHER_BLOCK * blocks
    )


def max_cost(input_tokens: int, max_tokens: int | None, pricing: ModelPricing) -> float:
    """The most a request can cost at ``pricing``: its input, and all of its output."""
    output = DEFAULT_MAX_OUTPUT_TOKENS if max_tokens is None else max_tokens
    return (
        input_tokens * pricing.input_cost_per_million_tokens
        + output * pricing.output_cost_per_million_tokens
    ) / 1_000_000


def completion_cost(completion: CompletionResponse, pricing: ModelPricing | None) -> float | None:
    """What a completion cost: the proxy's ``cost_usd`` (cached input at its price), or
    computed from its usage at ``pricing``; ``None`` if neither is known."""
    usage = completion.usage
    if usage.cost_usd is not None:
        return usage.cost_usd
    if pricing is None:
        return None
    cached = usage.cached_input_tokens or 0
    cached_price = pricing.cached_input_cost_per_million_tokens
    if cached_price is None:
        cached_price = pricing.input_cost_per_million_tokens
    return (
        (usage.input_tokens - cached) * pricing.input_cost_per_million_tokens
        + cached * cached_price
        + usage.output_tokens * pricing.output_cost_per_million_tokens
    ) / 1_000_000
