"""The wire format of Theater's AI provider proxies, after the Rust crate ``genai-types``.

Importing this package registers every type's hooks on :data:`theater_py.serde.converter`,
so :func:`theater_py.serde.structure` and :func:`~theater_py.serde.unstructure` read and
write exactly the JSON the Rust proxies speak. ``ProxyRequest`` and ``ProxyResponse`` are
the request and response types of a proxy actor.
"""

from __future__ import annotations

from theater_py_actors.genai_types._completion import (
    CompletionRequest,
    CompletionResponse,
    EndTurn,
    MaxTokens,
    OtherStop,
    RefusalStop,
    StopReason,
    StopSequence,
    ToolUseStop,
    Usage,
)
from theater_py_actors.genai_types._messages import (
    Audio,
    Base64Source,
    Image,
    ImageSource,
    Message,
    MessageContent,
    Role,
    Text,
    Thinking,
    ToolAudio,
    ToolContent,
    ToolImage,
    ToolResource,
    ToolResult,
    ToolText,
    ToolUse,
    UrlSource,
)
from theater_py_actors.genai_types._models import ModelInfo, ModelPricing
from theater_py_actors.genai_types._proxy import (
    ERROR_KINDS,
    Completion,
    ErrorKind,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    ModelList,
    ProxyRequest,
    ProxyResponse,
)
from theater_py_actors.genai_types._tools import (
    Tool,
    ToolChoice,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
)

__all__ = [
    "ERROR_KINDS",
    "Audio",
    "Base64Source",
    "Completion",
    "CompletionRequest",
    "CompletionResponse",
    "EndTurn",
    "ErrorKind",
    "ErrorResponse",
    "GenerateCompletion",
    "Image",
    "ImageSource",
    "ListModels",
    "MaxTokens",
    "Message",
    "MessageContent",
    "ModelInfo",
    "ModelList",
    "ModelPricing",
    "OtherStop",
    "ProxyRequest",
    "ProxyResponse",
    "RefusalStop",
    "Role",
    "StopReason",
    "StopSequence",
    "Text",
    "Thinking",
    "Tool",
    "ToolAudio",
    "ToolChoice",
    "ToolChoiceAny",
    "ToolChoiceAuto",
    "ToolChoiceNone",
    "ToolChoiceTool",
    "ToolContent",
    "ToolImage",
    "ToolResource",
    "ToolResult",
    "ToolText",
    "ToolUse",
    "ToolUseStop",
    "UrlSource",
    "Usage",
]
