"""Review of the store's damage checks: a damaged digest is a StoreError, never a ValueError."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.openai_proxy.simulator import OpenAISimulator
from theater_py import Runtime
from theater_py.errors import StoreError
from theater_py.store import ContentStore

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "openai-proxy.toml"


def damage(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


@pytest.fixture
def saved(tmp_path: Path) -> Iterator[tuple[ContentStore, Path]]:
    path = tmp_path / "store.sqlite3"
    with ContentStore.open(path) as store:
        store.new_store("s")
        store.store_at_label("s", "l", b"hello")
    yield ContentStore.open(path), path


@pytest.mark.parametrize("digest", ["'nothex'", "x'00'", "42", f"'{'A' * 64}'"])
def test_a_damaged_digest_read_back_is_a_store_error(
    saved: tuple[ContentStore, Path], digest: str
) -> None:
    store, path = saved
    damage(path, f"UPDATE labels SET hash = {digest}", f"UPDATE content SET hash = {digest}")
    with store:
        with pytest.raises(StoreError, match="digest is damaged"):
            store.get_by_label("s", "l")
        with pytest.raises(StoreError, match="digest is damaged"):
            store.list_all_content("s")


def test_the_proxy_s_cache_survives_a_damaged_label(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache catches StoreError; a ValueError crashed the actor on every lookup.
    monkeypatch.setenv("SIM_KEY", "sk-test")
    request = {
        "GenerateCompletion": {
            "request": {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "temperature": 0,
            }
        }
    }
    with OpenAISimulator(api_key="sk-test") as sim:
        config = {"base_url": sim.base_url, "api_key_env": "SIM_KEY"}
        proxy = runtime.start_actor(MANIFEST, {"store_id": "cache", "config": config}, name="proxy")
        assert "Completion" in proxy.request_json(request, timeout=30)
        runtime.stop_actor("proxy")
        conn = runtime.content_store._conn
        assert conn is not None
        with runtime.content_store._lock:
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("UPDATE labels SET hash = 'nothex'")
            conn.execute("PRAGMA foreign_keys = ON")
        proxy = runtime.start_actor(MANIFEST, {"store_id": "cache", "config": config}, name="proxy")
        assert "Completion" in proxy.request_json(request, timeout=30)
        assert "actor-crash" not in {event.event_type for event in proxy.events()}
