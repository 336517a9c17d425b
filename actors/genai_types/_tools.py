"""Tools the model may call, and how it must choose among them."""

from __future__ import annotations

from typing import TypeAlias

import attrs

from theater_py import serde

__all__ = [
    "Tool",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceNone",
    "ToolChoiceTool",
]


@attrs.frozen(kw_only=True)
class Tool:
    """A tool the model may call.

    Attributes:
        name: the tool's name, which the model's :class:`ToolUse` quotes.
        description: what the tool does, for the model.
        input_schema: the JSON Schema of the tool's arguments.
        annotations: hints about the tool's behaviour (MCP tool annotations).
        strict: make the model's arguments follow ``input_schema`` exactly (OpenAI's
            structured outputs for function calling; an extension).
    """

    name: str
    # Optional keys on the wire: left out while None (serde reads an absent Option as None).
    description: str | None = attrs.field(default=None, metadata=serde.extension())
    input_schema: serde.JsonObject
    annotations: serde.JsonObject | None = attrs.field(default=None, metadata=serde.extension())
    strict: bool | None = attrs.field(default=None, metadata=serde.extension())


@attrs.frozen
class ToolChoiceAuto:
    """The model decides whether to call a tool (``{"type": "auto"}``)."""


@attrs.frozen
class ToolChoiceAny:
    """The model must call some tool (``{"type": "any"}``)."""


@attrs.frozen
class ToolChoiceNone:
    """The model must not call a tool (``{"type": "none"}``)."""


@attrs.frozen
class ToolChoiceTool:
    """The model must call this tool (``{"type": "tool", "name": ...}``)."""

    name: str


ToolChoice: TypeAlias = ToolChoiceAuto | ToolChoiceAny | ToolChoiceNone | ToolChoiceTool
"""How the model chooses tools, tagged by ``type``: ``auto``, ``any``, ``none``, ``tool``."""


serde.register_internally_tagged(
    ToolChoice,
    {ToolChoiceAuto: "auto", ToolChoiceAny: "any", ToolChoiceNone: "none", ToolChoiceTool: "tool"},
)
