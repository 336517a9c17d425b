"""The messages of an AI provider proxy actor: its requests and replies."""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

import attrs

from theater_py import serde
from theater_py_actors.genai_types._completion import CompletionRequest, CompletionResponse
from theater_py_actors.genai_types._models import ModelInfo

__all__ = [
    "ERROR_KINDS",
    "Completion",
    "ErrorKind",
    "ErrorResponse",
    "GenerateCompletion",
    "ListModels",
    "ModelList",
    "ProxyRequest",
    "ProxyResponse",
]


@attrs.frozen
class ListModels:
    """Ask for the models the proxy serves (``"ListModels"``)."""


@attrs.frozen
class GenerateCompletion:
    """Ask for a completion (``{"GenerateCompletion": {"request": ...}}``)."""

    request: CompletionRequest


ProxyRequest: TypeAlias = ListModels | GenerateCompletion
"""A request to a proxy actor."""


@attrs.frozen
class ModelList:
    """The models the proxy serves (``{"ListModels": {"models": [...]}}``)."""

    models: list[ModelInfo]


@attrs.frozen
class Completion:
    """The model's answer (``{"Completion": {"completion": ...}}``)."""

    completion: CompletionResponse


ErrorKind: TypeAlias = Literal[
    "authentication",
    "permission",
    "not_found",
    "bad_request",
    "context_window_exceeded",
    "content_policy",
    "rate_limit",
    "quota_exhausted",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "invalid_response",
    "invalid_request",
    "configuration",
]
"""The kinds of failure a proxy reports."""

ERROR_KINDS: frozenset[str] = frozenset(get_args(ErrorKind))
"""Every :data:`ErrorKind`."""


@attrs.frozen
class ErrorResponse:
    """A failed request (``{"Error": {"error": ...}}``); never holds an API key.

    Every attribute but ``error`` is an extension: an old reader sees only the message.
    ``kind`` is a ``str`` so a reader survives kinds added later.

    Attributes:
        error: what went wrong, for people.
        kind: what went wrong, for programs: one of :data:`ERROR_KINDS`.
        status: the provider's HTTP status, if it answered.
        retry_after_ms: how long the provider asked callers to wait before retrying.
        request_id: the provider's id of the request (``x-request-id``).
        provider_code: the provider's own error code (``insufficient_quota``).
        attempts: how many times the proxy sent the request.
    """

    error: str
    kind: str | None = attrs.field(default=None, metadata=serde.extension())
    status: int | None = attrs.field(default=None, metadata=serde.extension())
    retry_after_ms: int | None = attrs.field(default=None, metadata=serde.extension())
    request_id: str | None = attrs.field(default=None, metadata=serde.extension())
    provider_code: str | None = attrs.field(default=None, metadata=serde.extension())
    attempts: int | None = attrs.field(default=None, metadata=serde.extension())


ProxyResponse: TypeAlias = ModelList | Completion | ErrorResponse
"""A proxy actor's reply."""


serde.register_externally_tagged(
    ProxyRequest, {ListModels: "ListModels", GenerateCompletion: "GenerateCompletion"}
)
serde.register_externally_tagged(
    ProxyResponse, {ModelList: "ListModels", Completion: "Completion", ErrorResponse: "Error"}
)
