"""Turn a provider's streamed chat-completion chunks into the proxy's stream messages.

A :class:`StreamAssembler` is fed the JSON chunks of one stream in order. For each it
returns the deltas to send to the caller (``Delta``, ``ToolUseDelta``,
``ReasoningDelta``), and at the end it builds the chat-completion body that a plain
request would have had, for :func:`~.convert.from_chat_response`: so a streamed
``Completion`` is made exactly as a plain one, and its text is the concatenated deltas
by construction (both are made of the same, redacted, pieces).

What providers do, and what is done with it:

- usage on the last chunk (OpenAI with ``include_usage``, after an empty ``choices``),
  on every chunk (vLLM: cumulative) or on none: the last one seen wins; none, no usage.
- tool-call deltas with an ``index`` (OpenAI), without one (some gateways send each
  call whole, or fragments that continue the last call), or with an ``index`` reused for
  a second call (a new ``id``, or a new name, starts a new call).
- ``reasoning_content`` (DeepSeek, Moonshot, llama.cpp) or ``reasoning`` (vLLM,
  OpenRouter): the ``thinking`` block.

Block indexes are numbered in the order blocks start; the final content is ordered so,
which is :func:`from_chat_response`'s own order (reasoning, text, refusal, tool calls)
whenever a provider streams them in that order, as they do.

Redaction: a hostile stream could echo the API key split over two chunks. Each block's
text goes through a :class:`_Redactor`, which holds back a tail that could be the start
of a secret until the next piece shows it is not; the caller never sees a secret, nor do
the chain or the cache.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import attrs

from theater_py_actors.genai_types import (
    CompletionResponse,
    Delta,
    ProxyStreamMessage,
    ReasoningDelta,
    Text,
    Thinking,
    ToolUse,
    ToolUseDelta,
)

__all__ = ["StreamAssembler", "deltas_of"]

_REDACTED = "[redacted]"
_META = ("id", "model", "system_fingerprint")
_TEXT_ONLY = frozenset({"role", "content"})
"""A delta with no other key carries text only (or nothing)."""


class _Redactor:
    """Masks secrets in a text that arrives in pieces, whatever the cuts."""

    __slots__ = ("_held", "_secrets")

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._secrets = secrets
        self._held = ""

    def feed(self, piece: str) -> str:
        """Return what of the text so far can be sent: all of it, masked, but a tail
        that may be the start of a secret."""
        if not self._secrets:
            return piece
        text = self._held + piece
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        keep = 0
        for secret in self._secrets:
            # The longest tail of the text that starts the secret: it starts with the
            # secret's first character, found in C rather than by trying every length.
            first, size = secret[0], len(text)
            start = text.find(first, max(0, size - len(secret) + 1))
            while start != -1 and size - start > keep:
                if secret.startswith(text[start:]):
                    keep = size - start
                    break
                start = text.find(first, start + 1)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The text is over: what was held back (it was no secret)."""
        held, self._held = self._held, ""
        return held


class _Block:
    __slots__ = ("index", "parts", "redactor")

    def __init__(self, index: int, secrets: tuple[str, ...]) -> None:
        self.index = index
        self.parts: list[str] = []
        self.redactor = _Redactor(secrets)

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _ToolCall(_Block):
    __slots__ = ("id", "name", "upstream_id")

    def __init__(self, index: int, secrets: tuple[str, ...], upstream_id: str) -> None:
        super().__init__(index, secrets)
        self.upstream_id = upstream_id
        self.id = ""
        self.name = ""


class StreamAssembler:
    """Reads the chunks of one streamed chat completion.

    Args:
        secrets: the API key and any other credential, masked wherever they appear.
    """

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._secrets = tuple(secret for secret in secrets if secret)
        self._blocks: dict[str, _Block] = {}
        self._order: list[str] = []
        self._calls: list[_ToolCall] = []
        self._by_index: dict[int, _ToolCall] = {}
        self._meta: dict[str, str] = {}
        self._usage: Any = None
        self._finish_reason: Any = None
        self.chunks = 0
        """How many chunks were read."""

    @property
    def partial_text(self) -> str:
        """The text sent so far: the ``Delta`` texts, concatenated."""
        return "".join(block.text for key, block in self._blocks.items() if key == "content")

    @property
    def text_index(self) -> int | None:
        """The index of the text block (whose deltas make :attr:`partial_text`), if any."""
        block = self._blocks.get("content")
        return None if block is None else block.index

    @property
    def started(self) -> bool:
        """Whether a block has started (a delta was produced)."""
        return bool(self._order)

    def add(self, chunk: dict[str, Any]) -> list[ProxyStreamMessage]:
        """Read one chunk; return the deltas it makes, in order."""
        self.chunks += 1
        if len(self._meta) < len(_META):
            self._take_meta(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        out: list[ProxyStreamMessage] = []
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return out
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) not in (0, None):
                continue  # n > 1: the first choice is the completion, as in a plain reply
            reason = choice.get("finish_reason")
            if reason is not None:  # unknown ones reach the caller: scrubbed as usage is
                self._finish_reason = (
                    self._scrub(reason) if isinstance(reason, str) else self._scrub_json(reason)
                )
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                delta = choice.get("message")  # some servers end with a whole message
            if isinstance(delta, dict):
                self._delta(delta, out)
        return out

    def add_texts(self, chunks: list[dict[str, Any]], start: int = 0) -> tuple[int, int, str]:
        """Read the chunks from ``chunks[start]`` on as :meth:`add` would, as long as each
        is a plain text delta of a text block already started (most chunks of a stream),
        without building a ``Delta`` per chunk: return how many were read, the block's
        index and the text to send (``""`` when all of it is held back). Stop at the
        first chunk of any other kind, unread: call :meth:`add` for it.
        """
        block = self._blocks.get("content")
        if block is None:
            return 0, 0, ""
        # A provider may never send one of them (system_fingerprint): read on as add does.
        meta_missing = len(self._meta) < len(_META)
        texts: list[str] = []
        position = start
        for position in range(start, len(chunks)):
            chunk = chunks[position]
            choices = chunk.get("choices")
            if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
                break
            choice = choices[0]
            if (
                type(choice) is not dict
                or choice.get("index", 0) not in (0, None)
                or choice.get("finish_reason") is not None
            ):
                break
            delta = choice.get("delta")
            if type(delta) is not dict or not delta.keys() <= _TEXT_ONLY:
                break
            text = delta.get("content")
            if type(text) is not str:
                break
            if meta_missing:
                self._take_meta(chunk)
                meta_missing = len(self._meta) < len(_META)
            texts.append(text)
        else:
            position = len(chunks)
        taken = position - start
        if not taken:
            return 0, block.index, ""
        self.chunks += taken
        joined = texts[0] if taken == 1 else "".join(texts)
        piece = block.redactor.feed(joined) if joined else ""
        if piece:
            block.parts.append(piece)
        return taken, block.index, piece

    def _take_meta(self, chunk: dict[str, Any]) -> None:
        """Keep each of ``id``, ``model`` and ``system_fingerprint`` from the first chunk
        that has it."""
        for name in _META:
            value = chunk.get(name)
            if isinstance(value, str) and value and name not in self._meta:
                self._meta[name] = self._scrub(value)

    def finish(self) -> list[ProxyStreamMessage]:
        """The stream is over: return the text held back, as the last deltas."""
        out: list[ProxyStreamMessage] = []
        for key in self._order:
            block = self._blocks.get(key)
            if block is None:
                continue
            rest = block.redactor.flush()
            if rest:
                self._emit(key, block, rest, out)
        for call in self._calls:
            rest = call.redactor.flush()
            if rest:
                call.parts.append(rest)
                out.append(ToolUseDelta(call.index, input_json=rest))
        return out

    def body(self) -> dict[str, Any]:
        """The chat completion a plain request would have answered (call :meth:`finish`
        first)."""
        message: dict[str, Any] = {"role": "assistant", "content": None}
        for key, field in (
            ("reasoning", "reasoning_content"),
            ("content", "content"),
            ("refusal", "refusal"),
        ):
            block = self._blocks.get(key)
            if block is not None:
                message[field] = block.text
        if self._calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.text},
                }
                for call in self._calls
            ]
        body: dict[str, Any] = dict(self._meta)
        body["choices"] = [{"index": 0, "message": message, "finish_reason": self._finish_reason}]
        if self._usage is not None:
            body["usage"] = self._scrub_json(self._usage)
        return body

    def order(self, completion: CompletionResponse) -> CompletionResponse:
        """``completion`` (made from :meth:`body`) with its blocks in the order they
        streamed, so that each delta's index is its block's."""
        canonical: list[str] = [
            key for key in ("reasoning", "content", "refusal") if key in self._blocks
        ]
        canonical += [f"tool{i}" for i in range(len(self._calls))]
        if canonical == self._order or len(canonical) != len(completion.content):
            return completion
        content = [completion.content[canonical.index(key)] for key in self._order]
        return attrs.evolve(completion, content=content)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def _scrub_json(self, value: Any) -> Any:
        return json.loads(self._scrub(json.dumps(value))) if self._secrets else value

    def _delta(self, delta: dict[str, Any], out: list[ProxyStreamMessage]) -> None:
        if delta.keys() <= _TEXT_ONLY:  # most chunks: text, and nothing else to look at
            self._text("content", _content_text(delta.get("content")), out)
            return
        reasoning = delta.get("reasoning_content")
        if not isinstance(reasoning, str):
            reasoning = delta.get("reasoning")
        self._text("reasoning", reasoning, out)
        self._text("content", _content_text(delta.get("content")), out)
        self._text("refusal", delta.get("refusal"), out)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for entry in calls:
                if isinstance(entry, dict):
                    self._tool_call(entry, out)

    def _text(self, key: str, value: Any, out: list[ProxyStreamMessage]) -> None:
        """Append ``value``, if it is text, to the block ``key``; emit what may be sent."""
        if isinstance(value, str) and value:
            block = self._blocks.get(key)
            if block is None:
                block = self._blocks[key] = _Block(len(self._order), self._secrets)
                self._order.append(key)
            piece = block.redactor.feed(value)
            if piece:
                self._emit(key, block, piece, out)

    def _emit(self, key: str, block: _Block, piece: str, out: list[ProxyStreamMessage]) -> None:
        block.parts.append(piece)
        if key == "reasoning":
            out.append(ReasoningDelta(piece))
        else:
            out.append(Delta(block.index, piece))

    def _tool_call(self, entry: dict[str, Any], out: list[ProxyStreamMessage]) -> None:
        index = entry.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = None
        upstream_id = _string(entry.get("id"))
        function = entry.get("function")
        if not isinstance(function, dict):
            function = {}
        name = _string(function.get("name"))
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):  # some servers send the object itself
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            arguments = ""
        if index is not None:
            call = self._by_index.get(index)
        else:
            call = self._calls[-1] if self._calls else None
        fresh = call is None or bool(
            (upstream_id and call.upstream_id and upstream_id != call.upstream_id)
            or (name and call.name and name != call.name and call.text)
        )
        if fresh:
            key = f"tool{len(self._calls)}"
            call = _ToolCall(len(self._order), self._secrets, upstream_id)
            self._order.append(key)
            self._calls.append(call)
            if index is not None:
                self._by_index[index] = call
            # A call needs an id for its result to quote; some servers omit it.
            call.id = self._scrub(upstream_id) or f"call_{uuid.uuid4().hex}"
            call.name = self._scrub(name)
            piece = call.redactor.feed(arguments)
            call.parts.append(piece)
            out.append(ToolUseDelta(call.index, id=call.id, name=call.name, input_json=piece))
            return
        assert call is not None
        named = None
        if name and not call.name:
            call.name = named = self._scrub(name)
        piece = call.redactor.feed(arguments)
        if piece or named:
            call.parts.append(piece)
            out.append(ToolUseDelta(call.index, name=named, input_json=piece))


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _content_text(value: Any) -> Any:
    if isinstance(value, list):  # content parts, as some providers send
        return "".join(
            part["text"]
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return value


def deltas_of(completion: CompletionResponse) -> list[ProxyStreamMessage]:
    """The deltas of a completion that came whole (from the cache, or from a provider
    that ignored ``stream``): one per block."""
    out: list[ProxyStreamMessage] = []
    for index, part in enumerate(completion.content):
        if isinstance(part, Text):
            out.append(Delta(index, part.text))
        elif isinstance(part, Thinking):
            out.append(ReasoningDelta(part.thinking))
        elif isinstance(part, ToolUse):
            arguments = part.input if isinstance(part.input, str) else json.dumps(part.input)
            out.append(ToolUseDelta(index, id=part.id, name=part.name, input_json=arguments))
    return out
