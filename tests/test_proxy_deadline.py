"""The proxy's wall-clock deadline, cancellation and backpressure, over loopback sockets.

No assertion here is about speed. A request bounded by its deadline is shown by the
hostile server: it hung up before its trickle was over. A call that is abandoned is shown
by the simulator: its stalled connection was closed from the proxy's side.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import threading
import time
from typing import Any

import pytest
import requests

from tests.hostile_upstream import TrickleServer
from tests.proxy_fixtures import KEY
from theater_py import ActorHandle, ActorStopped, RequestTimeout
from theater_py_actors.openai_proxy import actor as proxy_actor
from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import ProxyConfig, RetryConfig, parse_init
from theater_py_actors.openai_proxy.errors import ProviderError
from theater_py_actors.openai_proxy.simulator import OpenAISimulator
from theater_py_actors.openai_proxy.upstream_call import UpstreamCall, Watchdog

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def proxy_defaults() -> dict[str, Any]:
    return {"retry_config": {"initial_delay_ms": 1, "max_delay_ms": 5}}


def generate(handle: ActorHandle, timeout: float = 30) -> dict[str, Any]:
    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    reply: dict[str, Any] = handle.request_json(
        {"GenerateCompletion": {"request": request}}, timeout=timeout
    )
    return reply


# --- item 3: max_total_timeout_ms is a wall-clock deadline ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_reply_ends_at_the_total_deadline(start_proxy_at, where: str):
    with TrickleServer(interval=0.25, where=where) as server:  # type: ignore[arg-type]
        proxy = start_proxy_at(
            server.base_url,
            timeout_ms=1000,
            retry={"max_retries": 2, "max_total_timeout_ms": 2000},
        )
        error = generate(proxy)["Error"]
        assert error["kind"] == "timeout"
        assert "max_total_timeout_ms (2000)" in error["error"]
        # The proxy hung up: the server did not get to send its whole reply.
        assert server.hung_up.wait(10)
        assert server.sent < server.total


@pytest.mark.slow
def test_the_client_bounds_a_trickling_body_by_its_deadline():
    with TrickleServer(interval=0.25) as server, requests.Session() as session:
        client = ChatClient(
            session,
            base_url=server.base_url,
            api_key=KEY,
            timeout_ms=1000,
            retry=RetryConfig(max_retries=0, max_total_timeout_ms=1500),
            max_connections=2,
        )
        with contextlib.closing(client), pytest.raises(ProviderError) as info:
            client.complete(BODY)
        assert (info.value.kind, info.value.attempts) == ("timeout", 1)
        assert server.hung_up.wait(10)
        assert server.sent < server.total


def test_the_deadline_runs_from_acceptance_not_from_the_pool(
    start_proxy_at, sim: OpenAISimulator, monkeypatch: pytest.MonkeyPatch
):
    # The first request holds the only pool thread after its HTTP call (its deadline no
    # longer applies then); the second waits in the queue past its own deadline.
    release = threading.Event()
    convert = proxy_actor.from_chat_response

    def held(*args: Any, **kwargs: Any) -> Any:
        release.wait(20)
        return convert(*args, **kwargs)

    monkeypatch.setattr(proxy_actor, "from_chat_response", held)
    proxy = start_proxy_at(
        sim.base_url, max_concurrent_requests=1, retry={"max_total_timeout_ms": 500}
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(generate, proxy)
        try:
            assert sim.wait_for_requests(1, timeout=10)
            error = generate(proxy, timeout=10)["Error"]
            assert (error["kind"], error["attempts"]) == ("timeout", 0)
            assert sim.requests_seen == 1  # the second was never sent
        finally:
            release.set()
        assert "Completion" in first.result(10)


def test_a_call_started_earlier_is_timed_from_its_start(sim: OpenAISimulator):
    now = [0.0]
    with requests.Session() as session:
        client = ChatClient(
            session,
            base_url=sim.base_url,
            api_key=KEY,
            timeout_ms=5000,
            retry=RetryConfig(max_total_timeout_ms=1000),
            max_connections=2,
            clock=lambda: now[0],
        )
        with contextlib.closing(client):
            call = client.start()
            now[0] += 1.5  # it waited for a pool thread longer than its deadline
            with pytest.raises(ProviderError) as info:
                client.complete(BODY, call)
    assert (info.value.kind, info.value.attempts) == ("timeout", 0)
    assert sim.requests_seen == 0


# --- item 7: cancellation -------------------------------------------------------------------


def test_a_caller_that_stops_waiting_abandons_the_upstream_call(
    start_proxy_at, sim: OpenAISimulator
):
    proxy = start_proxy_at(sim.base_url, timeout_ms=30000, retry={"max_total_timeout_ms": 60000})
    sim.fail_next(fault="stall=60000")
    with pytest.raises(RequestTimeout):
        generate(proxy, timeout=0.5)
    # The proxy closed the stalled connection (the simulator holds it for a minute).
    assert sim.wait_for_idle(timeout=10)
    assert "Completion" in generate(proxy)
    assert sim.requests_seen == 2  # no retry of the abandoned call came in between
    # The runtime cancelled the deferred reply when the caller left.
    assert ("request-error", {"error": "cancelled"}) in [
        (event.event_type, event.data) for event in proxy.events()
    ]


def test_stopping_for_good_closes_the_running_attempt(start_proxy_at, sim: OpenAISimulator):
    proxy = start_proxy_at(sim.base_url, timeout_ms=30000, retry={"max_total_timeout_ms": 60000})
    sim.fail_next(fault="stall=60000")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(generate, proxy)
        assert sim.wait_for_requests(1, timeout=10)
        proxy.stop(timeout=10)
        assert sim.wait_for_idle(timeout=10)
        try:
            reply = pending.result(10)
        except ActorStopped:
            return
    assert reply["Error"]["kind"] == "connection"


# --- item 6: backpressure ---------------------------------------------------------------------


def test_beyond_the_queue_a_request_is_overloaded_at_once(start_proxy_at, sim: OpenAISimulator):
    proxy = start_proxy_at(
        sim.base_url,
        timeout_ms=30000,
        max_concurrent_requests=1,
        max_queued_requests=1,
        retry={"max_total_timeout_ms": 60000},
    )
    sim.fail_next(fault="stall=60000")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(generate, proxy)
        assert sim.wait_for_requests(1, timeout=10)
        later = [pool.submit(generate, proxy), pool.submit(generate, proxy)]
        # One of the two waits in the queue; the other is turned away without waiting.
        done, _ = concurrent.futures.wait(
            later, timeout=10, return_when=concurrent.futures.FIRST_COMPLETED
        )
        assert len(done) == 1
        error = next(iter(done)).result()["Error"]
        assert error["kind"] == "overloaded"
        assert "max_queued_requests" in error["error"]
        proxy.stop(timeout=10)
        for future in [running, *later]:
            with contextlib.suppress(ActorStopped):
                future.result(10)
    assert sim.requests_seen == 1


def test_max_queued_requests_defaults_to_four_times_the_pool():
    assert ProxyConfig().queued_limit == 4 * 64
    assert ProxyConfig(max_concurrent_requests=3).queued_limit == 12
    assert ProxyConfig(max_queued_requests=0).queued_limit == 0
    config = parse_init({"config": {"max_queued_requests": 7}}).config
    assert config.queued_limit == 7


@pytest.mark.parametrize("value", [-1, 1.5, "10", True])
def test_a_bad_max_queued_requests_names_the_field(value: Any):
    with pytest.raises(ValueError, match=r"config\.max_queued_requests"):
        parse_init({"config": {"max_queued_requests": value}})


# --- the machinery: who may hang up which connection ------------------------------------


class FakeConnection:
    """Stands in for a urllib3 connection: only its ``sock`` is used."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def test_a_call_never_hangs_up_a_connection_that_serves_another_call():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        connection: Any = FakeConnection(ours)
        first, second = UpstreamCall(0.0), UpstreamCall(0.0)
        first._attach(connection)
        second._attach(connection)  # back in the pool, then taken by the second call
        first.abandon("timeout")
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"  # still open
        second.abandon("cancelled")
        assert ours.recv(1) == b""  # shut down: a blocked read would end now
        assert (first.reason, second.reason) == ("timeout", "cancelled")


def test_an_ended_call_is_not_abandoned_and_an_abandoned_one_wakes_its_wait():
    told: list[str | None] = []
    ended = UpstreamCall(0.0, lambda call: told.append(call.reason))
    ended.end()
    ended.abandon("timeout")
    assert ended.reason is None and told == []
    waiting = UpstreamCall(0.0, lambda call: told.append(call.reason))
    waiting.abandon("closed")
    waiting.abandon("timeout")  # only the first reason counts
    assert waiting.wait(10) is True
    assert told == ["closed"]


def test_closing_the_watchdog_abandons_its_calls_and_ends_its_thread():
    watchdog = Watchdog(time.monotonic, "test-watchdog")
    live, done = UpstreamCall(time.monotonic() + 60), UpstreamCall(time.monotonic() + 60)
    watchdog.watch(live)
    watchdog.watch(done)
    done.end()
    watchdog.close()
    assert (live.reason, done.reason) == ("closed", None)
    assert "test-watchdog" not in [thread.name for thread in threading.enumerate()]
    late = UpstreamCall(time.monotonic() + 60)
    watchdog.watch(late)
    assert late.reason == "closed"


def test_the_watchdog_abandons_a_call_at_its_deadline():
    abandoned = threading.Event()
    watchdog = Watchdog(time.monotonic, "test-watchdog")
    try:
        later = UpstreamCall(time.monotonic() + 60)
        watchdog.watch(later)
        soon = UpstreamCall(time.monotonic() + 0.05, lambda _call: abandoned.set())
        watchdog.watch(soon)  # sooner than the first: the thread wakes for it
        assert abandoned.wait(10)
        assert (soon.reason, later.reason) == ("timeout", None)
    finally:
        watchdog.close()


def test_a_failing_abandon_callback_does_not_stop_the_watchdog(caplog: pytest.LogCaptureFixture):
    abandoned = threading.Event()

    def broken(_call: UpstreamCall) -> None:
        raise RuntimeError(f"Bearer {KEY}")

    watchdog = Watchdog(time.monotonic, "test-watchdog")
    try:
        watchdog.watch(UpstreamCall(time.monotonic(), broken))
        watchdog.watch(UpstreamCall(time.monotonic() + 0.05, lambda _call: abandoned.set()))
        assert abandoned.wait(10)  # the thread survived the first callback
    finally:
        watchdog.close()
    assert "abandoning an upstream call failed: RuntimeError" in caplog.text
    assert KEY not in caplog.text


# --- GenerateCompletion.max_attempts caps the proxy's HTTP attempts ------------------------


def _generate_with(handle: ActorHandle, **extension: Any) -> dict[str, Any]:
    request = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    reply: dict[str, Any] = handle.request_json(
        {"GenerateCompletion": {"request": request, **extension}}, timeout=30
    )
    return reply


def test_max_attempts_caps_the_proxys_attempts(start_proxy_at, sim: OpenAISimulator):
    proxy = start_proxy_at(sim.base_url, retry={"max_retries": 4})
    sim.fail_next(status=500, times=10)
    error = _generate_with(proxy, max_attempts=2)["Error"]
    assert (error["kind"], error["attempts"]) == ("server_error", 2)
    assert sim.requests_seen == 2
    more = _generate_with(proxy, max_attempts=50)["Error"]  # never past its own 1 + 4
    assert more["attempts"] == 5


def test_a_bad_max_attempts_names_the_field(start_proxy_at, sim: OpenAISimulator):
    proxy = start_proxy_at(sim.base_url)
    error = _generate_with(proxy, max_attempts=0)["Error"]
    assert error["kind"] == "invalid_request"
    assert "GenerateCompletion.max_attempts" in error["error"]
    assert sim.requests_seen == 0
