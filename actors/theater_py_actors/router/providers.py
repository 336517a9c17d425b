"""The router's providers: a child proxy each, with what the router knows of its models.

A provider is a child actor the router spawned (the runtime restarts a crashed one, up to
3 restarts in 5 seconds, then gives it up). A given-up provider is reported once, at
ERROR, and skipped from then on; the router serves from the others. So is a provider
whose proxy could not start (its key's variable unset, say): the router starts without it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from theater_py import ActorNotFound
from theater_py_actors.genai_types import ModelInfo, ModelPricing
from theater_py_actors.router.limiter import RateLimiter

if TYPE_CHECKING:
    from theater_py import TypedHandle
    from theater_py_actors.genai_types import ProxyRequest, ProxyResponse
    from theater_py_actors.openai_proxy.catalog import Catalog

__all__ = ["Provider"]

logger = logging.getLogger(__name__)

_MAX_KNOWN = 1024

MAX_INPUT_OVERHEAD = 4096
"""The most input tokens a model's chat template is ever taken to add (a default system
prompt runs to tens or hundreds): a bound on what one provider's report can teach."""


class Provider:
    """One child proxy and what the router knows about it.

    Attributes:
        name: the provider's name in the router's config.
        start_error: why its proxy could not start, or ``None`` if it started.
        models: its models by id, as it listed them at the router's start.
        limiter: its rate limiter.
        stream_idle_ms: the child's ``stream_idle_timeout_ms`` (bounds a wait on its stream).
        max_retries: the child's ``retry_config.max_retries`` (a request routed to it first
            gets that many retries across all its targets).
    """

    def __init__(
        self,
        name: str,
        handle: TypedHandle[ProxyRequest, ProxyResponse] | None,
        models: list[ModelInfo],
        limiter: RateLimiter,
        catalog: Catalog,
        *,
        stream_idle_ms: int,
        max_retries: int = 0,
        start_error: str | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self.start_error = start_error
        self.models = {model.id: model for model in models}
        self.listed = models
        self.limiter = limiter
        self.stream_idle_ms = stream_idle_ms
        self.max_retries = max_retries
        self._catalog = catalog
        self._down = threading.Event()
        if handle is None:
            self._down.set()  # reported by the router, which knows why
        # Per model: (context window, prices), resolved once; model ids come from
        # requests, so the memo is bounded.
        self._known: dict[str, tuple[int | None, ModelPricing | None]] = {}
        self._overhead: dict[str, int] = {}
        self._overhead_lock = threading.Lock()

    def _lookup(self, model: str) -> tuple[int | None, ModelPricing | None]:
        known = self._known.get(model)
        if known is None:
            info = self.models.get(model)
            entry = self._catalog.model(model)
            window = info.max_tokens if info is not None else None
            if window is None and entry is not None:
                window = entry.max_tokens
            pricing = info.pricing if info is not None else None
            if pricing is None:
                pricing = self._catalog.pricing_for(model)
            known = (window, pricing)
            if len(self._known) >= _MAX_KNOWN:
                self._known.clear()
            self._known[model] = known
        return known

    def context_window(self, model: str) -> int | None:
        """The model's context window in tokens, if the proxy or the catalog knows it."""
        return self._lookup(model)[0]

    def pricing(self, model: str) -> ModelPricing | None:
        """The model's prices, if the proxy's config or the catalog knows them."""
        return self._lookup(model)[1]

    def input_overhead(self, model: str) -> int:
        """Input tokens the model's provider counted beyond the estimate, at most, over the
        all-text requests it answered (0 until one is answered, or while the estimate was
        never short): what its chat template adds, such as a default system prompt. Every
        later estimate for the model adds it."""
        return self._overhead.get(model, 0)

    def observe_input(self, model: str, estimated: int, counted: int) -> None:
        """Learn from an all-text request estimated at ``estimated`` input tokens that the
        provider counted ``counted`` (its usage). Only an excess is kept, the largest seen:
        an estimate errs high on purpose, and a reservation must never come out short.

        One odd report must not shut the model out for the rest of the run (a shut-out
        model answers nothing more to learn from): a count beyond the model's context
        window cannot be true and teaches nothing, and what is kept is at most
        :data:`MAX_INPUT_OVERHEAD` tokens and half the window, so a request estimated under
        half the window always stays admissible."""
        window = self.context_window(model)
        if window is not None and counted > window:
            logger.warning(
                "provider %s: %s counted %d input tokens, more than its %d-token context "
                "window: not learned from",
                self.name,
                model,
                counted,
                window,
            )
            return
        bound = MAX_INPUT_OVERHEAD if window is None else min(MAX_INPUT_OVERHEAD, window // 2)
        excess = min(counted - estimated, bound)
        if excess <= self._overhead.get(model, 0):
            return
        with self._overhead_lock:
            if excess <= self._overhead.get(model, 0):
                return
            if model not in self._overhead and len(self._overhead) >= _MAX_KNOWN:
                self._overhead.clear()  # model ids come from requests: keep the memo bounded
            self._overhead[model] = excess
        logger.info(
            "provider %s: %s counts up to %d more input tokens than estimated (its chat "
            "template): later estimates add them",
            self.name,
            model,
            excess,
        )

    @property
    def handle(self) -> TypedHandle[ProxyRequest, ProxyResponse]:
        """The child proxy's handle.

        Raises:
            ActorNotFound: the proxy never started.
        """
        if self._handle is None:
            raise ActorNotFound(f"provider {self.name}'s proxy could not start")
        return self._handle

    @property
    def down(self) -> bool:
        """Whether the provider is out: its proxy never started, or the runtime gave it up
        (it crashed too often)."""
        if self._down.is_set():
            return True
        if self._handle is not None and not self._handle.is_alive():
            self.give_up()
            return True
        return False

    @property
    def why_down(self) -> str:
        """Why :attr:`down` (for an error's text)."""
        if self.start_error is not None:
            return f"could not start ({self.start_error})"
        return "was given up (it crashed too often)"

    def give_up(self) -> None:
        """Mark the provider down; report it once."""
        if not self._down.is_set():
            self._down.set()
            logger.error(
                "provider %s was given up (its proxy crashed too often): serving from the "
                "other providers",
                self.name,
            )
