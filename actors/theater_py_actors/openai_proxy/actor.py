"""The OpenAI proxy actor: genai-types requests served by any OpenAI-compatible API.

One actor serves many requests at once: ``handle_request`` turns a request into the
provider's JSON on the actor's thread (cheap), then hands the HTTP call to a bounded
pool and returns a future of the reply, so the mailbox never waits on the network.
Upstream failures come back as ``{"Error": {...}}`` replies, never as crashes; so does
anything a pool thread raises, scrubbed.

``{"ListModels": {"live": true}}`` goes to the provider's ``GET /models`` the same way,
through the pool, the client and the deadline.

Each call is an :class:`~theater_py_actors.openai_proxy.upstream_call.UpstreamCall` from the moment
it is accepted: at its deadline the caller is answered ``timeout`` and the call is
abandoned, as it is when the caller stops waiting (the runtime cancels the reply future)
or the actor is stopped for good. Past ``max_queued_requests`` waiting for the pool, a
request is answered ``overloaded`` at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from theater_py import Actor, ActorChannel, ActorContext, MessageDecodeError
from theater_py._http import url_without_secrets
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    ModelList,
    ProxyRequest,
    ProxyResponse,
    ProxyStreamMessage,
)
from theater_py_actors.openai_proxy.cache import CompletionCache
from theater_py_actors.openai_proxy.catalog import load_catalog
from theater_py_actors.openai_proxy.client import ChatClient, ChatResult
from theater_py_actors.openai_proxy.config import parse_init, read_api_key
from theater_py_actors.openai_proxy.convert import (
    ResponseFormatError,
    from_chat_response,
    to_chat_request,
)
from theater_py_actors.openai_proxy.errors import ProviderError, error_reply
from theater_py_actors.openai_proxy.stream_job import StreamJob
from theater_py_actors.openai_proxy.streaming import deltas_of

if TYPE_CHECKING:
    from theater_py_actors.genai_types import ModelInfo
    from theater_py_actors.openai_proxy.config import ProxyConfig, Timeouts
    from theater_py_actors.openai_proxy.upstream_call import UpstreamCall

    _Job = Callable[[UpstreamCall], ProxyResponse]

__all__ = ["OpenAIProxyActor"]

# What Python says when a Jinja chat template adds a list of content parts to a string:
# llama-cpp-python answers it with a 500 for a model whose template wants text.
_NO_ARRAYS = 'can only concatenate str (not "list") to str'
_MAX_NO_ARRAYS = 1024


class OpenAIProxyActor(Actor):
    """Serves ``ListModels`` and ``GenerateCompletion`` from an OpenAI-compatible API.

    Its init state is ``{"store_id": ..., "config": {...}}`` (see
    :class:`~theater_py_actors.openai_proxy.config.ProxyConfig`); the API key is read once, at
    init, from the environment variable ``config.api_key_env`` through the
    ``environment`` capability, and is kept only inside the HTTP client.
    """

    request_type = ProxyRequest
    response_type = ProxyResponse
    channel_type = ProxyStreamMessage

    def init(self, ctx: ActorContext, state: Any) -> None:
        """Read the configuration and the API key; set up the client, pool and cache.

        Raises:
            ConfigError: the configuration is invalid, or the key's variable is unset or
                empty (the error names the variable, never a value).
        """
        settings = parse_init(state)
        config = settings.config
        api_key = read_api_key(config.api_key_env, ctx.env.get(config.api_key_env))
        self.config: ProxyConfig = config
        self._log = ctx.log
        self.client = ChatClient(
            ctx.http,
            base_url=config.base_url,
            api_key=api_key,
            timeout_ms=config.timeouts_for(reasoning=False).attempt_ms,
            retry=config.retry_config,
            max_connections=config.max_concurrent_requests,
            headers=config.headers,
            query=config.extra_query,
            max_response_bytes=config.max_response_bytes,
        )
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.max_concurrent_requests, thread_name_prefix=f"{ctx.name}-http"
        )
        # Admission: the requests running plus those queued for a pool thread.
        self._capacity = config.max_concurrent_requests + config.queued_limit
        self._slots = threading.Semaphore(self._capacity)
        store = None
        if settings.store_id is not None and config.max_cache_size > 0:
            store = ctx.store
            store.new_store(settings.store_id)
        self.cache = CompletionCache(config.max_cache_size, store, settings.store_id)
        self.catalog = load_catalog()
        self.models: list[ModelInfo] = self.catalog.for_base_url(config.base_url, config.models)
        self._adaptations_noted: set[tuple[str, str]] = set()
        # Models whose chat template failed on content parts: they get strings from then on.
        self._no_arrays: set[str] = set()
        # The open streams, by channel id: a caller closing one hangs up on the provider.
        self._streams: dict[str, StreamJob] = {}
        self._streams_lock = threading.Lock()
        ctx.log.info(
            "serving %s (default model %s)",
            url_without_secrets(config.base_url),
            config.default_model,
        )

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        """Answer ``ListModels`` at once; a live one and ``GenerateCompletion`` from the pool."""
        if isinstance(message, ListModels):
            if message.live:
                return self._submit(self._list_live, self.config.timeouts_for(reasoning=False))
            return ModelList(models=list(self.models))
        if isinstance(message, GenerateCompletion):
            return self._generate(ctx, message)
        return ErrorResponse(error=f"unsupported request {message!r}", kind="invalid_request")

    def _generate(self, ctx: ActorContext, message: GenerateCompletion) -> Any:
        prepared = self._prepare(ctx, message)
        if not isinstance(prepared, _Prepared):
            return prepared
        cached = self._cached(prepared.cache_key)
        if cached is not None:
            return Completion(completion=cached)
        job = functools.partial(
            self._call_upstream, prepared.body, prepared.cache_key, prepared.fallback
        )
        return self._submit(job, prepared.timeouts)

    def _cached(self, key: str | None) -> CompletionResponse | None:
        return None if key is None else self.cache.get(key)

    def _prepare(self, ctx: ActorContext, message: GenerateCompletion) -> _Prepared | ErrorResponse:
        """The provider's request for ``message``, or why there is none."""
        request = message.request
        if not request.messages and not request.system:
            return ErrorResponse(
                error="invalid request: GenerateCompletion.request.messages: "
                "at least one message (or a system prompt) is required",
                kind="invalid_request",
            )
        config = self.config
        model = request.model or config.default_model
        rules = self.catalog.rules_for(config.base_url, model, config.token_limit_param)
        content_format = config.content_format
        if model in self._no_arrays:
            content_format = "String"
        chat = to_chat_request(
            request,
            default_model=config.default_model,
            content_format=content_format,
            rules=rules,
        )
        if chat.lossy and config.strict_params:
            return ErrorResponse(
                error=f"invalid request: model {model} does not accept it as is "
                f"(strict_params): {'; '.join(map(str, chat.lossy))}",
                kind="invalid_request",
            )
        new = [a for a in chat.adaptations if (model, a.param) not in self._adaptations_noted]
        if new:  # one line per model, and again only for a parameter not reported yet
            self._adaptations_noted.update((model, a.param) for a in new)
            ctx.log.info("adapted the request to model %s: %s", model, "; ".join(map(str, new)))
        key = CompletionCache.key_for(chat.body, config.base_url)
        fallback = None
        if content_format == "Array":
            fallback = functools.partial(self._strings_instead, request, model, chat.body)
        return _Prepared(
            chat.body,
            key,
            fallback,
            _within(config.timeouts_for(rules.reasoning), message.max_total_timeout_ms),
            "stream_options" not in rules.unsupported,
        )

    # -- streaming -------------------------------------------------------------------------

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        """Stream a completion: ``{"GenerateCompletion": {"request": ...}}``.

        The channel gets its deltas, then one ``Completion`` or ``Error``, then closes
        (see :mod:`.stream_job`). Any other message is refused.
        """
        if not isinstance(message, GenerateCompletion):
            raise ValueError(  # a refusal, with this reason
                'open a stream with {"GenerateCompletion": {"request": ...}}'
            )
        prepared = self._prepare(ctx, message)
        if not isinstance(prepared, _Prepared):
            _finish(channel, prepared)
            return True
        cached = self._cached(prepared.cache_key)
        if cached is not None:
            for delta in deltas_of(cached):
                channel.send(delta)  # a completion's blocks: fewer than a buffer holds
            _finish(channel, Completion(completion=cached))
            return True
        job = StreamJob(self, channel, prepared)
        channel.set_farewell(
            ErrorResponse(
                error="cancelled: the proxy was stopped while it streamed the completion",
                kind="cancelled",
            )
        )
        with self._streams_lock:
            self._streams[channel.id] = job
        reply = self._submit(job.run, prepared.timeouts, on_abandon=job.abandoned)
        if isinstance(reply, ErrorResponse):  # overloaded, or the proxy is stopping
            self.forget_stream(channel)
            _finish(channel, reply)
        else:
            job.reply = reply
        return True

    def handle_channel_close(self, ctx: ActorContext, channel: ActorChannel) -> None:
        """The caller left: hang up on the provider now (nothing more is billed)."""
        job = self.forget_stream(channel)
        if job is not None:
            job.cancel()

    def forget_stream(self, channel: ActorChannel) -> StreamJob | None:
        """Drop the stream of ``channel`` from the open ones; return it, if it was."""
        with self._streams_lock:
            return self._streams.pop(channel.id, None)

    def _submit(
        self,
        job: _Job,
        timeouts: Timeouts,
        on_abandon: Callable[[UpstreamCall], object] | None = None,
    ) -> Any:
        """Queue an upstream call, ``job``; its deadline runs from now, not from when it
        starts."""
        if not self._slots.acquire(blocking=False):
            return ErrorResponse(
                error=f"overloaded: {self._capacity} requests are already running or queued "
                "(max_concurrent_requests + max_queued_requests); retry later",
                kind="overloaded",
            )
        # The runtime waits on this future, not the pool's: cancelling it (the caller
        # gave up) must work while the call runs, and the deadline may answer it early.
        reply: concurrent.futures.Future[ProxyResponse] = concurrent.futures.Future()
        call = self.client.start(
            on_abandon or functools.partial(self._abandoned, reply),
            timeout_ms=timeouts.attempt_ms,
            total_timeout_ms=timeouts.total_ms,
        )
        reply.add_done_callback(functools.partial(_abandon_if_cancelled, call))
        try:
            self.pool.submit(self._run, reply, call, job)
        except RuntimeError:  # the pool is shut down: this incarnation is ending
            call.end()
            self._slots.release()
            return ErrorResponse(error="connection: the proxy is stopping", kind="connection")
        return reply

    def _abandoned(
        self, reply: concurrent.futures.Future[ProxyResponse], call: UpstreamCall
    ) -> None:
        # On the watchdog's thread (deadline), the caller's (it left) or the stopping one.
        if call.reason != "cancelled":  # a cancelled reply has nobody to tell
            _settle(reply, error_reply(self.client.abandoned_error(call)))

    def _run(
        self, reply: concurrent.futures.Future[ProxyResponse], call: UpstreamCall, job: _Job
    ) -> None:
        try:
            if not reply.done():  # else it was cancelled or timed out while queued
                _settle(reply, self._complete(job, call))
        finally:
            call.end()
            self._slots.release()

    def _complete(self, job: _Job, call: UpstreamCall) -> ProxyResponse:
        # Runs on a pool thread: everything it touches is thread-safe. Nothing may escape
        # it: the runtime would copy the exception's text, which can quote a header or a
        # body, into the caller's ActorFailed, the chain and the log.
        try:
            return job(call)
        except BaseException as exc:  # noqa: BLE001 -- the boundary of the pool thread
            detail = self.client.redact(f"{type(exc).__name__}: {exc}")
            self._log.error("upstream call failed unexpectedly: %s", detail)
            return ErrorResponse(
                error=f"invalid_response: the proxy could not handle the reply: {detail}",
                kind="invalid_response",
            )

    def _list_live(self, call: UpstreamCall) -> ProxyResponse:
        """Ask the provider for its models; describe them with what the catalog knows."""
        try:
            result = self.client.list_models(call)
        except ProviderError as error:
            return error_reply(error)
        listed = self.catalog.merge_live(
            self.config.base_url, result.body["data"], self.config.models
        )
        return ModelList(models=listed)

    def _strings_instead(
        self, request: CompletionRequest, model: str, body: dict[str, Any], error: ProviderError
    ) -> dict[str, Any] | None:
        """The body with text content as strings, if the provider's chat template just
        failed on content parts (and there were some to flatten); else ``None``.

        Runs on a pool thread; it remembers the model, so that the next requests to it
        go as strings from the start.
        """
        if error.status is None or error.status < 500 or _NO_ARRAYS not in error.message:
            return None
        config = self.config
        flat = to_chat_request(
            request,
            default_model=config.default_model,
            content_format="String",
            rules=self.catalog.rules_for(config.base_url, model, config.token_limit_param),
        ).body
        if flat == body:
            return None  # nothing was an array of text: the failure is something else
        if model not in self._no_arrays:
            if len(self._no_arrays) >= _MAX_NO_ARRAYS:
                self._no_arrays.clear()  # model ids come from requests: stay bounded
            self._no_arrays.add(model)
            self._log.warning(
                "model %s failed on content as a list of parts (HTTP %s, its chat template "
                "wants text): sending text-only content to it as strings from now on",
                model,
                error.status,
            )
        return flat

    def _call_upstream(
        self,
        body: dict[str, Any],
        cache_key: str | None,
        fallback: Callable[[ProviderError], dict[str, Any] | None] | None,
        call: UpstreamCall,
    ) -> ProxyResponse:
        try:
            result = self.client.complete(body, call, fallback=fallback)
        except ProviderError as error:
            return error_reply(error)
        return self.completion_of(result, body["model"], cache_key)

    def completion_of(
        self,
        result: ChatResult,
        requested_model: str,
        cache_key: str | None,
        arrange: Callable[[CompletionResponse], CompletionResponse] | None = None,
    ) -> Completion | ErrorResponse:
        """The reply to a request whose provider answered ``result``; cached if it can be.

        ``arrange`` adjusts the completion before it is cached (a stream's block order).
        Thread-safe: pool threads call it.
        """
        model = result.body.get("model") if isinstance(result.body, dict) else None
        pricing = self.catalog.pricing_for(model or requested_model, self.config.models)
        try:
            completion = from_chat_response(
                result.body, pricing=pricing, request_id=result.request_id
            )
        except ResponseFormatError as error:
            return ErrorResponse(
                error=f"invalid_response: {error}",
                kind="invalid_response",
                status=result.status,
                request_id=result.request_id,
                attempts=result.attempts,
            )
        if arrange is not None:
            completion = arrange(completion)
        if cache_key is not None:
            self.cache.put(cache_key, completion)
        return Completion(completion=completion, rate_limit=result.rate_limit)

    def on_decode_error(self, ctx: ActorContext, error: MessageDecodeError) -> ProxyResponse:
        """Answer a malformed request with ``kind: invalid_request`` naming the field."""
        return ErrorResponse(error=f"invalid request: {error}", kind="invalid_request")

    def on_stop(self, ctx: ActorContext) -> None:
        """Let accepted requests finish across a restart; answer them at once on a stop.

        After a crash the next incarnation serves new requests while this one's calls
        already on the pool run to their end (no request is lost). When the actor is
        stopped for good, every call is abandoned: a backoff ends, a running attempt's
        connection is shut down, calls not yet started are dropped, and every caller
        hears back at once.
        """
        client = getattr(self, "client", None)
        pool = getattr(self, "pool", None)
        if client is None or pool is None:
            return  # init failed before setting them up
        if ctx.stopping.is_set():
            client.close()
            pool.shutdown(wait=False, cancel_futures=True)
            return
        threading.Thread(
            target=_close_when_drained, args=(pool, client), name=f"{ctx.name}-drain", daemon=True
        ).start()


@attrs.frozen
class _Prepared:
    """A completion request made ready for the provider."""

    body: dict[str, Any]
    cache_key: str | None
    fallback: Callable[[ProviderError], dict[str, Any] | None] | None
    timeouts: Timeouts
    usage_in_stream: bool
    """The provider's rules allow ``stream_options.include_usage``."""


def _within(timeouts: Timeouts, total_ms: int | None) -> Timeouts:
    """``timeouts`` cut to a request's own deadline, ``total_ms``, when it gives one."""
    if total_ms is None or total_ms >= timeouts.total_ms:
        return timeouts
    total_ms = max(total_ms, 1)
    return attrs.evolve(timeouts, total_ms=total_ms, attempt_ms=min(timeouts.attempt_ms, total_ms))


def _finish(channel: ActorChannel, last: ProxyStreamMessage) -> None:
    """Send the stream's last message and close the channel (if the caller is still there)."""
    channel.send(last)
    channel.close()


def _settle(reply: concurrent.futures.Future[ProxyResponse], response: ProxyResponse) -> None:
    # The first answer wins: the deadline's, the call's own, or a cancellation.
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        reply.set_result(response)


def _abandon_if_cancelled(call: UpstreamCall, reply: concurrent.futures.Future[Any]) -> None:
    if reply.cancelled():  # the runtime cancels it when the caller stops waiting
        call.abandon("cancelled")


def _close_when_drained(pool: concurrent.futures.ThreadPoolExecutor, client: ChatClient) -> None:
    pool.shutdown(wait=True)
    client.close()
