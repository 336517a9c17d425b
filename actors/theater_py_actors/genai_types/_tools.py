"""Tools the model may call, and how it must choose among them."""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

from theater_py import serde
from theater_py.errors import MessageDecodeError

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


def from_openai_tool(value: Any) -> Any:
    """Rewrite OpenAI's tool shape into the wire format's; return anything else unchanged.

    ``{"type": "function", "function": {"name", "description", "parameters", "strict"}}``
    becomes ``{"name", "description", "input_schema", "strict"}``; absent ``parameters``
    mean no arguments, as they do for OpenAI. The wire format's :class:`Tool` stays the
    canonical shape: this only lets a caller paste a tool written for OpenAI.

    Raises:
        MessageDecodeError: an OpenAI-style tool without ``function.name``.
    """
    if not (isinstance(value, dict) and value.get("type") == "function" and "name" not in value):
        return value
    function = value.get("function")
    if not isinstance(function, dict) or "name" not in function:
        raise MessageDecodeError(
            "function.name",
            "required field missing (a tool is {name, description, input_schema}, or "
            'OpenAI\'s {"type": "function", "function": {name, description, parameters}})',
        )
    tool = {
        key: function[key]
        for key in ("name", "description", "strict")
        if function.get(key) is not None
    }
    tool["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return tool


def _structure_hook(structure: Any) -> Any:
    def structure_tool(value: Any, cls: Any) -> Any:
        return structure(from_openai_tool(value), cls)

    return structure_tool


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

serde.converter.register_structure_hook(
    Tool, _structure_hook(serde.converter.get_structure_hook(Tool))
)
