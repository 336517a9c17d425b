"""The content store on a Ray cluster: one Ray actor owns it, every node reaches it.

:class:`StoreHost` runs on the driver's node and holds the runtime's
:class:`~theater_py.store.ContentStore` (the SQLite file in the driver's home, or one in
memory). :class:`StoreClient` offers the store's operations and makes each one a Ray call
to it, from the driver or from any worker, so nodes need no shared filesystem. A
:class:`~theater_py.errors.StoreError` raised there is raised again here with its message,
and so is the loss of the host: Ray restarts a host whose process died (the file survives
it), and the call that was in flight fails with ``StoreError`` (it may or may not have run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from theater_py.errors import StoreError

if TYPE_CHECKING:
    from theater_py.store import Bytes, ContentRef

__all__ = ["STORE_TIMEOUT", "StoreClient", "StoreHost"]

STORE_TIMEOUT = 60.0
"""Seconds one store operation may take, the Ray call included."""

_OPERATIONS = frozenset(
    {
        "new_store",
        "store",
        "get",
        "exists",
        "label",
        "replace_at_label",
        "get_by_label",
        "remove_label",
        "store_at_label",
        "replace_content_at_label",
        "list_labels",
        "list_all_content",
        "calculate_total_size",
    }
)


class _StoreHost:
    """The Ray actor that owns the content store (SQLite serializes its writes)."""

    def __init__(self, path: str | None) -> None:
        from theater_py.store import ContentStore

        if path is None:
            self._store = ContentStore.in_memory()
        else:
            from pathlib import Path

            from theater_py._home import ensure_home

            ensure_home(Path(path).parent)
            self._store = ContentStore.open(path)

    def call(self, operation: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """Run one store operation; ``(False, message)`` when it raised ``StoreError``."""
        if operation not in _OPERATIONS:
            return False, f"no store operation {operation!r}"
        try:
            return True, getattr(self._store, operation)(*args)
        except StoreError as exc:
            return False, str(exc)

    def close(self) -> None:
        """Close the store's file."""
        self._store.close()


StoreHost = ray.remote(max_concurrency=8)(_StoreHost)
"""The Ray actor class of the store's host."""


class StoreClient:
    """The store's operations, each one Ray call to the :class:`StoreHost`.

    It has the methods of :class:`~theater_py.store.ContentStore` that actors use; its
    ``close`` does nothing (the runtime stops the host).
    """

    def __init__(self, host: Any) -> None:
        self._host = host

    def _call(self, operation: str, *args: Any) -> Any:
        try:
            ok, value = ray.get(self._host.call.remote(operation, args), timeout=STORE_TIMEOUT)
        except RayActorError:
            raise StoreError(
                f"store {operation}: the store's Ray actor died during the call (it may or "
                "may not have run; a store on disk is served again once Ray restarts it)"
            ) from None
        except GetTimeoutError:
            raise StoreError(
                f"store {operation}: the store's Ray actor gave no answer in {STORE_TIMEOUT:g} s"
            ) from None
        if not ok:
            raise StoreError(value)
        return value

    def new_store(self, store_id: str | None = None) -> str:
        """Create a store (or find the one named ``store_id``) and return its id."""
        return str(self._call("new_store", store_id))

    def store(self, store_id: str, content: Bytes) -> ContentRef:
        """Save content (once per digest) and return its reference."""
        return self._call("store", store_id, bytes(content))  # type: ignore[no-any-return]

    def get(self, store_id: str, ref: ContentRef) -> bytes:
        """Return the content ``ref`` names."""
        return bytes(self._call("get", store_id, ref))

    def exists(self, store_id: str, ref: ContentRef) -> bool:
        """Return whether the store holds the content ``ref`` names."""
        return bool(self._call("exists", store_id, ref))

    def label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at content the store holds."""
        self._call("label", store_id, label, ref)

    def replace_at_label(self, store_id: str, label: str, ref: ContentRef) -> None:
        """Point ``label`` at other content."""
        self._call("replace_at_label", store_id, label, ref)

    def get_by_label(self, store_id: str, label: str) -> ContentRef | None:
        """Return what ``label`` points at, or ``None``."""
        return self._call("get_by_label", store_id, label)  # type: ignore[no-any-return]

    def remove_label(self, store_id: str, label: str) -> None:
        """Remove ``label`` (the content stays)."""
        self._call("remove_label", store_id, label)

    def store_at_label(self, store_id: str, label: str, content: Bytes) -> ContentRef:
        """Save content and point ``label`` at it, in one transaction."""
        return self._call("store_at_label", store_id, label, bytes(content))  # type: ignore[no-any-return]

    def replace_content_at_label(self, store_id: str, label: str, content: Bytes) -> ContentRef:
        """Save content and move ``label`` to it."""
        return self.store_at_label(store_id, label, content)

    def list_labels(self, store_id: str) -> list[str]:
        """Return the store's labels, sorted."""
        return list(self._call("list_labels", store_id))

    def list_all_content(self, store_id: str) -> list[ContentRef]:
        """Return the references of the store's content, in the order first stored."""
        return list(self._call("list_all_content", store_id))

    def calculate_total_size(self, store_id: str) -> int:
        """Return the size in bytes of the store's content."""
        return int(self._call("calculate_total_size", store_id))

    def close(self) -> None:
        """Nothing to close here: the runtime stops the store's host."""

    def __repr__(self) -> str:
        return "<StoreClient (Ray)>"
