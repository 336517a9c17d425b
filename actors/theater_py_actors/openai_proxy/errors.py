"""Provider failures, sorted into the kinds the wire format names.

An OpenAI-compatible provider reports errors as ``{"error": {"message", "type", "param",
"code"}}`` (Moonshot sends only ``type`` and ``message``; gateways send HTML or nothing).
:func:`classify_response` reads whichever of these it gets and returns a
:class:`ProviderError` whose ``kind`` (the wire format's
:data:`~theater_py_actors.genai_types.ErrorKind`) says what the caller can do about it:
wait and retry (``rate_limit``, ``overloaded``), fix the request
(``context_window_exceeded``), or give up (``quota_exhausted``, ``authentication``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import attrs
from requests.structures import CaseInsensitiveDict

from theater_py_actors.genai_types import ERROR_KINDS, ErrorKind, ErrorResponse, RateLimitInfo
from theater_py_actors.openai_proxy.ratelimit_headers import rate_limit_of
from theater_py_actors.openai_proxy.retry import parse_retry_after

__all__ = [
    "ERROR_KINDS",
    "ErrorKind",
    "ProviderError",
    "classify_response",
    "error_reply",
    "excerpt",
    "header_excerpt",
    "redact",
]

_REDACTED = "[redacted]"
_MAX_TEXT = 500
_MAX_MESSAGE = 2000  # a provider's own message: one line, in replies and the chain
_FRAGMENT = 8  # a key's first and last this many characters are masked on their own
# "Bearer <token>" in any spelling: any case, then spaces, "%20", "+", an escaped "\\n" or ":".
_BEARER = re.compile(r"(?i)\b(bearer)((?:\s|%20|\+|\\[ntr]|[:=])+)[^\s\"'<>,;&\\]+")
# Up to the last "@" of the token: a password may hold "@", "/", "?" or "#" unencoded.
_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)\S*@")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:api[-_]?key|key|token|sig)=)[^&#\s\"']*")

# Matched against the error's lower-cased ``type`` and ``code``.
_QUOTA_MARKERS = frozenset({"insufficient_quota", "exceeded_current_quota_error"})
_CONTEXT_MARKERS = frozenset({"context_length_exceeded"})
_CONTENT_POLICY_MARKERS = frozenset(
    {"content_policy_violation", "content_filter", "responsibleaipolicyviolation", "invalid_prompt"}
)
_OVERLOADED_MARKERS = frozenset({"engine_overloaded_error", "overloaded_error"})
# Matched against the lower-cased message; the first is OpenAI's, vLLM's and DeepSeek's.
_CONTEXT_PHRASES = ("maximum context length", "exceeded model token limit", "context window")
# A 5xx whose message says the request is at fault: llama-cpp-python answers a parameter
# pydantic rejects ("1 validation error ... Input should be ...") or a chat template that
# fails on the messages with 500; gateways answer "invalid request" with 500 too.
_REQUEST_FAULT_PHRASES = (
    "validation error",
    "input should be",
    "template",
    "invalid request",
    "unsupported parameter",
    "unrecognized request argument",
    "extra inputs are not permitted",
)
_REQUEST_FAULT_MARKERS = frozenset({"invalid_request_error"})
# An error inside a 2xx body has no meaningful status: its type or code says the kind.
_TYPE_KINDS: Mapping[str, ErrorKind] = {
    "invalid_request_error": "bad_request",
    "authentication_error": "authentication",
    "invalid_api_key": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "model_not_found": "not_found",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "server_error": "server_error",
    "api_error": "server_error",
    "internal_server_error": "server_error",
    "timeout_error": "timeout",
}
_STATUS_KINDS: Mapping[int, ErrorKind] = {
    401: "authentication",
    402: "quota_exhausted",  # DeepSeek's "Insufficient Balance"
    403: "permission",
    404: "not_found",
    408: "timeout",
    429: "rate_limit",
    503: "overloaded",
    529: "overloaded",
}


@attrs.frozen(auto_exc=True)
class ProviderError(Exception):
    """A chat completion failed; nothing in it ever holds the API key.

    Attributes:
        kind: what went wrong (see :data:`ErrorKind`).
        message: a readable account, keeping the provider's own message.
        status: the HTTP status, or ``None`` when no response came.
        retry_after_ms: how long the provider asked the caller to wait, if it did.
        request_id: the provider's ``x-request-id``, to quote to its support.
        provider_code: the provider's error ``code`` (or ``type`` when it sends no code).
        attempts: how many HTTP attempts were made.
        rate_limit: the provider's ``x-ratelimit-*`` headers on the failed reply, read.
    """

    kind: ErrorKind
    message: str
    status: int | None = None
    retry_after_ms: int | None = None
    request_id: str | None = None
    provider_code: str | None = None
    attempts: int = 1
    rate_limit: RateLimitInfo | None = None

    def __str__(self) -> str:
        context = []
        if self.status is not None:
            context.append(f"HTTP {self.status}")
        if self.attempts > 1:
            context.append(f"{self.attempts} attempts")
        suffix = f" ({', '.join(context)})" if context else ""
        return f"{self.kind}: {self.message}{suffix}"


def error_reply(error: ProviderError, partial_text: str | None = None) -> ErrorResponse:
    """Turn a provider failure into the wire format's error reply.

    ``partial_text``: in a stream that failed after text had flowed, that text.
    """
    return ErrorResponse(
        error=str(error),
        kind=error.kind,
        status=error.status,
        retry_after_ms=error.retry_after_ms,
        request_id=error.request_id,
        provider_code=error.provider_code,
        attempts=error.attempts,
        partial_text=partial_text,
        rate_limit=error.rate_limit,
    )


def redact(text: str, secret: str | None) -> str:
    """Return ``text`` with the API key, bearer tokens and URL credentials masked.

    It masks, in this order: every occurrence of ``secret``; the token after ``Bearer``
    however it is written (``Authorization: Bearer ...``, a ``bytes`` repr, URL-encoded);
    the key's first and last 8 characters on their own (what is left of a key cut in
    two); URL userinfo (``https://user:pass@host``) and the values of the query
    parameters ``api-key``, ``key``, ``token`` and ``sig``. Cut a text only after this.

    Args:
        text: the text to clean.
        secret: the API key; ``None`` or ``""`` masks bearer tokens and URLs only.
    """
    if secret:
        text = text.replace(secret, _REDACTED)
    text = _BEARER.sub(rf"\1\2{_REDACTED}", text)
    if secret and len(secret) > _FRAGMENT:
        for fragment in (secret[:_FRAGMENT], secret[-_FRAGMENT:]):
            text = text.replace(fragment, _REDACTED)
    text = _USERINFO.sub(r"\1", text)
    return _SECRET_PARAM.sub(rf"\1{_REDACTED}", text)


def excerpt(text: str, secret: str | None, limit: int = _MAX_TEXT) -> str:
    """Return ``text`` redacted (see :func:`redact`), on one line, cut to ``limit`` characters.

    Redacting comes first: a cut through the key would leave most of it unmasked.
    """
    text = " ".join(redact(text, secret).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_str(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


@attrs.frozen
class _ErrorBody:
    message: str | None = None
    type: str | None = None
    code: str | None = None
    status: int | None = None  # a status the body states, for an error inside a 2xx


def _embedded_status(*candidates: Any) -> int | None:
    # OpenRouter and some gateways put the HTTP status in "code" (502) or "status".
    for value in candidates:
        number = int(value) if isinstance(value, str) and value.isdigit() else value
        if isinstance(number, int) and not isinstance(number, bool) and 400 <= number < 600:
            return number
    return None


def _read_error_body(body: bytes) -> _ErrorBody:
    """Return the provider's message, type, code and stated status, where present."""
    try:
        document = json.loads(body)
    except ValueError:
        return _ErrorBody()
    if not isinstance(document, dict):
        return _ErrorBody()
    error = document.get("error")
    if isinstance(error, dict):
        return _ErrorBody(
            _as_str(error.get("message")),
            _as_str(error.get("type")),
            _as_str(error.get("code")),
            _embedded_status(error.get("status"), error.get("code"), document.get("status")),
        )
    if isinstance(error, str):
        return _ErrorBody(error, status=_embedded_status(document.get("status")))
    # FastAPI-style gateways and some proxies.
    return _ErrorBody(_as_str(document.get("message") or document.get("detail")))


def _request_fault(status: int, markers: frozenset[str], lowered: str) -> ErrorKind | None:
    """Return the kind of a 4xx (or a 5xx) that blames the request, if it does."""
    if markers & _CONTEXT_MARKERS or any(phrase in lowered for phrase in _CONTEXT_PHRASES):
        return "context_window_exceeded"
    if markers & _CONTENT_POLICY_MARKERS:
        return "content_policy"
    if status >= 500 and (
        markers & _REQUEST_FAULT_MARKERS
        or any(phrase in lowered for phrase in _REQUEST_FAULT_PHRASES)
    ):
        return "bad_request"
    return None


def _kind(  # noqa: PLR0911 -- a decision ladder reads best flat
    status: int, markers: frozenset[str], message: str
) -> ErrorKind:
    if markers & _QUOTA_MARKERS:
        return "quota_exhausted"
    if (400 <= status < 500 and status not in (401, 403, 404, 408, 429)) or 500 <= status < 600:
        fault = _request_fault(status, markers, message.lower())
        if fault is not None:
            return fault
    if markers & _OVERLOADED_MARKERS:
        return "overloaded"
    kind = _STATUS_KINDS.get(status)
    if kind is not None:
        return kind
    if 500 <= status < 600:
        return "server_error"
    if 400 <= status < 500:
        return "bad_request"
    return "invalid_response"


def _kind_in_success(markers: frozenset[str], message: str) -> ErrorKind:
    """Classify an error a 2xx body carries without stating a status."""
    if markers & _QUOTA_MARKERS:
        return "quota_exhausted"
    fault = _request_fault(400, markers, message.lower())
    if fault is not None:
        return fault
    if markers & _OVERLOADED_MARKERS:
        return "overloaded"
    return next(
        (_TYPE_KINDS[marker] for marker in sorted(markers) if marker in _TYPE_KINDS),
        "server_error",
    )


def header_excerpt(headers: Mapping[str, str], name: str, secret: str | None) -> str | None:
    """Return a response header redacted and cut: it is the upstream's text, like a body,
    and may echo the key."""
    value = headers.get(name)
    return None if value is None else excerpt(value, secret, limit=200)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str | None = None,
    now: float | None = None,
) -> ProviderError:
    """Classify a provider's error response.

    Args:
        status: the HTTP status.
        headers: the response headers (a plain dict is matched case-insensitively too).
        body: the raw response body; JSON in OpenAI's or Moonshot's error shape, or not.
        secret: the API key, scrubbed from anything the provider echoes back.
        now: the current time (seconds since the epoch), for an HTTP-date ``Retry-After``.

    A 2xx whose body is ``{"error": {...}}`` (gateways report failures so) is classified
    like the same error with its own status: the status the body states (``"code": 502``,
    ``"status": 429``) when it states one, which the error then carries; otherwise its
    type, code and message decide, and a failure they do not name is a ``server_error``.

    Returns:
        The error, with ``attempts`` 1.
    """
    if not isinstance(headers, CaseInsensitiveDict):
        headers = CaseInsensitiveDict(headers)
    error_body = _read_error_body(body)
    error_type, code = error_body.type, error_body.code
    markers = frozenset(marker.lower() for marker in (error_type, code) if marker)
    message = error_body.message or ""
    if 200 <= status < 300:
        if error_body.status is not None:
            status = error_body.status
            kind = _kind(status, markers, message)
        else:
            kind = _kind_in_success(markers, message)
        message = f"{message or 'unspecified error'} (an error inside a 2xx response)"
    else:
        kind = _kind(status, markers, message)
    if not message:
        # Redact the whole body, then cut: a cut first could keep most of an echoed key.
        text = excerpt(body.decode("utf-8", "replace"), secret)
        message = f"HTTP {status} {_phrase(status)}" + (f": {text}" if text else "")
    provider_code = code if code is not None else error_type
    return ProviderError(
        kind=kind,
        message=excerpt(message, secret, limit=_MAX_MESSAGE),
        status=status,
        retry_after_ms=parse_retry_after(headers, now),
        request_id=header_excerpt(headers, "x-request-id", secret),
        provider_code=None if provider_code is None else excerpt(provider_code, secret, 200),
        rate_limit=rate_limit_of(headers),
    )
