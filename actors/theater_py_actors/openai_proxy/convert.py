"""Conversion between genai-types and OpenAI Chat Completions JSON: pure functions, no I/O.

Requests (:func:`to_chat_request`):

- the system prompt becomes the first message, ``{"role": "system"}``;
- an assistant's ``tool_use`` parts become its ``tool_calls`` (``arguments`` is the compact
  JSON text of ``input``; an ``input`` that is already a string goes out as it is);
- every ``tool_result`` becomes its own ``{"role": "tool"}`` message, before the rest of
  its message, since OpenAI wants tool messages right after the assistant's tool calls.
  Its content is text: text parts joined by newlines, a resource as its JSON text, an
  image or audio as a placeholder such as ``[image/png image]`` (a tool message cannot
  carry media); a failed call's text starts with ``Error: ``;
- text, image and audio parts become ``text``, ``image_url`` and ``input_audio`` parts;
  with ``content_format="String"`` a message of text parts only becomes one string;
- an assistant's ``thinking`` parts go out as its ``reasoning_content`` (Moonshot wants it
  back on turns with tool calls; the rules drop it everywhere else);
- ``tool_choice`` and ``parallel_tool_calls`` go out only with tools, which OpenAI requires;
- ``max_tokens`` goes out when the request sets it; ``seed``, ``user``, ``metadata``,
  ``store``, ``logprobs``, ``top_logprobs``, the penalties, ``logit_bias``,
  ``service_tier``, ``verbosity`` and ``prompt_cache_key`` under their own names, and a
  tool's ``strict`` in its function;
- then the body is adapted to the model's rules (:func:`.rules.adapt`): the token limit
  key, dropped and clamped parameters, the system role, content shape.

Responses (:func:`from_chat_response`): the first choice's ``reasoning_content`` (as a
``thinking`` part), its text, then its refusal (as text), then its tool calls (the legacy
``function_call`` only when ``tool_calls`` is missing or empty; a call without an id gets a
generated one); ``finish_reason`` ``stop`` reads as ``end_turn``, ``length`` as
``max_tokens``, ``tool_calls`` and ``function_call`` as ``tool_use``, a missing or null
one as ``end_turn`` (the message is complete: providers that omit it do so on normal
ends), and anything else as ``{"other": reason}``. Missing usage counts read as 0.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from theater_py.errors import TheaterError
from theater_py_actors.genai_types import (
    Audio,
    Base64Source,
    CompletionRequest,
    CompletionResponse,
    EndTurn,
    Image,
    MaxTokens,
    Message,
    MessageContent,
    ModelPricing,
    OtherStop,
    RefusalStop,
    Role,
    StopReason,
    Text,
    Thinking,
    Tool,
    ToolAudio,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolContent,
    ToolImage,
    ToolResource,
    ToolResult,
    ToolText,
    ToolUse,
    ToolUseStop,
    Usage,
)
from theater_py_actors.openai_proxy.rules import Adaptation, ModelRules, adapt

__all__ = [
    "ChatRequest",
    "ContentFormat",
    "ResponseFormatError",
    "from_chat_response",
    "to_chat_request",
]

ContentFormat = Literal["Array", "String"]
"""How message content goes out: a list of parts, or one string where it is only text."""

_JSON_SEPARATORS: Final = (",", ":")
# Request fields sent under their own name when set, as the official SDK sends them.
_PASSED_THROUGH: Final = (
    "seed",
    "user",
    "metadata",
    "store",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "service_tier",
    "verbosity",
    "prompt_cache_key",
)
_NO_RULES: Final = ModelRules()


class ResponseFormatError(TheaterError, ValueError):
    """The provider's body is not a chat completion; report it as ``invalid_response``."""


@attrs.frozen
class ChatRequest:
    """An OpenAI Chat Completions request body, and how it was adapted to the model.

    Attributes:
        body: the JSON body to POST to ``/chat/completions``.
        adaptations: what the model's rules changed, in order; log them once per model.
    """

    body: dict[str, Any]
    adaptations: tuple[Adaptation, ...] = ()

    @property
    def lossy(self) -> tuple[Adaptation, ...]:
        """The adaptations that drop or change what the request asked for."""
        return tuple(change for change in self.adaptations if change.lossy)


# -- requests --------------------------------------------------------------------------


def to_chat_request(
    request: CompletionRequest,
    *,
    default_model: str,
    content_format: ContentFormat,
    rules: ModelRules = _NO_RULES,
) -> ChatRequest:
    """Turn a genai completion request into an OpenAI Chat Completions request body.

    Args:
        request: the request.
        default_model: the model used when ``request.model`` is ``""``.
        content_format: ``"Array"`` sends content parts; ``"String"`` sends a message of
            text parts only as one string (older Moonshot models want that).
        rules: what the model accepts at its provider (from the catalog); the default
            changes nothing and sends the token limit as ``max_tokens``.

    Returns:
        The body, adapted to ``rules``, and the adaptations made.
    """
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        _append_message(messages, message, content_format)
    body: dict[str, Any] = {"model": request.model or default_model, "messages": messages}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.tools:
        _add_tools(body, request.tools, request)
    if request.response_format is not None:
        body["response_format"] = request.response_format
    if request.reasoning_effort is not None:
        body["reasoning_effort"] = request.reasoning_effort
    if request.stop_sequences:
        body["stop"] = list(request.stop_sequences)
    for name in _PASSED_THROUGH:
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    return ChatRequest(body, adapt(body, rules))


def _add_tools(body: dict[str, Any], tools: list[Tool], request: CompletionRequest) -> None:
    body["tools"] = [_tool(tool) for tool in tools]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.disable_parallel_tool_use is not None:
        body["parallel_tool_calls"] = not request.disable_parallel_tool_use


def _tool(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.input_schema
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: ToolChoice) -> Any:
    if isinstance(choice, ToolChoiceTool):
        return {"type": "function", "function": {"name": choice.name}}
    if isinstance(choice, ToolChoiceAny):
        return "required"
    if isinstance(choice, ToolChoiceNone):
        return "none"
    assert isinstance(choice, ToolChoiceAuto)
    return "auto"


def _append_message(
    messages: list[dict[str, Any]], message: Message, content_format: ContentFormat
) -> None:
    parts: list[MessageContent] = []
    calls: list[dict[str, Any]] = []
    thinking: list[str] = []
    for part in message.content:
        if isinstance(part, ToolResult):
            text = _tool_result_text(part)
            messages.append({"role": "tool", "tool_call_id": part.tool_use_id, "content": text})
        elif isinstance(part, ToolUse):
            calls.append(_tool_call(part))
        elif isinstance(part, Thinking):
            thinking.append(part.thinking)
        else:
            parts.append(part)
    if calls:
        content = _content(parts, content_format) if parts else None
        turn = {"role": message.role.value, "content": content, "tool_calls": calls}
        if thinking:
            turn["reasoning_content"] = "\n".join(thinking)
        messages.append(turn)
    elif parts or not message.content:
        messages.append({"role": message.role.value, "content": _content(parts, content_format)})


def _content(parts: Sequence[MessageContent], content_format: ContentFormat) -> Any:
    if not parts:
        return ""  # OpenAI refuses an empty list of parts
    if content_format == "String" and all(isinstance(part, Text) for part in parts):
        return "\n".join(part.text for part in parts if isinstance(part, Text))
    return [_part(part) for part in parts]


def _part(part: MessageContent) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        source = part.source
        if isinstance(source, Base64Source):
            url = f"data:{source.media_type};base64,{source.data}"
        else:
            url = source.url
        image_url: dict[str, Any] = {"url": url}
        if part.detail is not None:
            image_url["detail"] = part.detail
        return {"type": "image_url", "image_url": image_url}
    if isinstance(part, Audio):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    raise AssertionError(f"unexpected content part {part!r}")  # tool parts never get here


def _tool_call(part: ToolUse) -> dict[str, Any]:
    arguments = part.input if isinstance(part.input, str) else _compact_json(part.input)
    return {
        "id": part.id,
        "type": "function",
        "function": {"name": part.name, "arguments": arguments},
    }


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=_JSON_SEPARATORS)


def _tool_result_text(result: ToolResult) -> str:
    text = "\n".join(_tool_content_text(part) for part in result.content)
    return f"Error: {text}" if result.is_error else text


def _tool_content_text(part: ToolContent) -> str:
    if isinstance(part, ToolText):
        return part.text
    if isinstance(part, ToolResource):
        return _compact_json(part.resource)
    assert isinstance(part, ToolImage | ToolAudio)
    kind = "image" if isinstance(part, ToolImage) else "audio"
    return f"[{part.mime_type} {kind}]"


# -- responses -------------------------------------------------------------------------

_STOP_REASONS: Final[Mapping[str, StopReason]] = {
    "stop": EndTurn(),
    "length": MaxTokens(),
    "tool_calls": ToolUseStop(),
    "function_call": ToolUseStop(),
}


def from_chat_response(
    body: Any, *, pricing: ModelPricing | None, request_id: str | None = None
) -> CompletionResponse:
    """Turn an OpenAI Chat Completions response body into a genai completion response.

    Args:
        body: the parsed JSON body.
        pricing: the model's prices, to fill in ``usage.cost_usd``; ``None`` leaves it
            out, and so does a response without ``usage`` (its cost is unknown, not 0).
        request_id: the response's ``x-request-id``, kept on the completion.

    Returns:
        The first choice as a completion. Tool-call arguments that are not valid JSON
        stay the raw string in ``input``; empty arguments read as ``{}``. A refusal
        stops with ``refusal`` (its text is the content); ``system_fingerprint`` is
        kept.

    Raises:
        ResponseFormatError: ``body`` is not a chat completion (not an object, no
            choices, a choice without a message).
    """
    if not isinstance(body, dict):
        raise ResponseFormatError(f"expected a JSON object, got {type(body).__name__}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ResponseFormatError("the response has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ResponseFormatError("the response's first choice has no message object")
    reason = choice.get("finish_reason")
    stop_reason: StopReason
    if reason is None:
        stop_reason = EndTurn()
    elif isinstance(reason, str):
        stop_reason = _STOP_REASONS.get(reason) or OtherStop(reason)
    else:
        stop_reason = OtherStop(_compact_json(reason))
    content = _response_content(message)
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not isinstance(stop_reason, ToolUseStop):
        stop_reason = RefusalStop()
    fingerprint = body.get("system_fingerprint")
    return CompletionResponse(
        content=content,
        id=_text(body.get("id")),
        model=_text(body.get("model")),
        role=Role.ASSISTANT,
        stop_reason=stop_reason,
        usage=_usage(body.get("usage"), pricing),
        system_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        request_id=request_id,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _response_content(message: dict[str, Any]) -> list[MessageContent]:
    content: list[MessageContent] = []
    reasoning = message.get("reasoning_content")  # Moonshot's, DeepSeek's reasoners
    if isinstance(reasoning, str) and reasoning:
        content.append(Thinking(reasoning))
    text = message.get("content")
    if isinstance(text, list):  # some providers answer with content parts
        text = "".join(
            part["text"]
            for part in text
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    if isinstance(text, str) and text:
        content.append(Text(text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append(Text(refusal))
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        for call in calls:
            if isinstance(call, dict):
                content.append(_tool_use(_text(call.get("id")), call.get("function")))
    else:
        # The legacy form, which some servers send beside (a copy of) tool_calls.
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            content.append(_tool_use("", legacy))
    return content


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex}"


def _tool_use(call_id: str, function: Any) -> ToolUse:
    # A call needs an id for its result to quote; some servers (Ollama, llama.cpp) omit it.
    call_id = call_id or _new_call_id()
    if not isinstance(function, dict):
        function = {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        arguments = _parse_arguments(arguments)
    elif arguments is None:
        arguments = {}
    return ToolUse(call_id, _text(function.get("name")), arguments)


def _parse_arguments(text: str) -> Any:
    if not text.strip():
        return {}  # a call without arguments, as some providers write it
    try:
        return json.loads(text)
    except ValueError:
        return text  # invalid JSON: the caller sees exactly what the model wrote


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    return 0


def _usage(usage: Any, pricing: ModelPricing | None) -> Usage:
    if not isinstance(usage, dict):
        usage, pricing = {}, None  # no counts: the cost is unknown, not 0
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    input_tokens = _count(usage.get("prompt_tokens"))
    output_tokens = _count(usage.get("completion_tokens"))
    cached = 0
    if isinstance(prompt_details, dict):
        cached = _count(prompt_details.get("cached_tokens"))
    if not cached:
        cached = _count(usage.get("prompt_cache_hit_tokens"))  # DeepSeek
    cached = min(cached, input_tokens)
    reasoning = 0
    if isinstance(completion_details, dict):
        reasoning = _count(completion_details.get("reasoning_tokens"))
    cost = None if pricing is None else pricing.cost_usd(input_tokens, output_tokens, cached)
    return Usage(
        input_tokens,
        output_tokens,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
        cost_usd=cost,
    )
