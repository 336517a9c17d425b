"""The HTTP client that talks to the provider, retrying as :mod:`.retry` decides.

It sends chat completions (``POST /chat/completions``) and lists the provider's models
(``GET /models``), both with the same key, headers, query parameters, retries, deadline
and redaction.

One :class:`ChatClient` serves every request of a proxy actor, from many threads at once:
a request's state is its
:class:`~theater_py_actors.openai_proxy.upstream_call.UpstreamCall` (its deadline, its
attempts), and the session's connection pool is sized so that each thread can hold its own
keep-alive connection. Every exception of an exchange becomes a :class:`ProviderError`
whose text is scrubbed of the key.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import logging
import math
import random as _random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import requests
import urllib3
from requests.auth import AuthBase

from theater_py._http import RecordingSession, url_without_secrets
from theater_py_actors.openai_proxy.arrival import arrival_check
from theater_py_actors.openai_proxy.chunked import batch_reader
from theater_py_actors.openai_proxy.config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_IDLE_TIMEOUT_MS,
    DEFAULT_TOTAL_TIMEOUT_MS,
    looks_secret,
    unsendable,
)
from theater_py_actors.openai_proxy.errors import (
    ProviderError,
    classify_response,
    excerpt,
    header_excerpt,
)
from theater_py_actors.openai_proxy.ratelimit_headers import rate_limit_of
from theater_py_actors.openai_proxy.retry import retry_delay, should_retry
from theater_py_actors.openai_proxy.sse import ServerSentEvent, SSEParser, SSETooLarge
from theater_py_actors.openai_proxy.transport import DirectSender
from theater_py_actors.openai_proxy.upstream_call import (
    AbandonableAdapter,
    UpstreamCall,
    Watchdog,
    running,
)

if TYPE_CHECKING:
    from theater_py_actors.genai_types import RateLimitInfo
    from theater_py_actors.openai_proxy.config import RetryConfig

__all__ = ["ChatCall", "ChatClient", "ChatResult", "StreamState"]

logger = logging.getLogger(__name__)

_CONFIGURATION_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


@attrs.frozen
class ChatResult:
    """A successful chat completion.

    Attributes:
        body: the provider's JSON response, a dict with a ``choices`` list.
        attempts: how many HTTP attempts it took.
        request_id: the provider's ``x-request-id``, if it sent one.
        status: the HTTP status (a 2xx).
        streamed: the reply came as an event stream, whose chunks went to
            :attr:`StreamState.on_chunks` (``body`` is then empty).
        rate_limit: the provider's ``x-ratelimit-*`` headers, read.
    """

    body: dict[str, Any]
    attempts: int
    request_id: str | None
    status: int = 200
    streamed: bool = False
    rate_limit: RateLimitInfo | None = None


class StreamState:
    """How a streamed completion goes: what reads its chunks, its limits, whether it flows.

    Args:
        on_chunks: called on the reading thread with the JSON chunks of the stream, in
            order, a list at a time (up to a read's worth; one at a time until the stream
            has started); returns whether the stream has *started*, that is whether a
            delta has reached the caller. From then on nothing is retried, the call's total deadline
            no longer applies (``max_stream_ms`` does, if set), and a failure is final.
        idle_timeout_ms: the longest silence between two reads of the stream.
        max_stream_ms: a cap on the whole stream from the call's start, or ``None``.
        on_read: called on the reading thread when a read may wait (nothing more has
            arrived in the socket), and after :data:`_MAX_GATHERED_READS` reads: what
            ``on_chunks`` gathered can go.
    """

    __slots__ = ("idle_timeout_ms", "max_stream_ms", "on_chunks", "on_read", "started")

    def __init__(
        self,
        on_chunks: Callable[[list[dict[str, Any]]], bool],
        *,
        idle_timeout_ms: int = DEFAULT_STREAM_IDLE_TIMEOUT_MS,
        max_stream_ms: int | None = None,
        on_read: Callable[[], object] | None = None,
    ) -> None:
        self.on_chunks = on_chunks
        self.on_read = on_read
        self.idle_timeout_ms = idle_timeout_ms
        self.max_stream_ms = max_stream_ms
        self.started = False


OnRetry = Callable[[float, str, int, int], object]
"""Told of a retry: the seconds it waits, why, the attempt that follows, the most attempts."""


class ChatCall(UpstreamCall):
    """An :class:`UpstreamCall` of a :class:`ChatClient`, with the limits it runs under.

    Attributes:
        timeout: the timeout of one attempt, in seconds.
        total_ms: the deadline, in milliseconds from the call's start (for its error).
        max_attempts: the most attempts the caller allows (``None``: the client's own).
    """

    __slots__ = ("max_attempts", "streaming", "timeout", "total_ms")

    def __init__(
        self,
        deadline: float,
        on_abandon: Callable[[UpstreamCall], object] | None,
        *,
        timeout: float,
        total_ms: int,
        max_attempts: int | None = None,
    ) -> None:
        super().__init__(deadline, on_abandon)
        self.timeout = timeout
        self.total_ms = total_ms
        self.max_attempts = max_attempts
        self.streaming = False
        """Text flows: ``total_ms`` is now ``max_stream_ms`` (or the deadline is gone)."""


class _BearerAuth(AuthBase):
    """Sets the ``Authorization`` header; passing auth also keeps ``.netrc`` from replacing it."""

    __slots__ = ("value",)

    def __init__(self, api_key: str) -> None:
        self.value = f"Bearer {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.value
        return request

    def __repr__(self) -> str:
        return "<_BearerAuth [redacted]>"


def _stream_ended(
    call: UpstreamCall, request_id: str | None, response: requests.Response
) -> ChatResult:
    """The result of a stream that ended well (its chunks went to ``stream.on_chunks``)."""
    return ChatResult(
        {}, call.attempts, request_id, response.status_code, True, rate_limit_of(response.headers)
    )


def _root_cause(exc: BaseException) -> BaseException:
    # requests wraps urllib3 errors, which wrap socket errors: the innermost says what happened.
    for _ in range(8):
        reason = getattr(exc, "reason", None)
        inner = reason if isinstance(reason, BaseException) else None
        if inner is None:
            inner = next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return exc


def _is_timeout(exc: requests.RequestException) -> bool:
    if isinstance(exc, requests.Timeout):
        return True
    # A timeout while reading the body surfaces as a ConnectionError wrapping urllib3's.
    return isinstance(_root_cause(exc), urllib3.exceptions.ReadTimeoutError | TimeoutError)


class ChatClient:
    """Send chat completions to an OpenAI-compatible provider, with retries.

    Args:
        session: the session to send with (in an actor, its ``http-client`` capability).
            The client mounts on it, for ``base_url``, an adapter holding up to
            ``max_connections`` keep-alive connections, with urllib3's retries off.
        base_url: the API root, such as ``https://api.openai.com/v1``.
        api_key: the bearer token; it goes into the ``Authorization`` header only.
        timeout_ms: the timeout of one attempt (connect and each read), unless
            :meth:`start` is given another.
        retry: the retry policy; its ``max_total_timeout_ms`` is the deadline unless
            :meth:`start` is given another (``None``: ``DEFAULT_TOTAL_TIMEOUT_MS``).
        headers: more headers for every request (``OpenAI-Organization``, extra ones);
            ``Authorization`` is always the key's.
        query: query parameters for every request's URL (Azure's ``api-version``). The
            values of headers and parameters whose names look secret (``api-key``,
            ``sig``) are redacted like the key.
        max_connections: the connection pool's size (the most requests in flight at once
            that reuse connections; more still work, on throwaway connections).
        max_response_bytes: the largest body read (a reply, or one line of a stream);
            past it the attempt fails with ``invalid_response`` naming the limit.
        clock: a monotonic clock in seconds, for the deadline (its watchdog too).
        sleep: waits a number of seconds between attempts (for tests); by default the
            wait is on the call, so that abandoning it (or :meth:`close`) cuts it short.
        random: returns a number in ``[0, 1)``, for the backoff's jitter.
        wall_clock: the time in seconds since the epoch, for HTTP-date ``Retry-After``.
    """

    def __init__(
        self,
        session: requests.Session,
        *,
        base_url: str,
        api_key: str,
        timeout_ms: int,
        retry: RetryConfig,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        root = base_url.rstrip("/")
        self._url = f"{root}/chat/completions"
        self._models_url = f"{root}/models"
        self._base_url = root
        self._session = session
        # http.client sends CR LF followed by a space as a folded header line: such a key
        # would smuggle a header. Refused at each attempt (see _attempt), as http.client
        # refuses a bare CR LF, so that both become the same typed error.
        self._key_unsendable = unsendable(api_key)
        self._auth = _BearerAuth(api_key)
        extra = dict(headers or {})
        self._get_headers = {"Accept": "application/json", **extra}
        self._headers = {"Content-Type": "application/json", **self._get_headers}
        self._params = dict(query or {}) or None
        # Credentials that may travel beside the key: Azure's api-key header, a SAS sig.
        self._secrets = tuple(
            value
            for name, value in (*extra.items(), *(query or {}).items())
            if looks_secret(name) and value
        )
        self._api_key = api_key
        self._api_key_bytes = api_key.encode()
        self._all_secrets = tuple(secret for secret in (api_key, *self._secrets) if secret)
        self._max_response_bytes = max_response_bytes
        self._timeout = timeout_ms / 1000
        self._retry = retry
        total_ms = retry.max_total_timeout_ms
        self._total_ms = DEFAULT_TOTAL_TIMEOUT_MS if total_ms is None else total_ms
        self._closed = threading.Event()
        self._clock = clock
        self._sleep = sleep
        self._watchdog = Watchdog(clock, f"{url_without_secrets(root)} watchdog")
        self._random = random
        self._wall_clock = wall_clock
        self._adapter = AbandonableAdapter(
            pool_connections=max_connections,
            pool_maxsize=max_connections,
            max_retries=0,
            pool_block=False,
        )
        session.mount(f"{root}/", self._adapter)
        self._direct = DirectSender(session, self._adapter, self._params)

    def __repr__(self) -> str:
        return f"<ChatClient {url_without_secrets(self._base_url)}>"

    def redact(self, text: str) -> str:
        """Return ``text`` fit for a message, an event or a log: the key, bearer tokens and
        URL credentials masked, on one line, at most 500 characters."""
        return excerpt(self._mask_secrets(text), self._api_key)

    def _mask_secrets(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    @property
    def secrets(self) -> tuple[str, ...]:
        """The key and the other credentials a reply must never carry (to mask them)."""
        return self._all_secrets

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop the client: abandon every call (a backoff ends, a running attempt's
        connection is shut down) and fail every later one.

        The session is the caller's, and stays open.
        """
        self._closed.set()
        self._watchdog.close()
        self._adapter.close()

    def start(
        self,
        on_abandon: Callable[[UpstreamCall], object] | None = None,
        *,
        timeout_ms: int | None = None,
        total_timeout_ms: int | None = None,
        max_attempts: int | None = None,
    ) -> ChatCall:
        """Start a call now: its deadline runs from this moment.

        Pass it to :meth:`complete` or :meth:`list_models` (on any thread). Abandon it to
        stop it; the client abandons it itself, with reason ``timeout``, when the deadline
        passes.

        Args:
            on_abandon: called with the call when it is abandoned (see
                :class:`~theater_py_actors.openai_proxy.upstream_call.UpstreamCall`).
            timeout_ms: the timeout of each attempt; by default the client's.
            total_timeout_ms: the deadline; by default the client's.
            max_attempts: the most attempts (the fewer of it and ``1 + max_retries``).
        """
        total_ms = self._total_ms if total_timeout_ms is None else total_timeout_ms
        timeout = self._timeout if timeout_ms is None else timeout_ms / 1000
        call = ChatCall(
            self._clock() + total_ms / 1000,
            on_abandon,
            timeout=timeout,
            total_ms=total_ms,
            max_attempts=max_attempts,
        )
        self._watchdog.watch(call)
        return call

    def abandoned_error(self, call: UpstreamCall) -> ProviderError:
        """The error a call abandoned for ``call.reason`` fails with."""
        if call.reason == "timeout":
            limit = call.total_ms if isinstance(call, ChatCall) else self._total_ms
            if isinstance(call, ChatCall) and call.streaming:
                return ProviderError(
                    "timeout",
                    f"the stream ran past max_stream_ms ({limit})",
                    attempts=call.attempts,
                )
            return ProviderError(
                "timeout",
                f"no response within max_total_timeout_ms ({limit})",
                attempts=call.attempts,
            )
        if call.reason == "cancelled":
            return ProviderError(
                "connection",
                "request abandoned: its caller stopped waiting",
                attempts=call.attempts,
            )
        return ProviderError("connection", "client closed", attempts=call.attempts)

    def complete(
        self,
        body: Mapping[str, Any],
        call: UpstreamCall | None = None,
        *,
        fallback: Callable[[ProviderError], Mapping[str, Any] | None] | None = None,
    ) -> ChatResult:
        """Send one chat completion, retrying transient failures.

        Args:
            body: the Chat Completions request, as JSON-ready data.
            call: the call this is, from :meth:`start`; by default one started now.
            fallback: given the error an attempt failed with, returns another body to
                send at once instead, or ``None`` to go on as usual (retry or fail). It
                is consulted until it returns a body, once; the attempts that follow
                share the call's deadline and retries.

        Returns:
            The provider's response.

        Raises:
            ProviderError: the request failed, after retries where they were worth it;
                ``kind`` says why and ``attempts`` how many attempts were made. A call
                past its deadline fails with kind ``timeout``, whatever the server is
                doing; an abandoned call or a closed client with kind ``connection``.
        """
        if call is None:
            call = self.start()
        try:
            return self._exchange(
                "POST", self._url, _json(body), call, "choices", fallback=fallback
            )
        finally:
            call.end()

    def stream(
        self,
        body: Mapping[str, Any],
        call: UpstreamCall,
        stream: StreamState,
        *,
        fallback: Callable[[ProviderError], Mapping[str, Any] | None] | None = None,
        on_retry: OnRetry | None = None,
    ) -> ChatResult:
        """Send one chat completion with ``"stream": true`` in ``body``, handing each chunk
        of the event stream to ``stream.on_chunks``.

        Retries and ``fallback`` as :meth:`complete`, but only while the stream has not
        started (see :class:`StreamState`). A provider that answers with a whole JSON
        reply instead of a stream gets a plain result (``streamed`` false). ``on_retry``
        hears of each retry as it is logged, before its wait: the seconds it waits, why,
        the number of the attempt that follows, and the most attempts made.

        Raises:
            ProviderError: as :meth:`complete`; once started, the first failure, with
                ``kind: timeout`` for a silence past ``idle_timeout_ms``.
        """
        try:
            return self._exchange(
                "POST",
                self._url,
                _json(body),
                call,
                "choices",
                fallback=fallback,
                stream=stream,
                on_retry=on_retry,
            )
        finally:
            call.end()

    def list_models(self, call: UpstreamCall | None = None) -> ChatResult:
        """Ask the provider which models it serves (``GET /models``), retrying as
        :meth:`complete` does.

        Args:
            call: the call this is, from :meth:`start`; by default one started now.

        Returns:
            The provider's response, a dict with a ``data`` list.

        Raises:
            ProviderError: as :meth:`complete`.
        """
        if call is None:
            call = self.start()
        try:
            return self._exchange("GET", self._models_url, None, call, "data")
        finally:
            call.end()

    def _exchange(
        self,
        method: str,
        url: str,
        data: bytes | None,
        call: UpstreamCall,
        expect: str,
        *,
        fallback: Callable[[ProviderError], Mapping[str, Any] | None] | None = None,
        stream: StreamState | None = None,
        on_retry: OnRetry | None = None,
    ) -> ChatResult:
        """Make attempts until one succeeds, one may not be retried, or time runs out.

        ``fallback``: see :meth:`complete`; ``stream`` and ``on_retry``: see :meth:`stream`.
        """
        timeout = call.timeout if isinstance(call, ChatCall) else self._timeout
        most = self._most_attempts(call)
        while True:
            if self._closed.is_set():
                call.abandon("closed")
            left = call.deadline - self._clock()
            if left <= 0:
                call.abandon("timeout")
            if call.reason is not None:
                raise self.abandoned_error(call)
            call.attempts += 1
            attempt = call.attempts
            outcome = self._attempt(
                method, url, data, call, min(timeout, left), expect=expect, stream=stream
            )
            if isinstance(outcome, ChatResult) and call.reason is None:
                return outcome
            if call.reason is not None:
                # Whatever the attempt ended with (a body cut short, a reset), it ended
                # because the call was abandoned.
                raise self.abandoned_error(call)
            assert not isinstance(outcome, ChatResult)
            error, headers = outcome
            if stream is not None and stream.started:
                raise attrs.evolve(error, attempts=attempt)  # text flowed: never retried
            other = None if fallback is None else fallback(error)
            if other is not None:
                data, fallback = _json(other), None
                continue  # another request, not a retry of this one: no backoff
            if (
                attempt >= most
                or _generated(error)
                or not should_retry(error.kind, error.status, headers, attempt=attempt)
            ):
                raise attrs.evolve(error, attempts=attempt)
            delay = retry_delay(
                attempt - 1,
                self._retry,
                retry_after_ms=error.retry_after_ms,
                random_value=self._random(),
            )
            if delay >= call.deadline - self._clock():
                # Waiting would overrun the deadline: the caller learns now, not later.
                raise attrs.evolve(error, attempts=attempt)
            self._announce_retry(delay, error, attempt + 1, most, on_retry)
            if self._sleep is None:
                call.wait(delay)
            else:
                self._sleep(delay)

    def _refuse_key(self, method: str, url: str) -> NoReturn:
        """Fail an attempt with a key no header carries, recorded as a refused send is."""
        error = ValueError("the Authorization header holds a character no header carries")
        session = self._session
        if isinstance(session, RecordingSession):
            session.record_error(method, session.record_request(method, url), error)
        raise error

    def _most_attempts(self, call: UpstreamCall) -> int:
        """The attempts ``call`` may make: ``1 + max_retries``, or its caller's fewer."""
        most = self._retry.max_retries + 1
        if isinstance(call, ChatCall) and call.max_attempts is not None:
            most = max(1, min(most, call.max_attempts))
        return most

    def _announce_retry(
        self,
        delay: float,
        error: ProviderError,
        attempt: int,
        attempts: int,
        on_retry: OnRetry | None,
    ) -> None:
        why = _why(error)
        # WARNING, so that it shows where nobody configured logging (Python's last
        # resort handler prints it to stderr): a wait of seconds should not be silent.
        logger.warning("retrying in %.3g s: %s (attempt %d of %d)", delay, why, attempt, attempts)
        if on_retry is not None:  # a streamed call's caller hears of it too
            on_retry(delay, why, attempt, attempts)

    def _attempt(
        self,
        method: str,
        url: str,
        data: bytes | None,
        call: UpstreamCall,
        timeout: float,
        *,
        expect: str,
        stream: StreamState | None = None,
    ) -> ChatResult | tuple[ProviderError, Mapping[str, str] | None]:
        """Make one HTTP attempt: the result, or the error and the response's headers."""
        try:
            if self._key_unsendable:
                self._refuse_key(method, url)
            with running(call):
                response = self._direct.send(
                    method,
                    url,
                    data,
                    self._headers if data is not None else self._get_headers,
                    authorization=self._auth.value,
                    timeout=timeout,
                )
                if response is None:  # the session must send it (see .transport)
                    response = self._session.request(
                        method,
                        url,
                        data=data,
                        headers=self._headers if data is not None else self._get_headers,
                        params=self._params,
                        auth=self._auth,
                        timeout=timeout,
                        allow_redirects=False,
                        stream=True,  # the body is read below, bounded
                    )
        except requests.RequestException as exc:
            return self._transport_error(exc, timeout), None
        except Exception as exc:  # noqa: BLE001 -- see _unsendable
            return self._unsendable(exc), None
        try:
            with running(call):
                if stream is not None and _is_event_stream(response):
                    outcome = self._read_stream(response, call, stream)
                else:
                    content = self._read_bounded(response, call.attempts)
                    outcome = self._result(response, content, call.attempts, expect)
        except ProviderError as broken:
            return self._masked(broken), None
        except requests.RequestException as exc:
            error = self._transport_error(exc, timeout)
            if 200 <= response.status_code < 300:  # the body broke: see _generated
                error = attrs.evolve(error, status=response.status_code)
            return error, None
        finally:
            response.close()
        if isinstance(outcome, ChatResult):
            return outcome
        return self._masked(outcome), response.headers

    def _masked(self, error: ProviderError) -> ProviderError:
        """``error`` with the secret header and query values masked in its message."""
        if not self._secrets:
            return error
        return attrs.evolve(error, message=self._mask_secrets(error.message))

    def _read_bounded(self, response: requests.Response, attempt: int) -> bytes:
        """The body of ``response``, unless it is longer than ``max_response_bytes``: a
        fast endless reply would otherwise grow the proxy's memory until the deadline."""
        limit = self._max_response_bytes
        parts: list[bytes] = []
        size = 0
        for part in response.iter_content(64 * 1024):
            size += len(part)
            if size > limit:
                raise ProviderError(
                    "invalid_response",
                    f"the response body exceeds max_response_bytes ({limit})",
                    status=response.status_code,
                    attempts=attempt,
                )
            parts.append(part)
        return b"".join(parts)

    def _read_stream(
        self, response: requests.Response, call: UpstreamCall, stream: StreamState
    ) -> ChatResult | ProviderError:
        """Read an event stream to its end, handing its chunks to ``stream.on_chunks``.

        Each read waits at most ``stream.idle_timeout_ms`` (the socket's timeout is set
        to it once the headers are in: the attempt's timeout bounded the first byte).
        """
        request_id = header_excerpt(response.headers, "x-request-id", self._api_key)
        raw = response.raw
        sock = call.socket
        if isinstance(sock, socket.socket):
            sock.settimeout(stream.idle_timeout_ms / 1000)
        read1 = _reader(raw)
        parser = SSEParser(self._max_response_bytes)
        gathered = 0  # reads since on_read
        on_read = stream.on_read
        # Hand on what was gathered when a read may wait: just before a read from the
        # socket itself if it can be seen and nothing more has arrived, else when nothing
        # more has arrived after a read (one channel message per catching up, not per read).
        arrived = arrival_check(sock)
        if on_read is not None and _before_socket_reads(raw, on_read, arrived):
            arrived = _always
        while True:
            if call.reason is not None:
                return ProviderError("connection", "the stream was abandoned")
            try:
                data = read1(64 * 1024) if read1 else raw.read(1)
            except Exception as exc:  # noqa: BLE001 -- urllib3, socket and TLS errors alike
                return self._stream_error(exc, stream)
            ending: ChatResult | ProviderError | None = None
            try:
                events = parser.feed(data) if data else parser.finish()
            except SSETooLarge as too_large:  # the read's whole events still go first
                events = too_large.events
                ending = ProviderError(
                    "invalid_response",
                    f"a line of the stream exceeds max_response_bytes ({self._max_response_bytes})",
                    status=response.status_code,
                )
            if events:
                outcome = self._stream_events(events, response, request_id, call, stream)
                ending = ending if outcome is None else outcome
            if ending is not None:
                if isinstance(ending, ChatResult):
                    _keep_alive(raw, read1, sock)
                return ending
            if on_read is not None:
                gathered += 1
                if gathered >= _MAX_GATHERED_READS or not arrived():
                    on_read()
                    gathered = 0
            if not data:  # the end, with or without [DONE]
                _keep_alive(raw, read1, sock)
                return _stream_ended(call, request_id, response)

    def _stream_events(
        self,
        events: list[ServerSentEvent],
        response: requests.Response,
        request_id: str | None,
        call: UpstreamCall,
        stream: StreamState,
    ) -> ChatResult | ProviderError | None:
        """Hand the chunks of a read's events on; the outcome if an event ends the stream.

        Until the stream has started each chunk goes alone, as soon as it is read (the
        first delta is not kept waiting for the rest of the read); after, all of the
        read's chunks go in one list.
        """
        chunks: list[dict[str, Any]] = []
        secrets = self._all_secrets
        for event in events:
            text = event.data
            if text[:1] != "{" and text.strip() == "[DONE]":
                if chunks:
                    stream.on_chunks(chunks)
                return _stream_ended(call, request_id, response)
            for secret in secrets:  # a hostile upstream may echo the key
                if secret in text:
                    text = text.replace(secret, "[redacted]")
            chunk = _json_object(text)
            if chunk is None or chunk.get("error") or event.event == "error":
                if chunks:
                    stream.on_chunks(chunks)
                return self._event_error(chunk, text, response, request_id)
            if stream.started:
                chunks.append(chunk)
            elif stream.on_chunks([chunk]):
                stream.started = True
                self._flowing(call, stream)
        if chunks:
            stream.on_chunks(chunks)
        return None

    def _event_error(
        self,
        chunk: dict[str, Any] | None,
        text: str,
        response: requests.Response,
        request_id: str | None,
    ) -> ProviderError:
        """The error an event that is no chunk reports: not JSON, or an error mid-stream
        (OpenAI, vLLM, OpenRouter send one so)."""
        if chunk is None:
            return ProviderError(
                "invalid_response",
                "an event of the stream is not a JSON object",
                status=response.status_code,
                request_id=request_id,
            )
        return classify_response(
            response.status_code,
            response.headers,
            text.encode(),
            secret=self._api_key,
            now=self._wall_clock(),
        )

    def _flowing(self, call: UpstreamCall, stream: StreamState) -> None:
        """Text reached the caller: the total deadline gives way to ``max_stream_ms``."""
        if not isinstance(call, ChatCall):
            return
        start = call.deadline - call.total_ms / 1000
        call.streaming = True
        if stream.max_stream_ms is None:
            call.deadline = math.inf
            return
        call.total_ms = stream.max_stream_ms
        call.deadline = start + stream.max_stream_ms / 1000
        self._watchdog.watch(call)  # it may be sooner than the old one

    def _stream_error(self, exc: Exception, stream: StreamState) -> ProviderError:
        cause = _root_cause(exc)
        if isinstance(
            cause, urllib3.exceptions.ReadTimeoutError | TimeoutError | socket.timeout
        ) or isinstance(exc, urllib3.exceptions.ReadTimeoutError):
            return ProviderError(
                "timeout",
                f"the stream was silent for longer than stream_idle_timeout_ms "
                f"({stream.idle_timeout_ms})",
            )
        detail = self.redact(f"{type(cause).__name__}: {cause}")
        return ProviderError("connection", f"the stream broke: {detail}")

    def _result(
        self, response: requests.Response, content: bytes, attempt: int, expect: str
    ) -> ChatResult | ProviderError:
        """Read a response: a result (a JSON object with an ``expect`` list), or the
        error it reports (to retry or raise)."""
        if not 200 <= response.status_code < 300:
            return classify_response(
                response.status_code,
                response.headers,
                content,
                secret=self._api_key,
                now=self._wall_clock(),
            )
        request_id = header_excerpt(response.headers, "x-request-id", self._api_key)
        raw_content = content
        if self._api_key_bytes and self._api_key_bytes in content:
            # A hostile upstream echoing the key in a reply would put it in the chain.
            content = content.replace(self._api_key_bytes, b"[redacted]")
        try:
            document = json.loads(content)
        except ValueError:
            document = None
        if self._api_key and b"\\u" in content and document is not None:
            # JSON may spell the key with escapes (\u0073k-...), past the search above.
            text = json.dumps(document, ensure_ascii=False)
            if self._api_key in text:
                document = json.loads(text.replace(self._api_key, "[redacted]"))
        if isinstance(document, dict) and isinstance(document.get(expect), list):
            return ChatResult(
                document,
                attempt,
                request_id,
                response.status_code,
                rate_limit=rate_limit_of(response.headers),
            )
        if isinstance(document, dict) and document.get("error"):
            # Some gateways report failures with a 200: classified like the error it is.
            return classify_response(
                response.status_code,
                response.headers,
                raw_content,
                secret=self._api_key,
                now=self._wall_clock(),
            )
        if document is None:
            message = f"response body is not JSON (HTTP {response.status_code})"
        else:
            message = f"response has no {expect!r} list (HTTP {response.status_code})"
        raise ProviderError(
            "invalid_response",
            message,
            status=response.status_code,
            request_id=request_id,
            attempts=attempt,
        )

    def _unsendable(self, exc: Exception) -> ProviderError:
        # Not every failure is a requests exception: http.client raises a plain ValueError
        # for a header value it refuses, quoting the header (the key with it).
        if isinstance(exc, ValueError):
            return ProviderError(
                "configuration", f"request could not be sent: {type(exc).__name__}"
            )
        detail = self.redact(f"{type(exc).__name__}: {exc}")
        return ProviderError("connection", f"request failed: {detail}")

    def _transport_error(self, exc: requests.RequestException, timeout: float) -> ProviderError:
        if isinstance(exc, _CONFIGURATION_ERRORS):
            # Their messages can quote header values, the key among them: name the type only.
            return ProviderError(
                "configuration", f"request could not be sent: {type(exc).__name__}"
            )
        if _is_timeout(exc):
            return ProviderError("timeout", f"no response within {timeout:.3g} s")
        cause = _root_cause(exc)
        if isinstance(cause, ssl.SSLCertVerificationError):
            # Not transient: a wrong CA bundle or an impostor; a retry would only repeat it.
            return ProviderError(
                "configuration",
                self.redact(f"the provider's TLS certificate failed verification: {cause}"),
            )
        detail = self.redact(f"{type(cause).__name__}: {cause}")
        return ProviderError("connection", f"could not reach the provider: {detail}")


def _reader(raw: Any) -> Callable[[int], bytes] | None:
    """How to read a stream's body, a read at a time (``None``: one byte at a time).

    A chunked body that needs no decoding is read below urllib3, every complete HTTP
    chunk of the connection's buffer at once (see :mod:`.chunked`): urllib3's wrapper
    (content decoding, byte counts, exception wrapping) costs about twice the read itself
    per chunk, and none of it applies (an exception is read as the stream breaking either
    way, and the response's close closes the connection). Anything else goes through
    urllib3.
    """
    fp = _plain_chunked(raw)
    if fp is not None:
        return batch_reader(fp)
    read1 = getattr(raw, "read1", None)
    return None if read1 is None else functools.partial(read1, decode_content=True)


def _plain_chunked(raw: Any) -> http.client.HTTPResponse | None:
    """The ``http.client`` response under ``raw`` if its body is chunked and not encoded."""
    fp = getattr(raw, "_fp", None)
    headers = getattr(raw, "headers", None)
    encoding = "x" if headers is None else headers.get("content-encoding", "")
    if (
        isinstance(fp, http.client.HTTPResponse)
        and fp.chunked
        and encoding.strip().lower() in ("", "identity")
    ):
        return fp
    return None


def _generated(error: ProviderError) -> bool:
    """Whether the failed attempt's answer was generated: a ``2xx`` whose body timed out or
    broke. The provider bills it; another attempt would be billed again, so it is not
    retried (a ``2xx`` body reporting an error is another matter: nothing was generated)."""
    return (
        error.kind in ("timeout", "connection")
        and error.status is not None
        and 200 <= error.status < 300
    )


def _keep_alive(raw: Any, read1: Callable[[int], bytes] | None, sock: object) -> None:
    """Read what is left of a finished stream (after ``[DONE]``, the chunked body's end:
    a few bytes) and put its connection back in the pool, so the next request reuses it
    rather than connecting again (a TLS handshake, with a real provider).

    A server slow to end its body is not waited for (the completion is): its connection
    is closed with the response instead.
    """
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.settimeout(_DRAIN_TIMEOUT)
    try:
        for _ in range(16):  # a well-behaved server ends its body at once
            if read1 is None or not read1(64 * 1024):
                raw.release_conn()
                return
    except Exception:  # noqa: BLE001, S110 -- it is closed with the response then
        pass


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, or ``None`` if it is not one: ``json.loads``, minus its
    two Python calls and whitespace scans for the usual event (an object, no padding)."""
    try:
        value, end = _scan_json(text, 0)
        if end != len(text):  # padding around it, or something after it
            value = json.loads(text)
    except (ValueError, StopIteration):
        try:
            value = json.loads(text)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


_MAX_GATHERED_READS = 16
"""Reads after which a stream's gathered chunks are handed on even if more is waiting."""


def _always() -> bool:
    return True


def _before_socket_reads(raw: Any, hook: Callable[[], object], arrived: Callable[[], bool]) -> bool:
    """Call ``hook`` before each read from the socket under ``raw``'s buffer (the only
    reads that may wait for the provider) that would wait (nothing ``arrived``), if
    ``raw`` reads through that buffer; whether it will.

    Every :func:`_reader` reads through it, urllib3's ``read1`` too (a decoded body):
    that one may read the socket more than once (an HTTP chunk's size line, then its
    body; more input for a decoder that gave nothing), so a check after it cannot say
    whether it will wait. The buffer is the ``makefile`` of this one response
    (``http.client`` makes one per response), so the hook goes with it.
    """
    fp = getattr(raw, "_fp", None)
    if not isinstance(fp, http.client.HTTPResponse):
        return False
    socket_io = getattr(getattr(fp, "fp", None), "raw", None)
    if not isinstance(socket_io, socket.SocketIO):
        return False
    read = socket_io.readinto

    def readinto(buffer: Any) -> int | None:
        if not arrived():
            hook()
        return read(buffer)

    socket_io.readinto = readinto  # type: ignore[method-assign,assignment]
    return True


_DRAIN_TIMEOUT = 0.05
"""Seconds a finished stream's connection may take to end its body and be kept."""


def _is_event_stream(response: requests.Response) -> bool:
    if not 200 <= response.status_code < 300:
        return False
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "text/event-stream"


def _json(body: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProviderError(
            "invalid_request", f"request body is not JSON: {exc}", attempts=0
        ) from None


def _why(error: ProviderError) -> str:
    """Say in a few words why an attempt failed: ``429 rate limit``, ``timeout: ...``."""
    kind = error.kind.replace("_", " ")
    return f"{error.status} {kind}" if error.status is not None else f"{kind}: {error.message}"
