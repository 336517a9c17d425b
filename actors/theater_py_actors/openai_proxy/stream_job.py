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

Cost per chunk: the first delta goes out at once, and the reading thread then pauses
(:data:`_HAND_OVER` s) so that the caller's thread, woken for it, gets the GIL at once
rather than after the interpreter's switch interval (5 ms) while this thread parses on.
After it, text deltas are gathered into one ``Delta`` per run of the same block, sent
before anything else and whenever the client is about to wait for the provider (nothing
more is in the socket's buffer) or has read 16 times (``StreamState.on_read``): a
provider that writes faster than the proxy reads costs one channel message (an encoding,
a digest, a thread wake-up) each time the proxy catches up instead of one per chunk, and
one that paces its tokens still gets one per token.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from theater_py import RequestTimeout
from theater_py_actors.genai_types import (
    Completion,
    CompletionResponse,
    Delta,
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

_HAND_OVER = 0.0002
"""Seconds the reading thread pauses after the first delta, for the caller to take it."""


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
        self._call: UpstreamCall | None = None
        self._attempt = 0  # the attempt whose chunks the assembler holds
        self._lock = threading.Lock()
        self._over = False
        self._flowing = False
        # Text deltas gathered and not sent yet: (block index, pieces), in order.
        self._held: list[tuple[int, list[str]]] = []
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
        self._call = call
        prepared = self._prepared
        body = {**prepared.body, "stream": True}
        if prepared.usage_in_stream:
            body["stream_options"] = {"include_usage": True}
        config = self._proxy.config
        state = StreamState(
            self._on_chunks,
            idle_timeout_ms=config.stream_idle_timeout_ms,
            max_stream_ms=config.max_stream_ms,
            on_read=self._on_read,
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
        if self._release():
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
                    partial_text=self._partial_text(),
                ),
                wait=False,
            )

    def cancel(self) -> None:
        """The caller closed the channel: abandon the call (it hangs up at once)."""
        with self._lock:
            self._over = True
        if self.reply is not None:
            self.reply.cancel()

    def _on_chunks(self, chunks: list[dict[str, Any]]) -> bool:
        if not self._flowing:
            self._read_this_attempt()
        position, count = 0, len(chunks)
        assembler = self._assembler
        while position < count:
            if self._flowing:  # most chunks: text to gather, read without making a Delta
                taken, index, text = assembler.add_texts(chunks, position)
                if text:
                    self._hold(index, text)
                position += taken
                if position == count:
                    break
            if not self._on_chunk(chunks[position]):
                break  # the caller left: the call is abandoned
            position += 1
        return self._flowing

    def _read_this_attempt(self) -> None:
        """Before text flows, the first chunk of another attempt (a retry, a fallback)
        starts the answer over: what a failed one read (its id and usage, text held back
        as a possible start of the key) is not this answer's."""
        call = self._call
        if call is not None and call.attempts != self._attempt:
            if self._attempt:
                self._assembler = StreamAssembler(self._proxy.client.secrets)
            self._attempt = call.attempts

    def _on_chunk(self, chunk: dict[str, Any]) -> bool:
        """Read a chunk that is more than text; whether the caller is still there."""
        for delta in self._assembler.add(chunk):
            if self._flowing and type(delta) is Delta:
                self._hold(delta.index, delta.text)
                continue
            if not (self._release() and self._send(delta)):
                self._caller_left()
                return False
            if not self._flowing:
                self._flowing = True
                time.sleep(_HAND_OVER)  # see the module's docstring
        return True

    def _on_read(self) -> None:
        if not self._release():
            self._caller_left()

    def _caller_left(self) -> None:
        if self.reply is not None:
            self.reply.cancel()  # abandon the call: it hangs up

    def _hold(self, index: int, text: str) -> None:
        with self._lock:  # the watchdog's thread reads it for partial_text
            held = self._held
            if held and held[-1][0] == index:
                held[-1][1].append(text)
            else:
                held.append((index, [text]))

    def _release(self) -> bool:
        """Send the gathered deltas; whether the caller is still there."""
        if not self._held:
            return True
        with self._lock:
            held, self._held = self._held, []
        return all(self._send(Delta(index, "".join(pieces))) for index, pieces in held)

    def _partial_text(self) -> str | None:
        """The text the caller was sent (not what is gathered yet), once text flowed."""
        if not self._flowing:
            return None
        text = self._assembler.partial_text
        index = self._assembler.text_index
        with self._lock:
            unsent = sum(len(p) for i, pieces in self._held if i == index for p in pieces)
        return text[: len(text) - unsent]

    def _send(self, message: ProxyStreamMessage) -> bool:
        if self._over:
            return False
        try:
            return self._channel.send(message)
        except RequestTimeout:  # the caller stopped reading: give up on it
            self._channel.close()
            return False

    def _fail(self, error: ProviderError, *, wait: bool = True) -> ErrorResponse:
        if wait and not self._over:
            self._release()  # on the reading thread: what was gathered goes first
        reply = error_reply(error, self._partial_text())
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
