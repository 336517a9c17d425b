"""A completion: the request for one, the response, and why generation stopped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs

from theater_py import serde
from theater_py._suggest import expected_keys
from theater_py_actors.genai_types._messages import Message, MessageContent, Role
from theater_py_actors.genai_types._tools import Tool, ToolChoice

__all__ = [
    "CompletionRequest",
    "CompletionResponse",
    "EndTurn",
    "MaxTokens",
    "OtherStop",
    "RefusalStop",
    "StopReason",
    "StopSequence",
    "ToolUseStop",
    "Usage",
]


@attrs.frozen(kw_only=True)
class CompletionRequest:
    """A request for the model's next turn.

    Attributes:
        model: the model's id; ``""`` means the proxy's configured default model.
        messages: the conversation so far.
        max_tokens: the upper bound on generated tokens; ``None`` leaves it to the
            proxy. genai-types requires it, so it is only written when set.
        temperature: the sampling temperature.
        system: the system prompt.
        tools: the tools the model may call.
        tool_choice: how the model must choose among ``tools``.
        disable_parallel_tool_use: forbid more than one tool call per turn.
        response_format: the shape of the answer, passed to the provider as given:
            ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema":
            {...}}`` (an extension).
        reasoning_effort: how hard a reasoning model thinks: ``"low"``, ``"medium"``,
            ``"high"`` (an extension).
        stop_sequences: strings that end generation (an extension).
        top_p: nucleus sampling's probability mass (an extension).
        seed: ask for deterministic sampling, where the provider supports it.
        user: a stable id of the end user, for the provider's abuse monitoring.
        metadata: string tags stored with the completion (with ``store``).
        store: let the provider store the completion (OpenAI's evals and distillation).
        logprobs: return the log probabilities of the output tokens.
        top_logprobs: how many most likely tokens to return at each position (0-20).
        presence_penalty: -2..2; positive values favour new topics.
        frequency_penalty: -2..2; positive values discourage repetition.
        logit_bias: token id (as a string) to a bias from -100 to 100.
        service_tier: the provider's processing tier (``"auto"``, ``"default"``,
            ``"flex"``, ``"priority"``).
        verbosity: how long a gpt-5 answer is: ``"low"``, ``"medium"``, ``"high"``.
        prompt_cache_key: groups requests that share a long prefix, for the provider's
            prompt cache.
        allow_unknown: accept (and ignore) keys this reader does not know, instead of
            refusing the request naming them.

    Every attribute from ``seed`` on is an extension, as in the official OpenAI SDK.
    """

    model: str = ""
    messages: list[Message]
    max_tokens: int | None = attrs.field(default=None, metadata=serde.extension())
    temperature: float | None = None
    system: str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    disable_parallel_tool_use: bool | None = None
    response_format: serde.JsonObject | None = attrs.field(default=None, metadata=serde.extension())
    reasoning_effort: str | None = attrs.field(default=None, metadata=serde.extension())
    stop_sequences: list[str] | None = attrs.field(default=None, metadata=serde.extension())
    top_p: float | None = attrs.field(default=None, metadata=serde.extension())
    seed: int | None = attrs.field(default=None, metadata=serde.extension())
    user: str | None = attrs.field(default=None, metadata=serde.extension())
    metadata: dict[str, str] | None = attrs.field(default=None, metadata=serde.extension())
    store: bool | None = attrs.field(default=None, metadata=serde.extension())
    logprobs: bool | None = attrs.field(default=None, metadata=serde.extension())
    top_logprobs: int | None = attrs.field(default=None, metadata=serde.extension())
    presence_penalty: float | None = attrs.field(default=None, metadata=serde.extension())
    frequency_penalty: float | None = attrs.field(default=None, metadata=serde.extension())
    logit_bias: dict[str, int] | None = attrs.field(default=None, metadata=serde.extension())
    service_tier: str | None = attrs.field(default=None, metadata=serde.extension())
    verbosity: str | None = attrs.field(default=None, metadata=serde.extension())
    prompt_cache_key: str | None = attrs.field(default=None, metadata=serde.extension())
    allow_unknown: bool | None = attrs.field(default=None, metadata=serde.extension())


@attrs.frozen
class EndTurn:
    """The model finished its turn (``"end_turn"``)."""


@attrs.frozen
class MaxTokens:
    """Generation hit the token limit (``"max_tokens"``)."""


@attrs.frozen
class StopSequence:
    """Generation hit one of the stop sequences (``"stop_sequence"``)."""


@attrs.frozen
class ToolUseStop:
    """The model stopped to call tools (``"tool_use"``)."""


@attrs.frozen
class RefusalStop:
    """The model refused to answer; its refusal is the text (``"refusal"``; an extension)."""


@attrs.frozen
class OtherStop:
    """Any other reason, as the provider gave it (``{"other": "content_filter"}``)."""

    reason: str


StopReason: TypeAlias = EndTurn | MaxTokens | StopSequence | ToolUseStop | RefusalStop | OtherStop
"""Why generation stopped: a snake_case name, or ``{"other": <provider's reason>}``."""


@attrs.frozen
class Usage:
    """The tokens a completion used.

    Attributes:
        input_tokens: prompt tokens, cached ones included.
        output_tokens: generated tokens, reasoning tokens included.
        cached_input_tokens: the prompt tokens served from the provider's cache (an
            extension).
        reasoning_tokens: the generated tokens spent on hidden reasoning (an extension).
        cost_usd: the price of the call at list prices, where known (an extension); 0 for
            an answer served from the proxy's cache.
        cached: ``True`` when the proxy answered from its own cache without calling the
            provider (an extension; the token counts are the first call's).
    """

    input_tokens: int
    output_tokens: int
    cached_input_tokens: int | None = attrs.field(default=None, metadata=serde.extension())
    reasoning_tokens: int | None = attrs.field(default=None, metadata=serde.extension())
    cost_usd: float | None = attrs.field(default=None, metadata=serde.extension())
    cached: bool | None = attrs.field(default=None, metadata=serde.extension())


@attrs.frozen(kw_only=True)
class CompletionResponse:
    """The model's turn.

    Attributes:
        content: the parts of the answer: text first, then tool calls.
        id: the provider's id of the completion.
        model: the model that answered, as the provider names it (often dated).
        role: always the assistant.
        stop_reason: why generation stopped.
        stop_sequence: the stop sequence that ended it, if the provider says.
        message_type: always ``"message"``; written as ``type``.
        usage: the tokens used.
        system_fingerprint: the provider's backend configuration that answered, for
            reproducibility with ``seed`` (an extension).
        request_id: the provider's ``x-request-id`` of the call, to quote to its support
            (an extension).
    """

    content: list[MessageContent]
    id: str
    model: str
    role: Role = Role.ASSISTANT
    stop_reason: StopReason
    stop_sequence: str | None = None
    message_type: str = attrs.field(default="message", metadata=serde.key("type"))
    usage: Usage
    system_fingerprint: str | None = attrs.field(default=None, metadata=serde.extension())
    request_id: str | None = attrs.field(default=None, metadata=serde.extension())


serde.register_externally_tagged(
    StopReason,
    {
        EndTurn: "end_turn",
        MaxTokens: "max_tokens",
        StopSequence: "stop_sequence",
        ToolUseStop: "tool_use",
        RefusalStop: "refusal",
        OtherStop: "other",
    },
    newtypes=(OtherStop,),
)


class UnknownFieldError(ValueError):
    """A request carries a key no field reads (and does not say ``allow_unknown``)."""


# OpenAI's names for fields genai-types names otherwise, for callers used to the SDK.
_OPENAI_NAMES = {
    "stop": "stop_sequences",
    "max_completion_tokens": "max_tokens",
    "parallel_tool_calls": "disable_parallel_tool_use",
}


def _request_hook() -> Any:
    """Wrap the request's hook: serde ignores unknown keys, a request names them instead.

    A misspelt optional field (``max_token``) would otherwise be dropped without a word.
    """
    structure = serde.converter.get_structure_hook(CompletionRequest)
    known = [field.name for field in attrs.fields(CompletionRequest)]  # none is renamed

    def structure_request(value: Any, cls: Any) -> CompletionRequest:
        if isinstance(value, Mapping) and value.get("allow_unknown") is not True:
            unknown = [str(name) for name in value if name not in known]
            if unknown:
                # An OpenAI name is matched through its genai name: "stop" is no typo.
                suggestion = expected_keys(_OPENAI_NAMES.get(unknown[0], unknown[0]), known)
                raise UnknownFieldError(
                    f"unknown field {unknown[0]!r} ({suggestion}; "
                    'or send "allow_unknown": true to ignore unknown fields)'
                )
        request: CompletionRequest = structure(value, cls)
        return request

    return structure_request


serde.converter.register_structure_hook(CompletionRequest, _request_hook())
