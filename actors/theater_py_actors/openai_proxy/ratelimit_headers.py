"""A provider's ``x-ratelimit-*`` headers, read into the ``rate_limit`` reply extension.

OpenAI (and providers that copy it) state their limits on every reply:
``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-tokens``,
``x-ratelimit-reset-requests: 6m0s`` and so on. The proxy passes them on as a
:class:`~theater_py_actors.genai_types.RateLimitInfo`, so that a router can stop sending
what the provider is known to refuse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from theater_py_actors.genai_types import RateLimitInfo

__all__ = ["parse_duration_ms", "rate_limit_of"]

_REMAINING_REQUESTS = "x-ratelimit-remaining-requests"
_REMAINING_TOKENS = "x-ratelimit-remaining-tokens"
_HEADERS = {
    "limit_requests": "x-ratelimit-limit-requests",
    "limit_tokens": "x-ratelimit-limit-tokens",
    "remaining_requests": "x-ratelimit-remaining-requests",
    "remaining_tokens": "x-ratelimit-remaining-tokens",
}
_RESETS = {
    "reset_requests_ms": "x-ratelimit-reset-requests",
    "reset_tokens_ms": "x-ratelimit-reset-tokens",
}
# OpenAI's durations: "1s", "6m0s", "20ms", "1h2m3.5s"; a bare number is seconds.
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_MS = {"h": 3_600_000.0, "m": 60_000.0, "s": 1000.0, "ms": 1.0}
_MAX_MS = 7 * 24 * 3_600_000  # a reset further off than a week is not believed


def parse_duration_ms(text: str) -> int | None:
    """Read a reset time (``"6m0s"``, ``"20ms"``, ``"1.5"`` seconds) in milliseconds.

    Returns ``None`` for text that is not a duration.
    """
    text = text.strip().lower()
    try:
        return _bounded(float(text) * 1000)
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        end = match.end()
    if end == 0 or end != len(text):
        return None
    return _bounded(total)


def _bounded(ms: float) -> int | None:
    if not 0 <= ms <= _MAX_MS:
        return None
    return round(ms)


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def rate_limit_of(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The ``rate_limit`` extension of a reply with these headers; ``None`` if it states
    neither remaining requests nor remaining tokens (every provider that sends the
    headers sends those).

    ``headers`` is a case-insensitive mapping (a ``requests`` response's); a value that
    does not parse is left out rather than guessed.
    """
    # On every reply's path: a reply without the two "remaining" headers costs two lookups.
    if _REMAINING_REQUESTS not in headers and _REMAINING_TOKENS not in headers:
        return None
    values: dict[str, int | None] = {
        field: _count(headers.get(name)) for field, name in _HEADERS.items()
    }
    for field, name in _RESETS.items():
        text = headers.get(name)
        values[field] = None if text is None else parse_duration_ms(text)
    if all(value is None for value in values.values()):
        return None
    return RateLimitInfo(**values)
