"""One streamed completion of the proxy: from the provider's event stream to a channel.

The proxy opens a :class:`StreamJob` per channel and runs it on the same bounded pool
as plain requests, as an :class:`~.upstream_call.UpstreamCall` with the same deadline.
It sends the caller, in order, the deltas the chunks make, then exactly one
``Completion`` (made as a plain request's, usage and cost included) or ``Error``, and
closes the channel. Whoever ends the stream first sends the last message: the job
itself, its deadline (from the watchdog's thread), or nobody when the caller left.

Before the first delta reaches the caller the call retries as a plain one and its total
deadline applies; after it, nothing is retried and a failure ends the stream with an
``Error`` carrying the text sent so far (``partial_text``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from theater_py import RequestTimeout
from theater_py_actors.genai_types import (
    Completion,
    CompletionResponse,
    ErrorResponse,
    ProxyResponse,
    ProxyStreamMessage,
    Retrying,
)
from theater_py_actors.openai_proxy.client import StreamState
from theater_py_actors.openai_proxy.errors import ProviderError, error_reply
from theater_py_actors.openai_proxy.streaming import StreamAssembler, deltas_of

if TYPE_CHECKING:
    from theater_py import ActorChannel
    from theater_py_actors.openai_proxy.client import ChatClient, ChatResult
    from theater_py_actors.openai_proxy.config import ProxyConfig, Timeouts
    from theater_py_actors.openai_proxy.upstream_call import UpstreamCall

__all__ = ["StreamJob"]

logger = logging.getLogger(__name__)


class _Prepared(Protocol):
    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def cache_key(self) -> str | None: ...
    @property
    def fallback(self) -> Callable[[ProviderError], dict[str, Any] | None] | None: ...
    @property
    def timeouts(self) -> Timeouts: ...
    @property
    def usage_in_stream(self) -> bool: ...


class _Proxy(Protocol):
    client: ChatClient
    config: ProxyConfig

    def completion_of(
        self,
        result: ChatResult,
        requested_model: str,
        cache_key: str | None,
        arrange: Callable[[CompletionResponse], CompletionResponse] | None = None,
    ) -> Completion | ErrorResponse: ...

    def forget_stream(self, channel: ActorChannel) -> object: ...


class StreamJob:
    """Streams one completion into ``channel``; :meth:`run` on a pool thread."""

    def __init__(self, proxy: _Proxy, channel: ActorChannel, prepared: _Prepared) -> None:
        self._proxy = proxy
        self._channel = channel
        self._prepared = prepared
        self._assembler = StreamAssembler(proxy.client.secrets)
        self._lock = threading.Lock()
        self._over = False
        self._flowing = False
        self.reply: concurrent.futures.Future[Any] | None = None
        """The pool's reply future; cancelling it abandons the call, even while queued."""

    def run(self, call: UpstreamCall) -> ProxyResponse:
        """Stream the completion (on a pool thread); return the last message sent.

        Nothing escapes: an unexpected exception ends the stream with an ``Error`` whose
        text is scrubbed (it could quote a header or a body).
        """
        try:
            return self._stream(call)
        except Exception as exc:  # noqa: BLE001 -- the boundary of the pool thread
            detail = self._proxy.client.redact(f"{type(exc).__name__}: {exc}")
            logger.error("a streamed completion failed unexpectedly: %s", detail)
            return self._fail(
                ProviderError(
                    "invalid_response", f"the proxy could not handle the stream: {detail}"
                )
            )

    def _stream(self, call: UpstreamCall) -> ProxyResponse:
        prepared = self._prepared
        body = {**prepared.body, "stream": True}
        if prepared.usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        config = self._proxy.config
        state = StreamState(
            self._on_chunk,
            idle_timeout_ms=config.stream_idle_timeout_ms,
            max_stream_ms=config.max_stream_ms,
        )
        fallback = prepared.fallback
        try:
            result = self._proxy.client.stream(
                body,
                call,
                state,
                fallback=None if fallback is None else _streaming(fallback, body),
                on_retry=self._on_retry,
            )
        except ProviderError as error:
            return self._fail(error)
        if not result.streamed:  # the provider ignored "stream": a whole reply
            reply = self._proxy.completion_of(result, body["model"], prepared.cache_key)
            if isinstance(reply, Completion):
                for delta in deltas_of(reply.completion):
                    if not self._send(delta):
                        return reply
            return self._end(reply)
        assembler = self._assembler
        for delta in assembler.finish():
            if not self._send(delta):
                break
        if assembler.chunks == 0:
            return self._fail(
                ProviderError(
                    "invalid_response",
                    "the stream ended before any chunk",
                    status=result.status,
                    request_id=result.request_id,
                    attempts=result.attempts,
                )
            )
        streamed = attrs.evolve(result, body=assembler.body())
        reply = self._proxy.completion_of(
            streamed, body["model"], prepared.cache_key, arrange=assembler.order
        )
        return self._end(reply)

    def _on_retry(self, delay_s: float, reason: str, attempt: int, max_attempts: int) -> None:
        """Tell the caller of a retry, as the proxy logs it: a caller in another process
        (``theater-py chat NAME``) sees no log of this one."""
        self._send(Retrying(delay_s, reason, attempt, max_attempts))

    def abandoned(self, call: UpstreamCall) -> None:
        """The call was abandoned (its deadline, the proxy's stop): say so, unless the
        caller is the one who left.

        It runs on the watchdog's thread (or the stopping one), which must never wait
        for a slow caller: if the channel's buffer is full, the pool thread, whose read
        the abandon just ended, sends the same error instead.
        """
        if call.reason == "timeout":
            self._fail(self._proxy.client.abandoned_error(call), wait=False)
        elif call.reason == "closed":
            self._end(
                ErrorResponse(
                    error="cancelled: the proxy stopped while it streamed the completion",
                    kind="cancelled",
                    attempts=call.attempts,
                    partial_text=self._assembler.partial_text if self._flowing else None,
                ),
                wait=False,
            )

    def cancel(self) -> None:
        """The caller closed the channel: abandon the call (it hangs up at once)."""
        with self._lock:
            self._over = True
        if self.reply is not None:
            self.reply.cancel()

    def _on_chunk(self, chunk: dict[str, Any]) -> bool:
        for delta in self._assembler.add(chunk):
            if not self._send(delta):
                if self.reply is not None:
                    self.reply.cancel()  # the caller left: abandon the call
                return self._flowing
            self._flowing = True
        return self._flowing

    def _send(self, message: ProxyStreamMessage) -> bool:
        if self._over:
            return False
        try:
            return self._channel.send(message)
        except RequestTimeout:  # the caller stopped reading: give up on it
            self._channel.close()
            return False

    def _fail(self, error: ProviderError, *, wait: bool = True) -> ErrorResponse:
        reply = error_reply(error, self._assembler.partial_text if self._flowing else None)
        self._end(reply, wait=wait)
        return reply

    def _end(
        self, last: Completion | ErrorResponse, *, wait: bool = True
    ) -> Completion | ErrorResponse:
        """Send the last message and close the channel, once, whoever comes first.

        With ``wait`` false, only if the buffer has room now; else nothing happens.
        """
        channel = self._channel
        with self._lock:
            if self._over:
                return last
            if not wait:
                try:
                    channel.send(last, timeout=0)
                except RequestTimeout:
                    return last  # a full buffer: the pool thread will end it
            self._over = True
        channel.set_farewell(None)
        self._proxy.forget_stream(channel)
        if wait:
            with contextlib.suppress(RequestTimeout):  # the caller stopped reading
                channel.send(last)
        channel.close()
        return last


def _streaming(
    fallback: Callable[[ProviderError], dict[str, Any] | None], body: dict[str, Any]
) -> Callable[[ProviderError], dict[str, Any] | None]:
    """The fallback body, streamed as the first one, ``body``, was."""
    extra: dict[str, Any] = {key: body[key] for key in ("stream", "stream_options") if key in body}

    def streamed(error: ProviderError) -> dict[str, Any] | None:
        other = fallback(error)
        return None if other is None else {**other, **extra}

    return streamed
