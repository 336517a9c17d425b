"""The messages of an AI provider proxy actor: its requests and replies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, get_args

import attrs

from theater_py import serde
from theater_py._suggest import expected_keys
from theater_py_actors.genai_types._completion import (
    CompletionRequest,
    CompletionResponse,
    UnknownFieldError,
)
from theater_py_actors.genai_types._models import ModelInfo

__all__ = [
    "ERROR_KINDS",
    "Completion",
    "Delta",
    "ErrorKind",
    "ErrorResponse",
    "GenerateCompletion",
    "ListModels",
    "ModelList",
    "ProxyRequest",
    "ProxyResponse",
    "ProxyStreamMessage",
    "RateLimitInfo",
    "ReasoningDelta",
    "Retrying",
    "ToolUseDelta",
    "TriedTarget",
]


@attrs.frozen
class ListModels:
    """Ask for the models the proxy serves (``"ListModels"``).

    Attributes:
        live: ask the provider (an extension, ``{"ListModels": {"live": true}}``) instead
            of answering from what the proxy knows; absent or ``false`` is the bare
            ``"ListModels"``.
    """

    live: bool | None = attrs.field(default=None, metadata=serde.extension())


@attrs.frozen
class GenerateCompletion:
    """Ask for a completion (``{"GenerateCompletion": {"request": ...}}``).

    Attributes:
        request: the completion request.
        max_total_timeout_ms: a deadline for this request only, in milliseconds from
            when the proxy accepts it (an extension); the proxy uses the shorter of it
            and its own. A router passes the time its request has left.
    """

    request: CompletionRequest
    max_total_timeout_ms: int | None = attrs.field(default=None, metadata=serde.extension())


ProxyRequest: TypeAlias = ListModels | GenerateCompletion
"""A request to a proxy actor."""


@attrs.frozen
class ModelList:
    """The models the proxy serves (``{"ListModels": {"models": [...]}}``)."""

    models: list[ModelInfo]


@attrs.frozen(kw_only=True)
class RateLimitInfo:
    """The provider's rate limits as its last reply stated them (``x-ratelimit-*``).

    Every attribute is ``None`` where the provider did not say. Reset times are
    milliseconds from the reply.
    """

    limit_requests: int | None = attrs.field(default=None, metadata=serde.extension())
    limit_tokens: int | None = attrs.field(default=None, metadata=serde.extension())
    remaining_requests: int | None = attrs.field(default=None, metadata=serde.extension())
    remaining_tokens: int | None = attrs.field(default=None, metadata=serde.extension())
    reset_requests_ms: int | None = attrs.field(default=None, metadata=serde.extension())
    reset_tokens_ms: int | None = attrs.field(default=None, metadata=serde.extension())


@attrs.frozen(kw_only=True)
class TriedTarget:
    """One target a router considered for a request.

    Attributes:
        target: ``provider:model``.
        outcome: ``ok``, ``error`` (it was called and failed) or ``skipped`` (not called).
        kind: the error kind, or why it was skipped; ``None`` when ``ok``.
        ms: how long it took, in milliseconds.
    """

    target: str
    outcome: str
    kind: str | None
    ms: int


@attrs.frozen
class Completion:
    """The model's answer (``{"Completion": {"completion": ...}}``).

    Attributes:
        completion: the answer.
        rate_limit: the provider's rate limits, as its reply's headers stated them (an
            extension).
        served_by: the router target that answered, ``provider:model`` (an extension,
            set by a router).
        tried: every target the router considered, in order (an extension).
    """

    completion: CompletionResponse
    rate_limit: RateLimitInfo | None = attrs.field(default=None, metadata=serde.extension())
    served_by: str | None = attrs.field(default=None, metadata=serde.extension())
    tried: list[TriedTarget] | None = attrs.field(default=None, metadata=serde.extension())


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
    "cancelled",
    "budget_exceeded",
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
        partial_text: in a stream that failed after text had flowed, the text the caller
            already received (the concatenated ``Delta`` texts), so it need not be rebuilt.
        rate_limit: the provider's rate limits, as the failed reply's headers stated them.
        served_by: on an error nobody served the request: a router's ``Error`` (one with
            ``tried``) writes it as ``null``; the proxy's own errors leave it out.
        tried: every target a router considered, in order.
    """

    error: str
    kind: str | None = attrs.field(default=None, metadata=serde.extension())
    status: int | None = attrs.field(default=None, metadata=serde.extension())
    retry_after_ms: int | None = attrs.field(default=None, metadata=serde.extension())
    request_id: str | None = attrs.field(default=None, metadata=serde.extension())
    provider_code: str | None = attrs.field(default=None, metadata=serde.extension())
    attempts: int | None = attrs.field(default=None, metadata=serde.extension())
    partial_text: str | None = attrs.field(default=None, metadata=serde.extension())
    rate_limit: RateLimitInfo | None = attrs.field(default=None, metadata=serde.extension())
    served_by: str | None = attrs.field(default=None, metadata=serde.extension())
    tried: list[TriedTarget] | None = attrs.field(default=None, metadata=serde.extension())


ProxyResponse: TypeAlias = ModelList | Completion | ErrorResponse
"""A proxy actor's reply."""


@attrs.frozen
class Delta:
    """Text appended to content block ``index`` of a streamed completion
    (``{"Delta": {"index": 0, "text": "Hel"}}``)."""

    index: int
    text: str


@attrs.frozen
class ToolUseDelta:
    """A piece of the tool call that is content block ``index`` of a streamed completion.

    The first for a block has ``id`` and ``name`` (and may have a fragment of the input);
    later ones only a fragment of ``input_json``, the call's arguments as JSON text: the
    fragments concatenated, parsed, are the ``ToolUse.input`` of the final completion.
    ``{"ToolUseDelta": {"index": 1, "id": "call_1", "name": "get_weather", "input_json": ""}}``
    """

    index: int
    id: str | None = attrs.field(default=None, metadata=serde.extension())
    name: str | None = attrs.field(default=None, metadata=serde.extension())
    input_json: str = ""


@attrs.frozen
class ReasoningDelta:
    """Reasoning text a provider streams (``reasoning_content``), appended to the
    completion's ``thinking`` block (``{"ReasoningDelta": {"text": "Let me"}}``)."""

    text: str


@attrs.frozen
class Retrying:
    """The proxy waits ``delay_s`` seconds before it sends the request again, after a failed
    ``attempt`` (``{"Retrying": {"delay_s": 1.7, "reason": "429 rate limit", "attempt": 2,
    "max_attempts": 5}}``). Sent before any delta: once text flows nothing is retried.

    Attributes:
        delay_s: the wait, in seconds.
        reason: why the last attempt failed, for people (never holds an API key).
        attempt: the number of the attempt that follows the wait (2 for the first retry).
        max_attempts: the most attempts the proxy makes.
    """

    delay_s: float
    reason: str
    attempt: int
    max_attempts: int

    def line(self) -> str:
        """The line the proxy logs for this retry (``retrying in 1.7 s: ...``)."""
        return (
            f"retrying in {self.delay_s:.3g} s: {self.reason} "
            f"(attempt {self.attempt} of {self.max_attempts})"
        )


ProxyStreamMessage: TypeAlias = (
    Delta | ToolUseDelta | ReasoningDelta | Retrying | Completion | ErrorResponse
)
"""What a proxy sends on a completion's channel: deltas (and notices of its retries
before them), then one ``Completion`` or ``Error``."""


def _error_writer() -> Any:
    written = serde.converter.get_unstructure_hook(ErrorResponse)

    def write(error: ErrorResponse) -> Any:
        body = written(error)
        if error.tried is not None and "served_by" not in body:
            # A router's error says who served it, nobody, beside what it tried: the shape
            # callers match on is {"Error": {..., "served_by": null, "tried": [...]}}.
            tried = body.pop("tried")
            body["served_by"] = None
            body["tried"] = tried
        return body

    return write


# Registered before the unions below, which take ErrorResponse's writer as they register.
serde.converter.register_unstructure_hook(ErrorResponse, _error_writer())


def _list_models_hook() -> Any:
    """Name an unknown key (``{"ListModels": {"lve": true}}``) instead of ignoring it."""
    structure = serde.converter.get_structure_hook(ListModels)
    known = [field.name for field in attrs.fields(ListModels)]

    def structure_list_models(value: Any, cls: Any) -> ListModels:
        if isinstance(value, Mapping):
            unknown = [str(name) for name in value if name not in known]
            if unknown:
                raise UnknownFieldError(
                    f"unknown field {unknown[0]!r} ({expected_keys(unknown[0], known)})"
                )
        request: ListModels = structure(value, cls)
        return request

    return structure_list_models


serde.converter.register_structure_hook(ListModels, _list_models_hook())
serde.register_externally_tagged(
    ProxyRequest, {ListModels: "ListModels", GenerateCompletion: "GenerateCompletion"}
)
serde.register_externally_tagged(
    ProxyResponse, {ModelList: "ListModels", Completion: "Completion", ErrorResponse: "Error"}
)
_StreamDelta: TypeAlias = Delta | ToolUseDelta | ReasoningDelta | Retrying
serde.register_externally_tagged(
    _StreamDelta,
    {
        Delta: "Delta",
        ToolUseDelta: "ToolUseDelta",
        ReasoningDelta: "ReasoningDelta",
        Retrying: "Retrying",
    },
)
_FINAL = frozenset({"Completion", "Error"})


def _structure_stream_message(value: Any, _: Any) -> Any:
    # Completion and ErrorResponse already carry ProxyResponse's tags as their own hooks:
    # the stream's union reads and writes through them instead of wrapping them again.
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _FINAL:
        return serde.converter.structure(value, ProxyResponse)  # type: ignore[arg-type]
    return serde.converter.structure(value, _StreamDelta)  # type: ignore[arg-type]


def _unstructure_stream_message(value: Any) -> Any:
    return serde.converter.unstructure(value, type(value))


serde.converter.register_structure_hook(ProxyStreamMessage, _structure_stream_message)
serde.converter.register_unstructure_hook(ProxyStreamMessage, _unstructure_stream_message)
