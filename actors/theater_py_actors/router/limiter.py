"""A provider's rate limiter: requests and tokens per minute, from config and headers.

Each limit is a token bucket that holds a minute's worth and refills continuously. The
provider's own ``x-ratelimit-*`` headers (the proxy's ``rate_limit`` extension) correct
it: a bucket never holds more than the provider says remains, and one the provider says
is empty stays empty until its stated reset. A ``429`` with ``Retry-After`` closes the
provider for that long. So the router never sends what the provider is known to refuse.

:meth:`RateLimiter.take` either takes capacity at once or says how long until there is
some; the caller decides whether that wait fits its deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from theater_py_actors.genai_types import RateLimitInfo

__all__ = ["RateLimiter"]


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp", "until")

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self.rate = capacity / 60.0  # per second
        self.stamp = now
        self.until = 0.0  # empty until then, whatever the refill says (a stated reset)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` can be taken (0: now)."""
        if now < self.until:
            return self.until - now
        amount = min(
            amount, self.capacity
        )  # a request larger than a minute's worth waits for a full one
        if self.level >= amount:
            return 0.0
        return (amount - self.level) / self.rate

    def observe(
        self, limit: int | None, remaining: int | None, reset_ms: int | None, now: float
    ) -> None:
        if limit is not None and limit > 0 and limit != self.capacity:
            self.capacity = float(limit)
            self.rate = limit / 60.0
            self.level = min(self.level, self.capacity)
        if remaining is not None:
            self.level = min(self.level, float(remaining))
            if remaining <= 0 and reset_ms is not None:
                self.until = max(self.until, now + reset_ms / 1000)


class RateLimiter:
    """Requests and tokens per minute for one provider.

    Args:
        rpm: requests per minute, or ``None`` until the provider's headers say.
        tpm: tokens per minute, or ``None`` likewise.
        clock: a monotonic clock in seconds (injected in tests).
    """

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._requests = None if rpm is None else _Bucket(float(rpm), now)
        self._tokens = None if tpm is None else _Bucket(float(tpm), now)
        self._closed_until = 0.0

    def take(self, tokens: int) -> float:
        """Take one request and ``tokens`` tokens if both are there now, and return 0;
        otherwise take nothing and return the seconds until both would be."""
        if self._requests is None and self._tokens is None and not self._closed_until:
            return 0.0  # no limit known yet: nothing to count
        with self._lock:
            now = self._clock()
            wait = self._closed_until - now
            buckets = [b for b in (self._requests, self._tokens) if b is not None]
            for bucket in buckets:
                bucket.refill(now)
            if self._requests is not None:
                wait = max(wait, self._requests.wait_for(1, now))
            if self._tokens is not None:
                wait = max(wait, self._tokens.wait_for(tokens, now))
            if wait > 0:
                return wait
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= min(tokens, self._tokens.capacity)
            return 0.0

    def give_back(self, tokens: int, used: int | None = None) -> None:
        """Return what a request took but did not use: ``tokens`` taken, ``used`` spent
        (``None``: it never reached the provider, so the request comes back too)."""
        if self._requests is None and self._tokens is None:
            return
        with self._lock:
            if self._tokens is not None:
                unused = tokens if used is None else max(tokens - used, 0)
                self._tokens.level = min(self._tokens.capacity, self._tokens.level + unused)
            if used is None and self._requests is not None:
                self._requests.level = min(self._requests.capacity, self._requests.level + 1)

    def observe(self, info: RateLimitInfo) -> None:
        """Correct the buckets by what the provider's reply stated."""
        with self._lock:
            now = self._clock()
            if self._requests is None and info.limit_requests:
                self._requests = _Bucket(float(info.limit_requests), now)
            if self._tokens is None and info.limit_tokens:
                self._tokens = _Bucket(float(info.limit_tokens), now)
            if self._requests is not None:
                self._requests.refill(now)
                self._requests.observe(
                    info.limit_requests, info.remaining_requests, info.reset_requests_ms, now
                )
            if self._tokens is not None:
                self._tokens.refill(now)
                self._tokens.observe(
                    info.limit_tokens, info.remaining_tokens, info.reset_tokens_ms, now
                )

    def close_for(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the provider answered 429 with ``Retry-After``)."""
        with self._lock:
            self._closed_until = max(self._closed_until, self._clock() + seconds)
