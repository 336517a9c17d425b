"""Conversation messages and their content parts."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeAlias

import attrs

from theater_py import serde

__all__ = [
    "Audio",
    "Base64Source",
    "Image",
    "ImageSource",
    "Message",
    "MessageContent",
    "Role",
    "Text",
    "Thinking",
    "ToolAudio",
    "ToolContent",
    "ToolImage",
    "ToolResource",
    "ToolResult",
    "ToolText",
    "ToolUse",
    "UrlSource",
]


class Role(enum.StrEnum):
    """Who speaks a message."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


@attrs.frozen
class UrlSource:
    """An image the provider fetches from a URL (``{"type": "url"}``).

    Attributes:
        url: an ``https:`` URL, or a ``data:`` URL.
    """

    url: str


@attrs.frozen
class Base64Source:
    """An image sent inline (``{"type": "base64"}``).

    Attributes:
        media_type: the image's MIME type (``image/png``).
        data: the image bytes, base64-encoded.
    """

    media_type: str
    data: str


ImageSource: TypeAlias = UrlSource | Base64Source
"""Where an image comes from, tagged by ``type``: ``url`` or ``base64``."""


@attrs.frozen
class ToolText:
    """Text a tool returned (MCP ``{"type": "text"}``)."""

    text: str


@attrs.frozen
class ToolImage:
    """An image a tool returned (MCP ``{"type": "image"}``).

    Attributes:
        data: the image bytes, base64-encoded.
        mime_type: the image's MIME type, written ``mimeType`` as MCP does.
    """

    data: str
    mime_type: str = attrs.field(metadata=serde.key("mimeType"))


@attrs.frozen
class ToolAudio:
    """Audio a tool returned (MCP ``{"type": "audio"}``).

    Attributes:
        data: the audio bytes, base64-encoded.
        mime_type: the audio's MIME type, written ``mimeType`` as MCP does.
    """

    data: str
    mime_type: str = attrs.field(metadata=serde.key("mimeType"))


@attrs.frozen
class ToolResource:
    """A resource a tool returned (MCP ``{"type": "resource"}``), kept as raw JSON."""

    resource: serde.Json


ToolContent: TypeAlias = ToolText | ToolImage | ToolAudio | ToolResource
"""One part of a tool's result, tagged by ``type``: ``text``, ``image``, ``audio``, ``resource``."""


# The converters let a constructor take any iterable of parts, a list[ToolResult] among
# them (list is invariant: a list[ToolResult] is no list[MessageContent]); the field
# stays a list, so messages compare and serialize as before.
def _tool_parts(parts: Iterable[ToolContent]) -> list[ToolContent]:
    return list(parts)


@attrs.frozen
class Text:
    """Text (``{"type": "text"}``)."""

    text: str


@attrs.frozen
class Thinking:
    """The model's visible reasoning before its answer (``{"type": "thinking"}``; an extension).

    Moonshot's reasoning models return it as ``reasoning_content`` and want it back on
    the assistant turns that carry tool calls: echo the reply's content parts as the
    assistant turn and the proxy sends it where the provider wants it.

    Attributes:
        thinking: the reasoning text.
    """

    thinking: str


@attrs.frozen
class ToolUse:
    """The model's call of a tool (``{"type": "tool_use"}``).

    Attributes:
        id: the call's id, which the matching :class:`ToolResult` quotes.
        name: the tool's name.
        input: the arguments, normally a JSON object; arguments a model wrote as
            invalid JSON arrive as the raw string.
    """

    id: str
    name: str
    input: serde.Json


@attrs.frozen
class ToolResult:
    """The result of a tool call, sent back to the model (``{"type": "tool_result"}``).

    Attributes:
        tool_use_id: the id of the :class:`ToolUse` this answers.
        content: what the tool returned (any iterable of parts; kept as a list).
        is_error: whether the tool failed; ``None`` means it did not say.
    """

    tool_use_id: str
    content: list[ToolContent] = attrs.field(factory=list, converter=_tool_parts)
    is_error: bool | None = None


@attrs.frozen
class Image:
    """An image (``{"type": "image"}``; an extension of genai-types).

    Attributes:
        source: where the image comes from.
        detail: the resolution the model looks at it in: ``"low"``, ``"high"`` or
            ``"auto"``; ``None`` leaves it to the provider.
    """

    source: ImageSource
    detail: str | None = None


@attrs.frozen
class Audio:
    """Audio input (``{"type": "audio"}``; an extension of genai-types).

    Attributes:
        data: the audio bytes, base64-encoded.
        format: the encoding, ``"wav"`` or ``"mp3"``.
    """

    data: str
    format: str


MessageContent: TypeAlias = Text | ToolUse | ToolResult | Image | Audio | Thinking
"""One part of a message, tagged by ``type``: ``text``, ``tool_use``, ``tool_result``,
``image``, ``audio``, ``thinking``."""


def _parts(parts: Iterable[MessageContent]) -> list[MessageContent]:
    return list(parts)


@attrs.frozen
class Message:
    """One turn of a conversation.

    Attributes:
        role: who speaks.
        content: the parts, in order (given as any iterable of parts; kept as a list).
    """

    role: Role
    content: list[MessageContent] = attrs.field(converter=_parts)

    @classmethod
    def user(cls, text: str) -> Message:
        """Make a user message of one text part."""
        return cls(Role.USER, [Text(text)])

    @classmethod
    def assistant(cls, text: str) -> Message:
        """Make an assistant message of one text part."""
        return cls(Role.ASSISTANT, [Text(text)])

    @classmethod
    def system(cls, text: str) -> Message:
        """Make a system message of one text part."""
        return cls(Role.SYSTEM, [Text(text)])


serde.register_internally_tagged(ImageSource, {UrlSource: "url", Base64Source: "base64"})
serde.register_internally_tagged(
    ToolContent,
    {ToolText: "text", ToolImage: "image", ToolAudio: "audio", ToolResource: "resource"},
)
serde.register_internally_tagged(
    MessageContent,
    {
        Text: "text",
        ToolUse: "tool_use",
        ToolResult: "tool_result",
        Image: "image",
        Audio: "audio",
        Thinking: "thinking",
    },
)
