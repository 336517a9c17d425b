"""When to retry a failed chat completion, and how long to wait first.

Pure functions; :class:`~actors.openai_proxy.client.ChatClient` applies them.

urllib3's ``Retry`` (which requests runs through ``HTTPAdapter(max_retries=...)``) is not
used, and the client's adapter sets ``max_retries=0`` so urllib3 never retries behind its
back, because ``Retry`` cannot express this policy:

- it has no deadline across attempts (its timeouts apply to each socket operation), so it
  cannot honour ``max_total_timeout_ms``;
- it never reads the body, so it cannot tell a rate-limit 429 (retry) from an exhausted
  quota 429 (never retry);
- it ignores ``retry-after-ms`` and rejects a fractional ``Retry-After`` (``0.5``);
- its backoff sleeps block the thread, so shutting down would wait them out.

The policy follows the official OpenAI SDK where that is sound and departs from it where it
is not: exhausted quotas are never retried, the backoff comes from the actor's
``RetryConfig``, and a server-directed wait is honoured whatever its length as long as it
fits in the time left (the client fails at once when it does not).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from actors.openai_proxy.config import RetryConfig
    from actors.openai_proxy.errors import ErrorKind

__all__ = ["RETRYABLE_STATUSES", "parse_retry_after", "retry_delay", "should_retry"]

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 429, *range(500, 600)})
"""The statuses retried when the provider sends no ``x-should-retry`` header: 408, 409, 429
and every 5xx (501, 505 and Cloudflare's 520-530 included), as in the official SDK."""

_NEVER_RETRIED = frozenset({"quota_exhausted", "invalid_request", "configuration"})
_TRANSPORT_KINDS = frozenset({"connection", "timeout"})
# An error reported inside a 2xx body has no status of its own to judge by: its kind decides.
_TRANSIENT_KINDS = frozenset({"rate_limit", "overloaded", "server_error", "timeout"})
# A 5xx of these kinds says the request itself is at fault (llama-cpp-python answers a bad
# parameter with 500): one retry covers a server that was wrong, more would be wasted.
_REQUEST_FAULT_KINDS = frozenset({"bad_request", "context_window_exceeded", "content_policy"})
_REQUEST_FAULT_ATTEMPTS = 2


def should_retry(  # noqa: PLR0911 -- a decision ladder reads best flat
    kind: ErrorKind,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    *,
    attempt: int = 1,
) -> bool:
    """Decide whether a failed attempt is worth another.

    Args:
        kind: the failure's kind.
        status: the HTTP status, or ``None`` when no response came.
        headers: the response headers (case-insensitive, as requests gives them).
        attempt: how many attempts have been made, this one included.

    Returns:
        ``False`` for an exhausted quota or a request that cannot be sent, whatever the
        server says, and for a 5xx that blames the request (kind ``bad_request``,
        ``context_window_exceeded`` or ``content_policy``) once it has been retried once;
        otherwise what an ``x-should-retry: true|false`` header says; otherwise ``True``
        for a connection error, a timeout, a status in :data:`RETRYABLE_STATUSES`, or an
        error inside a 2xx body whose kind is transient (``rate_limit``, ``overloaded``,
        ``server_error``, ``timeout``).
    """
    if kind in _NEVER_RETRIED:
        return False
    if (
        status is not None
        and status >= 500
        and kind in _REQUEST_FAULT_KINDS
        and attempt >= _REQUEST_FAULT_ATTEMPTS
    ):
        return False
    if headers is not None:
        override = headers.get("x-should-retry")
        if override is not None:
            verdict = override.strip().lower()
            if verdict == "true":
                return True
            if verdict == "false":
                return False
    if status is None:
        return kind in _TRANSPORT_KINDS
    if 200 <= status < 300:
        return kind in _TRANSIENT_KINDS
    return status in RETRYABLE_STATUSES


def _non_negative_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


_LONGEST_WAIT_MS = 86_400_000
"""A day: a longer wait outlasts every deadline, and ``1e308`` s must not overflow."""


def _wait_ms(milliseconds: float) -> int:
    return math.ceil(min(milliseconds, _LONGEST_WAIT_MS))


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> int | None:
    """Read how long the server asks the client to wait.

    ``retry-after-ms`` wins over ``retry-after``; ``retry-after`` is seconds (fractions
    allowed) or an HTTP date. A date in the past means no wait.

    Args:
        headers: the response headers (case-insensitive, as requests gives them).
        now: the current time in seconds since the epoch, for an HTTP date; defaults to
            :func:`time.time`.

    Returns:
        The wait in milliseconds (rounded up), or ``None`` when neither header is present
        and valid.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        milliseconds = _non_negative_number(raw_ms)
        if milliseconds is not None:
            return _wait_ms(milliseconds)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _non_negative_number(raw)
    if seconds is None:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": RFC 9110 dates are UTC anyway
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    return _wait_ms(seconds * 1000)


def retry_delay(
    retry: int,
    config: RetryConfig,
    *,
    retry_after_ms: int | None = None,
    random_value: float = 0.0,
) -> float:
    """Return how long to wait before a retry, in seconds.

    Args:
        retry: which retry this is, from 0 for the first.
        config: the backoff settings.
        retry_after_ms: the server's requested wait (:func:`parse_retry_after`); a positive
            one is used as is, without jitter or cap (the caller checks it against the
            deadline).
        random_value: a number in ``[0, 1)``; the computed backoff is multiplied by
            ``1 - 0.25 * random_value`` (as the OpenAI SDK does) so that clients that
            failed together do not retry together.

    Returns:
        The server's wait, else ``min(initial_delay_ms * backoff_multiplier**retry,
        max_delay_ms)`` with jitter, converted to seconds.
    """
    if retry_after_ms is not None and retry_after_ms > 0:
        return retry_after_ms / 1000
    try:
        backoff = config.initial_delay_ms * config.backoff_multiplier**retry
    except OverflowError:
        backoff = math.inf
    return min(backoff, config.max_delay_ms) * (1 - 0.25 * random_value) / 1000
