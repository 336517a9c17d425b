"""An LRU cache of completions for deterministic requests, optionally kept in the store.

Only requests with ``temperature`` 0 are cached: any other temperature asks for a
different answer each time. The key is the SHA-256 of the canonical JSON of the body
sent upstream (model, messages, tools, limits: everything that shapes the answer). With a
store, each entry is also saved at the label ``completion-cache/<key>``, so it survives a
restart of the actor or of the process; entries evicted from memory are unlabelled there.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from actors.genai_types import CompletionResponse
from theater_py import serde
from theater_py.errors import MessageDecodeError, StoreError

if TYPE_CHECKING:
    from theater_py.capabilities import StoreAccess

__all__ = ["CompletionCache"]

logger = logging.getLogger(__name__)

LABEL_PREFIX = "completion-cache/"


class CompletionCache:
    """Completions by request, least recently used evicted first; thread-safe.

    Args:
        max_size: how many entries to keep (0 disables the cache).
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
        self._entries: collections.OrderedDict[str, CompletionResponse] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key_for(body: dict[str, Any], temperature: float | None) -> str | None:
        """Return the cache key of an upstream body, or ``None`` when it is not cacheable."""
        if temperature != 0:
            return None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def get(self, key: str) -> CompletionResponse | None:
        """Return the cached completion, if any (from memory, else from the store)."""
        if self.max_size == 0:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        found = self._load(key)
        with self._lock:
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._remember(key, found)
        return found

    def put(self, key: str, completion: CompletionResponse) -> None:
        """Cache a completion (and save it in the store, when there is one)."""
        if self.max_size == 0:
            return
        with self._lock:
            evicted = self._remember(key, completion)
        if self._store is not None and self._store_id is not None:
            try:
                self._store.store_at_label(
                    self._store_id, LABEL_PREFIX + key, serde.dumps(completion)
                )
                for old in evicted:
                    self._store.remove_label(self._store_id, LABEL_PREFIX + old)
            except StoreError:
                logger.warning("could not save a cached completion in store %s", self._store_id)

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
