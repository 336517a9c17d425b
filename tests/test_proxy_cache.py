"""The completion cache: what is cached, under which key, what a hit reports, its bound."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_openai_proxy import generate, sent_bodies
from theater_py.store import ContentStore
from theater_py_actors.genai_types import (
    CompletionResponse,
    EndTurn,
    Text,
    ToolUse,
    ToolUseStop,
    Usage,
)
from theater_py_actors.openai_proxy.cache import LABEL_PREFIX, CompletionCache
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

BASE = "https://api.example.test/v1"


def body(temperature: Any = 0, **extra: Any) -> dict[str, Any]:
    sent = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **extra}
    if temperature is not None:
        sent["temperature"] = temperature
    return sent


def reply(text: str = "hello", cost: float | None = 0.25) -> CompletionResponse:
    return CompletionResponse(
        content=[Text(text)],
        id="chatcmpl-1",
        model="gpt-4o",
        stop_reason=EndTurn(),
        usage=Usage(10, 5, cost_usd=cost),
    )


@pytest.fixture
def store() -> Iterator[ContentStore]:
    with ContentStore.in_memory() as content_store:
        content_store.new_store("cache")
        yield content_store


def cache_on(store: ContentStore, size: int) -> CompletionCache:
    return CompletionCache(size, store, "cache")  # type: ignore[arg-type]


def stored_keys(store: ContentStore) -> list[str]:
    return [label for label in store.list_labels("cache") if label.startswith(LABEL_PREFIX)]


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0, 0.0])
def test_a_body_sent_with_temperature_zero_is_cacheable(temperature: float):
    assert CompletionCache.key_for(body(temperature), BASE) is not None


@pytest.mark.parametrize("temperature", [None, 0.5, 1, False])
def test_a_body_sent_without_temperature_zero_is_not(temperature: Any):
    # None: a reasoning model asked for 0 is sent no temperature, and samples.
    assert CompletionCache.key_for(body(temperature), BASE) is None


def test_the_key_depends_on_the_provider():
    other = CompletionCache.key_for(body(), "http://127.0.0.1:8000/v1")
    assert CompletionCache.key_for(body(), BASE) != other
    assert CompletionCache.key_for(body(), BASE) == CompletionCache.key_for(body(), BASE + "/")


def test_the_key_depends_on_the_whole_body():
    assert CompletionCache.key_for(body(), BASE) != CompletionCache.key_for(body(seed=1), BASE)


# --- hits ----------------------------------------------------------------------------------


def test_a_hit_is_marked_cached_and_free():
    cache = CompletionCache(4)
    cache.put("k", reply(cost=0.25))
    hit = cache.get("k")
    assert hit is not None
    assert (hit.usage.cached, hit.usage.cost_usd) == (True, 0.0)
    assert (hit.usage.input_tokens, hit.usage.output_tokens) == (10, 5)
    assert hit.content == [Text("hello")]


def test_a_reply_that_calls_tools_is_not_cached():
    cache = CompletionCache(4)
    calling = CompletionResponse(
        content=[ToolUse("call_1", "get_weather", {"city": "Paris"})],
        id="chatcmpl-2",
        model="gpt-4o",
        stop_reason=ToolUseStop(),
        usage=Usage(10, 5),
    )
    cache.put("k", calling)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_memory_is_bounded_least_recently_used_first():
    cache = CompletionCache(2)
    cache.put("a", reply("a"))
    cache.put("b", reply("b"))
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("c", reply("c"))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None


# --- the store -----------------------------------------------------------------------------


def test_the_store_never_holds_more_than_max_size_across_restarts(store: ContentStore):
    first_run = cache_on(store, 3)
    for name in "abc":
        first_run.put(name, reply(name))
    second_run = cache_on(store, 3)
    for name in "defg":
        second_run.put(name, reply(name))
    assert len(stored_keys(store)) == 3
    assert {key.removeprefix(LABEL_PREFIX) for key in stored_keys(store)} == {"e", "f", "g"}
    third_run = cache_on(store, 3)
    hit = third_run.get("g")
    assert hit is not None and hit.content == [Text("g")] and hit.usage.cached is True


def test_a_smaller_max_size_trims_the_store_at_start(store: ContentStore):
    big = cache_on(store, 5)
    for name in "abcde":
        big.put(name, reply(name))
    small = cache_on(store, 2)
    assert len(stored_keys(store)) == 2
    assert len(small) == 2


def test_an_unreadable_stored_entry_is_a_miss(store: ContentStore):
    store.store_at_label("cache", LABEL_PREFIX + "bad", b"not json")
    cache = cache_on(store, 2)
    assert cache.get("bad") is None
    assert len(cache) == 0
    assert stored_keys(store) == []  # dropped, so it cannot hold a place in the store


# --- through the actor ---------------------------------------------------------------------


def test_a_hit_through_the_actor_reports_cached_and_no_cost(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy(
        models=[
            {
                "id": "priced",
                "max_tokens": 8192,
                "pricing": {
                    "input_cost_per_million_tokens": 1.0,
                    "output_cost_per_million_tokens": 2.0,
                },
            }
        ]
    )
    first = generate(proxy, model="priced", temperature=0)["Completion"]["completion"]
    second = generate(proxy, model="priced", temperature=0)["Completion"]["completion"]
    assert sim.requests_seen == 1
    assert first["usage"]["cost_usd"] > 0 and "cached" not in first["usage"]
    assert (second["usage"]["cached"], second["usage"]["cost_usd"]) == (True, 0.0)
    assert second["content"] == first["content"]


def test_a_reasoning_model_asked_for_temperature_zero_is_not_cached(
    start_proxy, sim: OpenAISimulator
):
    proxy = start_proxy()
    generate(proxy, model="o3-mini", temperature=0)
    generate(proxy, model="o3-mini", temperature=0)
    assert sim.requests_seen == 2
    assert all("temperature" not in sent for sent in sent_bodies(sim))


def test_tool_calls_through_the_actor_are_not_cached(start_proxy, sim: OpenAISimulator):
    proxy = start_proxy()
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
    request = {
        "temperature": 0,
        "tools": [tool],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "use a tool"}]}],
    }
    first = generate(proxy, **request)["Completion"]["completion"]
    assert first["stop_reason"] == "tool_use"
    generate(proxy, **request)
    assert sim.requests_seen == 2


def test_concurrent_puts_never_leave_more_than_max_size_in_the_store(store: ContentStore):
    cache = cache_on(store, 2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: cache.put(f"k{n}", reply(str(n))), range(64)))
    assert len(stored_keys(store)) == 2
    assert len(cache) == 2
