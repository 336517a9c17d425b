"""What a request will take before it is sent: its input tokens, and its most it can cost.

The estimate is deliberately cheap and errs high: about four ASCII letters or spaces to a
token (English prose runs nearer 4.5 with OpenAI's tokenizers), a token for every digit and
ASCII symbol (tokenizers split numbers, some digit by digit, and most punctuation), a token
for every other character (CJK text runs near one a character; Cyrillic and Greek fewer),
plus a few tokens per message for the chat template. It decides two things before any
call: whether a model's context window can hold the request, and how much of the budget to
reserve. What a model's chat template adds beyond that (a default system prompt, as local
servers' templates often inject) is learned from the provider's own count of the input
(``Provider.observe_input``).
"""

from __future__ import annotations

import json
import string

from theater_py_actors.genai_types import (
    CompletionRequest,
    CompletionResponse,
    ModelPricing,
    Text,
    ToolResult,
    ToolText,
    ToolUse,
)

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "UNLEARNED_INPUT_OVERHEAD",
    "completion_cost",
    "estimate_input",
    "estimate_tokens",
    "max_cost",
    "text_tokens",
]

_CHARS_PER_TOKEN = 4
_SPARSE = (string.ascii_letters + string.whitespace).encode()
"""The ASCII characters that run about four to a token; every other one counts as one."""
_PER_MESSAGE = 4
_OTHER_BLOCK = 1000  # an image or audio block: the estimate cannot see inside it cheaply
DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""The output a request without ``max_tokens`` is budgeted for."""
UNLEARNED_INPUT_OVERHEAD = 256
"""The fewest input tokens a budget reserves beyond the estimate, for a chat template's
overhead not learned yet, or learned short (``Provider.input_overhead`` is what the
provider counted beyond estimates that err high, so it can understate the template): ten
times what SmolLM2's default system prompt added to a short prompt's estimate (21), so
that the first concurrent calls to a model do not together pass the budget either."""


def estimate_tokens(request: CompletionRequest) -> int:
    """An upper-leaning estimate of the request's input tokens."""
    return estimate_input(request)[0]


def estimate_input(request: CompletionRequest) -> tuple[int, bool]:
    """:func:`estimate_tokens`, and whether the request is all text (no image, audio or
    other block the estimate can only guess at): only then does the provider's count of
    its input tell what the chat template adds (see ``Provider.observe_input``)."""
    texts = [request.system or ""]
    blocks = 0
    for message in request.messages:
        for block in message.content:
            if isinstance(block, Text):
                texts.append(block.text)
            elif isinstance(block, ToolUse):
                texts += (block.name, json.dumps(block.input))
            elif isinstance(block, ToolResult):
                for part in block.content:
                    if isinstance(part, ToolText):
                        texts.append(part.text)
                    else:
                        blocks += 1
            else:
                blocks += 1
    if request.tools:
        for tool in request.tools:
            texts += (tool.name, tool.description or "", json.dumps(tool.input_schema))
    tokens = (
        text_tokens("".join(texts))
        + 1
        + _PER_MESSAGE * (len(request.messages) + 1)
        + _OTHER_BLOCK * blocks
    )
    return tokens, blocks == 0


def text_tokens(text: str) -> int:
    """Tokens in ``text``, erring high: four ASCII letters or spaces to a token, and a
    token for every digit, punctuation mark or other ASCII symbol, and for every other
    character. Tokenizers split digits (some one a token: Llama's, SmolLM2's) and most
    symbols, and run CJK, Cyrillic and emoji near one a character or more: four
    characters a token would err 4x low on them, on numbers, and on code."""
    ascii_text = text.encode("ascii", "ignore")
    dense = len(ascii_text.translate(None, _SPARSE))
    return (len(ascii_text) - dense) // _CHARS_PER_TOKEN + dense + (len(text) - len(ascii_text))


def max_cost(input_tokens: int, max_tokens: int | None, pricing: ModelPricing) -> float:
    """The most a request can cost at ``pricing``: its input, and all of its output."""
    output = DEFAULT_MAX_OUTPUT_TOKENS if max_tokens is None else max_tokens
    return pricing.cost_usd(input_tokens, output)


def completion_cost(completion: CompletionResponse, pricing: ModelPricing | None) -> float | None:
    """What a completion cost: the proxy's ``cost_usd`` (cached input at its price), or
    computed from its usage at ``pricing``; ``None`` if neither is known.

    A usage of 0 tokens in and out is no usage: the provider did not report it (a stream
    without ``include_usage``, a local server), though it generated and may bill the
    answer. Its cost is unknown (``None``), not 0.
    """
    usage = completion.usage
    if usage.cost_usd is not None:
        return usage.cost_usd
    if pricing is None or (usage.input_tokens == 0 and usage.output_tokens == 0):
        return None
    return pricing.cost_usd(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens or 0)
