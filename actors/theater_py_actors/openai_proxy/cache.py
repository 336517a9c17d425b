"""An LRU cache of completions for deterministic requests, optionally kept in the store.

Only a body that goes upstream with ``temperature`` 0 is cached: any other temperature, or
none (a reasoning model asked for 0 is sent none, and samples), asks for a different answer
each time. The key is the SHA-256 of the canonical JSON of the provider's ``base_url`` and
the body sent upstream (model, messages, tools, limits: everything that shapes the answer),
so two providers serving a model of the same name never share an entry.

A reply that calls tools is not cached: the caller runs the tools, and a replayed call id
would collide with the first run's. A hit is the first reply with ``usage.cached`` true and
``usage.cost_usd`` 0: it cost nothing this time.

With a store, each entry is also saved at the label ``completion-cache/<key>``, so it
survives a restart of the actor or of the process. The cache starts by listing those labels
(trimming them to ``max_size``), and evicting an entry removes its label, so the store never
holds more than ``max_size`` entries. Entries left by an earlier run are older than any of
this run's, in no particular order among themselves (the store keeps no access times).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs

from theater_py import serde
from theater_py.errors import MessageDecodeError, StoreError
from theater_py_actors.genai_types import CompletionResponse, ToolUse

if TYPE_CHECKING:
    from theater_py.capabilities import StoreAccess

__all__ = ["CompletionCache"]

logger = logging.getLogger(__name__)

LABEL_PREFIX = "completion-cache/"


def _as_hit(completion: CompletionResponse) -> CompletionResponse:
    usage = attrs.evolve(completion.usage, cached=True, cost_usd=0.0)
    return attrs.evolve(completion, usage=usage)


class CompletionCache:
    """Completions by request, least recently used evicted first; thread-safe.

    Args:
        max_size: how many entries to keep, in memory and in the store (0 disables the
            cache).
        store: the actor's store capability, to persist entries; ``None`` keeps them in
            memory only.
        store_id: the store to persist into (required with ``store``).
    """

    def __init__(
        self, max_size: int, store: StoreAccess | None = None, store_id: str | None = None
    ) -> None:
        self.max_size = max_size
        self._store = store if store_id is not None else None
        self._store_id = store_id
        # None: saved in the store by an earlier run, read on first use.
        self._entries: collections.OrderedDict[str, CompletionResponse | None] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self._store_lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._adopt_stored()

    @staticmethod
    def key_for(body: dict[str, Any], base_url: str) -> str | None:
        """Return the cache key of a body sent to ``base_url``, or ``None`` if not cacheable.

        Args:
            body: the body exactly as it goes upstream.
            base_url: the provider's API root.

        Returns:
            A hex digest when ``body`` carries ``temperature`` 0, else ``None``.
        """
        temperature = body.get("temperature")
        if isinstance(temperature, bool) or temperature != 0:
            return None
        canonical = json.dumps(
            {"base_url": base_url.rstrip("/"), "body": body},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> CompletionResponse | None:
        """Return the cached completion, marked as a free cache hit, if there is one."""
        if self.max_size == 0:
            return None
        with self._lock:
            if key not in self._entries:
                self.misses += 1
                return None
            found = self._entries[key]
            self._entries.move_to_end(key)
        if found is None:
            found = self._load(key)
            if found is None:
                with self._lock:
                    self._entries.pop(key, None)
                    self.misses += 1
                self._unlabel([key])  # unreadable or gone: it must not hold a place
                return None
            with self._lock:
                if key in self._entries:
                    self._entries[key] = found
        with self._lock:
            self.hits += 1
        return _as_hit(found)

    def put(self, key: str, completion: CompletionResponse) -> None:
        """Cache a completion (and save it in the store); one that calls tools is skipped."""
        if self.max_size == 0 or any(isinstance(part, ToolUse) for part in completion.content):
            return
        # One put at a time touches the store: another put could otherwise evict this
        # key, and remove its label, before this one has written it.
        with self._store_lock:
            with self._lock:
                evicted = self._remember(key, completion)
            if self._store is not None and self._store_id is not None:
                try:
                    self._store.store_at_label(
                        self._store_id, LABEL_PREFIX + key, serde.dumps(completion)
                    )
                except StoreError:
                    logger.warning("could not save a cached completion in store %s", self._store_id)
            self._unlabel(evicted)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _remember(self, key: str, completion: CompletionResponse) -> list[str]:
        self._entries[key] = completion
        self._entries.move_to_end(key)
        evicted = []
        while len(self._entries) > self.max_size:
            old, _ = self._entries.popitem(last=False)
            evicted.append(old)
        return evicted

    def _adopt_stored(self) -> None:
        """Index the entries an earlier run saved; drop those beyond ``max_size``."""
        if self._store is None or self._store_id is None:
            return
        try:
            labels = self._store.list_labels(self._store_id)
        except StoreError:
            logger.warning("could not list the cached completions in store %s", self._store_id)
            return
        keys = [
            label.removeprefix(LABEL_PREFIX) for label in labels if label.startswith(LABEL_PREFIX)
        ]
        extra = max(0, len(keys) - self.max_size)
        for key in keys[extra:]:
            self._entries[key] = None
        self._unlabel(keys[:extra])

    def _unlabel(self, keys: list[str]) -> None:
        if self._store is None or self._store_id is None:
            return
        for key in keys:
            try:
                self._store.remove_label(self._store_id, LABEL_PREFIX + key)
            except StoreError:
                logger.warning("could not drop a cached completion from store %s", self._store_id)

    def _load(self, key: str) -> CompletionResponse | None:
        if self._store is None or self._store_id is None:
            return None
        try:
            ref = self._store.get_by_label(self._store_id, LABEL_PREFIX + key)
            if ref is None:
                return None
            data = self._store.get(self._store_id, ref)
            return serde.loads(data, CompletionResponse)
        except (StoreError, MessageDecodeError):
            logger.warning("ignoring an unreadable cached completion in store %s", self._store_id)
            return None
