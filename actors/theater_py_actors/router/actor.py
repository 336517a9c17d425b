"""The router actor: one proxy's protocol in front of several providers' proxies.

It speaks exactly the proxy's protocol (``GenerateCompletion``, ``ListModels``, and
completions streamed over channels), so a caller swaps one for the other without a
change. Its providers are child proxy actors it spawns (each restarted after a crash; one
that crashes too often is given up, reported, and skipped). A request's ``model`` is a
route name or ``provider:model``; its targets are tried in order within one total
deadline, moving on after an error whose kind is in ``fallback_on``. Each reply says who
answered (``served_by``) and what was tried (``tried``).

No thread waits on a plain request: the router chains on the child's reply (see
:mod:`.routing`), so its mailbox never waits on a provider. Streams, live model lists and
rate-limit waits run on its pool (``max_concurrent_requests`` threads; past that, a stream
or a live list is answered ``overloaded`` at once).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from theater_py import (
    Actor,
    ActorChannel,
    ActorContext,
    ActorFailed,
    ActorStartError,
    ActorStopped,
    ChannelRefused,
    ManifestError,
    MessageDecodeError,
    RequestTimeout,
)
from theater_py.manifest import load_manifest
from theater_py.runtime import load_component
from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    ErrorResponse,
    GenerateCompletion,
    ListModels,
    ModelInfo,
    ModelList,
    ProxyRequest,
    ProxyResponse,
    ProxyStreamMessage,
    Retrying,
)
from theater_py_actors.openai_proxy.catalog import load_catalog
from theater_py_actors.openai_proxy.config import ConfigError
from theater_py_actors.router.config import RouterConfig, parse_router_init, parse_target
from theater_py_actors.router.dispatch import Dispatcher, Plan, Ticket
from theater_py_actors.router.estimate import estimate_input
from theater_py_actors.router.ledger import BudgetLedger
from theater_py_actors.router.limiter import RateLimiter
from theater_py_actors.router.providers import Provider
from theater_py_actors.router.routing import Routing, call_failed, timed_out

if TYPE_CHECKING:
    from theater_py import Channel

__all__ = ["RouterActor"]

logger = logging.getLogger("theater_py_actors.router")

_SLACK = 2.0  # seconds a wait on a child outlasts the child's own deadline
_LIST_TIMEOUT = 30.0


class RouterActor(Actor):
    """Routes ``GenerateCompletion`` across providers, with fallbacks, rate limits and a
    budget; init state: ``{"store_id": ..., "config": {...}}`` (see
    :mod:`~theater_py_actors.router.config`)."""

    request_type = ProxyRequest
    response_type = ProxyResponse
    channel_type = ProxyStreamMessage

    def init(self, ctx: ActorContext, state: Any) -> None:
        """Start a child proxy per provider and learn its models.

        Raises:
            ConfigError: the config is invalid (the error names the field).
        """
        init, proxies = parse_router_init(state)
        config = init.config
        _check_manifests(config)
        self.config = config
        self._total_s = config.max_total_timeout_ms / 1000
        self._stopping = threading.Event()
        catalog = load_catalog()
        providers: dict[str, Provider] = {}
        for name, spec in config.providers.items():
            # The config and the manifests were checked above: a proxy that cannot start
            # lacks something of its environment (its key's variable, mostly). Serve
            # from the others.
            handle, start_error, models = None, None, []
            try:
                handle = ctx.spawn(spec.manifest, spec.init, name=f"{ctx.name}-{name}")
            except ActorStartError as error:
                start_error = str(error)
                ctx.log.error(
                    "provider %s could not start, serving from the other providers: %s",
                    name,
                    start_error,
                )
            else:
                listed = handle.request(ListModels(), timeout=_LIST_TIMEOUT)
                models = listed.models if isinstance(listed, ModelList) else []
            limits = config.rate_limits.get(name)
            limiter = RateLimiter(
                None if limits is None else limits.rpm, None if limits is None else limits.tpm
            )
            providers[name] = Provider(
                name,
                handle,
                models,
                limiter,
                catalog,
                stream_idle_ms=proxies[name].config.stream_idle_timeout_ms,
                max_retries=proxies[name].config.retry_config.max_retries,
                start_error=start_error,
            )
        if all(provider.start_error for provider in providers.values()):
            raise ActorStartError(
                "no provider could start: "
                + "; ".join(f"{name}: {p.start_error}" for name, p in providers.items())
            )
        routes = {
            route: [parse_target(t, providers, f"config.routes.{route}") for t in targets]
            for route, targets in config.routes.items()
        }
        ledger = None
        if config.budget is not None:
            store = None
            if init.store_id is not None:
                store = ctx.store
                store.new_store(init.store_id)
            ledger = BudgetLedger(config.budget.usd, config.budget.per, store, init.store_id)
        self.dispatcher = Dispatcher(
            providers, routes, frozenset(config.fallback_on), ledger, self._stopping
        )
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.max_concurrent_requests, thread_name_prefix=f"{ctx.name}-route"
        )
        self._slots = threading.Semaphore(config.max_concurrent_requests)
        self._streams: dict[str, _StreamJob] = {}
        self._streams_lock = threading.Lock()
        ctx.log.info("routing %d route(s) over provider(s) %s", len(routes), ", ".join(providers))

    @property
    def stopping(self) -> bool:
        """Whether this incarnation is ending (its stop, or a crash)."""
        return self._stopping.is_set()

    # -- requests ------------------------------------------------------------------------

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        """Answer ``ListModels`` with the routes and every provider's models; route
        ``GenerateCompletion`` (its reply is a future the children's replies resolve)."""
        if isinstance(message, ListModels):
            if message.live:
                return self._submit(functools.partial(self._list_models, live=True))
            return self._list_models(live=False)
        if isinstance(message, GenerateCompletion):
            plan = self._plan(message)
            if isinstance(plan, ErrorResponse):
                return plan
            routing = Routing(
                self.dispatcher, message.request, plan, self._wait_on_pool, self._stopping
            )
            routing.start()
            return routing.reply
        return ErrorResponse(error=f"unsupported request {message!r}", kind="invalid_request")

    def _plan(self, message: GenerateCompletion) -> Plan | ErrorResponse:
        """The request's targets and deadline (the shorter of the config's and the
        message's own ``max_total_timeout_ms``); its clock starts now."""
        request = message.request
        dispatcher = self.dispatcher
        targets = dispatcher.targets_for(request.model)
        if isinstance(targets, ErrorResponse):
            return targets
        if not request.messages and not request.system:
            return ErrorResponse(
                error="invalid request: GenerateCompletion.request.messages: at least one "
                "message (or a system prompt) is required",
                kind="invalid_request",
            )
        total_s = self._total_s
        if message.max_total_timeout_ms is not None:
            total_s = min(total_s, max(message.max_total_timeout_ms, 1) / 1000)
        clock = dispatcher.clock
        retries = dispatcher.providers[targets[0].provider].max_retries
        tokens, all_text = estimate_input(request)
        return Plan(targets, clock() + total_s, tokens, clock, retries, all_text=all_text)

    def _submit(self, job: Any) -> Any:
        if not self._slots.acquire(blocking=False):
            return ErrorResponse(
                error=f"overloaded: {self.config.max_concurrent_requests} requests are "
                "already being routed (max_concurrent_requests); retry later",
                kind="overloaded",
            )
        try:
            future = self.pool.submit(self._guarded, job)
        except RuntimeError:  # the pool is shut down: this incarnation is ending
            self._slots.release()
            return ErrorResponse(error="connection: the router is stopping", kind="connection")
        return future

    def _guarded(self, job: Any) -> Any:
        try:
            return job()
        except Exception as exc:  # noqa: BLE001 -- the boundary of the pool thread
            # The type only: a child's text is already scrubbed, but an unexpected
            # exception's text could quote anything.
            logger.error("routing a request failed unexpectedly: %s", type(exc).__name__)
            return ErrorResponse(
                error=f"invalid_response: the router could not handle the request "
                f"({type(exc).__name__})",
                kind="invalid_response",
            )
        finally:
            self._slots.release()

    def _wait_on_pool(self, job: Callable[[], None]) -> bool:
        """Run ``job`` (a rate-limit wait, then the next step) on the pool."""
        try:
            self.pool.submit(job)
        except RuntimeError:  # the pool is shut down: this incarnation is ending
            return False
        return True

    # -- models --------------------------------------------------------------------------

    def _list_models(self, *, live: bool) -> ProxyResponse:
        """The routes, then every provider's models as ``provider:model``."""
        dispatcher = self.dispatcher
        models: list[ModelInfo] = []
        for route, targets in dispatcher.routes.items():
            first = dispatcher.providers[targets[0].provider]
            windows = [dispatcher.providers[t.provider].context_window(t.model) for t in targets]
            known = [w for w in windows if w is not None]
            models.append(
                ModelInfo(
                    id=route,
                    display_name="route: " + " -> ".join(map(str, targets)),
                    max_tokens=max(known) if known else 0,
                    provider="router",
                    pricing=first.pricing(targets[0].model),
                )
            )
        for name, provider in dispatcher.providers.items():
            listed = provider.listed
            if live and not provider.down:
                try:
                    reply = provider.handle.request(ListModels(live=True), timeout=_LIST_TIMEOUT)
                except (ActorStopped, ActorFailed, RequestTimeout) as exc:
                    reply = ErrorResponse(error=type(exc).__name__)
                if isinstance(reply, ModelList):
                    listed = reply.models
                else:
                    logger.warning("provider %s could not list its models live", name)
            models.extend(attrs.evolve(m, id=f"{name}:{m.id}") for m in listed)
        return ModelList(models=models)

    # -- streams -------------------------------------------------------------------------

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        """Stream a completion across the targets; fall back only before the first delta."""
        if not isinstance(message, GenerateCompletion):
            raise ValueError('open a stream with {"GenerateCompletion": {"request": ...}}')
        plan = self._plan(message)
        if isinstance(plan, ErrorResponse):
            channel.send(plan)
            channel.close()
            return True
        job = _StreamJob(self, channel, message.request, plan)
        channel.set_farewell(
            ErrorResponse(error="cancelled: the router was stopped", kind="cancelled")
        )
        with self._streams_lock:
            self._streams[channel.id] = job
        reply = self._submit(job.run)
        if isinstance(reply, ErrorResponse):
            self._forget(channel)
            channel.send(reply)
            channel.close()
        return True

    def handle_channel_close(self, ctx: ActorContext, channel: ActorChannel) -> None:
        """The caller left: close the child's stream too (it hangs up on the provider)."""
        job = self._forget(channel)
        if job is not None:
            job.cancel()

    def _forget(self, channel: ActorChannel) -> _StreamJob | None:
        with self._streams_lock:
            return self._streams.pop(channel.id, None)

    def on_decode_error(self, ctx: ActorContext, error: MessageDecodeError) -> ProxyResponse:
        """Answer a malformed request with ``kind: invalid_request`` naming the field."""
        return ErrorResponse(error=f"invalid request: {error}", kind="invalid_request")

    def on_stop(self, ctx: ActorContext) -> None:
        """Stop waiting for rate limits; write the budget's ledger; let routed requests end
        (their children stop)."""
        stopping = getattr(self, "_stopping", None)
        if stopping is not None:
            stopping.set()
        with getattr(self, "_streams_lock", contextlib.nullcontext()):
            jobs = list(getattr(self, "_streams", {}).values())
        for job in jobs:
            job.abandon()
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        dispatcher = getattr(self, "dispatcher", None)
        if dispatcher is not None and dispatcher.ledger is not None:
            dispatcher.ledger.close()


@attrs.frozen
class _Failed:
    """A call that got no reply from the child proxy (it crashed, stopped, or was late).

    ``unknown``: the child may have taken the call, so the provider may have billed it.
    """

    error: ErrorResponse
    unknown: bool = True


def _failed(ticket: Ticket, exc: BaseException, stopping: bool) -> _Failed:
    # A stopped child took nothing; a late or crashed one may have sent the request on.
    return _Failed(
        call_failed(ticket, exc, stopping=stopping), unknown=not isinstance(exc, ActorStopped)
    )


def _check_manifests(config: RouterConfig) -> None:
    """Load each provider's manifest and component, as its start will: a mistake in them
    is the config's, and fails the router's start rather than skipping the provider.

    Raises:
        ConfigError: naming the provider's ``manifest``.
    """
    for name, spec in config.providers.items():
        try:
            load_component(load_manifest(spec.manifest, spec.init).manifest.component)
        except (ManifestError, ActorStartError) as exc:
            raise ConfigError(f"config.providers.{name}.manifest", str(exc)) from None


class _StreamJob:
    """One streamed request: the targets in turn until a delta reaches the caller."""

    def __init__(
        self, router: RouterActor, channel: ActorChannel, request: CompletionRequest, plan: Plan
    ) -> None:
        self._router = router
        self._channel = channel
        self._request = request
        self._plan = plan
        self._lock = threading.Lock()
        self._child: Channel | None = None
        self._cancelled = False
        self._abandoned = threading.Event()  # ends a rate-limit wait

    def cancel(self) -> None:
        """The caller closed its channel (or the router stops): close the child's."""
        self._abandoned.set()
        with self._lock:
            self._cancelled = True
            child = self._child
        if child is not None:
            child.close()

    def abandon(self) -> None:
        """The router stops: end a rate-limit wait (the channel gets the farewell)."""
        self._abandoned.set()

    def run(self) -> None:
        """Stream from the targets in turn (on a pool thread); end the caller's channel."""
        try:
            last = self._run()
        finally:
            self._router._forget(self._channel)
        self._channel.set_farewell(None)
        if last is not None:
            with contextlib.suppress(RequestTimeout):
                self._channel.send(last)
        self._channel.close()

    def _run(self) -> ProxyStreamMessage | None:
        dispatcher = self._router.dispatcher
        plan = self._plan
        request = self._request
        last: ErrorResponse | None = None
        for index, target in enumerate(plan.targets):
            if self._cancelled:
                return None
            started = dispatcher.clock()
            if plan.left_ms() <= 0:
                last = timed_out(plan)
                plan.record(target, "skipped", "timeout", started)
                continue
            ticket = dispatcher.admit_waiting(target, request, plan, self._abandoned)
            if self._abandoned.is_set():  # the caller left, or the router stops: call nobody
                if not isinstance(ticket, ErrorResponse):
                    dispatcher.settle(ticket, None)  # never sent: give it all back
                plan.record(target, "skipped", "cancelled", started)
                return attrs.evolve(_cancelled(), tried=plan.tried)
            if isinstance(ticket, ErrorResponse):
                plan.record(target, "skipped", ticket.kind, started)
                last = ticket
                plan.warn_fallback(target, ticket.kind or "skipped", index, dispatcher)
                continue
            final, flowed, partial = self._stream(ticket)
            if isinstance(final, _Failed):
                dispatcher.settle(ticket, None, partial, unknown=final.unknown)
                error = final.error
                plan.spent_attempts(None)
            else:
                if isinstance(final, ErrorResponse):
                    plan.spent_attempts(final.attempts)
                dispatcher.settle(ticket, final, partial)
                if isinstance(final, Completion):
                    plan.record(target, "ok", None, started)
                    return attrs.evolve(final, served_by=str(target), tried=plan.tried)
                error = final
            plan.record(target, "error", error.kind, started)
            if flowed or self._cancelled or not dispatcher.falls_back(error.kind):
                return attrs.evolve(error, tried=plan.tried)
            last = error
            plan.warn_fallback(target, error.kind or "error", index, dispatcher)
        assert last is not None
        return attrs.evolve(last, tried=plan.tried)

    def _stream(self, ticket: Ticket) -> tuple[Completion | ErrorResponse | _Failed, bool, str]:
        """Relay one target's stream; return its last message, whether deltas reached the
        caller, and the text they carried."""
        left_ms = max(self._plan.left_ms(), 1)
        message = self._plan.message_for(ticket.request_for(self._request))
        # Each wait on the child is bounded by its own deadline (before text flows) or its
        # idle timeout (after): the child ends the stream first; this is a backstop.
        wait = max(left_ms, ticket.provider.stream_idle_ms) / 1000 + _SLACK
        relayed = _Relayed()
        try:
            child = ticket.provider.handle.open_channel(message, timeout=wait)
        except ChannelRefused as exc:
            error = ErrorResponse(error=f"invalid_request: {exc}", kind="invalid_request")
            return _Failed(error, unknown=False), False, ""
        except (ActorStopped, ActorFailed, RequestTimeout) as exc:
            return _failed(ticket, exc, self._router.stopping), False, ""
        with self._lock:
            self._child = child
            cancelled = self._cancelled
        if cancelled:
            child.close()
        final: Completion | ErrorResponse | _Failed | None
        try:
            final = self._relay_all(child, relayed)
        except (ActorStopped, ActorFailed, RequestTimeout) as exc:
            final = _failed(ticket, exc, self._router.stopping)
        finally:
            with self._lock:
                self._child = None
        if final is None:
            final = (
                _cancelled()
                if self._cancelled
                else _Failed(
                    ErrorResponse(
                        error=f"connection: the stream of {ticket.target} ended without a result",
                        kind="connection",
                    )
                )
            )
        return final, relayed.flowed, "".join(relayed.text)

    def _relay_all(self, child: Channel, relayed: _Relayed) -> Completion | ErrorResponse | None:
        """Pass the child's deltas on; its last message, or ``None`` if there was none."""
        with child:
            for item in child:
                if isinstance(item, Completion | ErrorResponse):
                    return item
                if not self._relay(item):
                    return _cancelled()
                if isinstance(item, Retrying):
                    continue  # a notice of the child's retry: no text has reached the caller
                relayed.flowed = True
                text = getattr(item, "text", None)
                if isinstance(text, str):
                    relayed.text.append(text)
        return None

    def _relay(self, item: ProxyStreamMessage) -> bool:
        try:
            return self._channel.send(item)
        except RequestTimeout:  # the caller stopped reading
            self.cancel()
            return False


class _Relayed:
    """What of a target's stream reached the caller."""

    __slots__ = ("flowed", "text")

    def __init__(self) -> None:
        self.flowed = False
        self.text: list[str] = []


def _cancelled() -> ErrorResponse:
    return ErrorResponse(error="cancelled: the caller closed the stream", kind="cancelled")
