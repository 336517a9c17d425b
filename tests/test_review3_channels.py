"""Review 3: a deferred channel open whose caller's timeout passes is a timeout, not a refusal."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest

from tests.channel_actors import notes
from tests.test_channels import WAIT, gate, start
from theater_py import Actor, ActorChannel, ActorContext, ActorHandle, RequestTimeout

__all__ = ["start"]  # the fixture, shared with tests/test_channels.py

pytestmark = pytest.mark.usefixtures("channel_log")

PENDING: list[concurrent.futures.Future[Any]] = []


class Undecided(Actor):
    """Answers every open with a future nobody resolves (it can still be cancelled)."""

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        PENDING.append(future)
        return future

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        return message


def chain_kinds(handle: ActorHandle) -> list[str]:
    return [e.event_type for e in handle.events() if e.event_type.startswith("channel-")]


def test_an_open_whose_future_is_cancelled_by_the_timeout_is_recorded_as_a_timeout(
    start: Callable[..., ActorHandle],
) -> None:
    handle = start(f"{__name__}:Undecided")
    with pytest.raises(RequestTimeout, match="did not answer the channel's open"):
        handle.open_channel({"any": 1}, timeout=0.2)
    assert handle.request("sync", timeout=WAIT) == "sync"  # the caller's close is handled too

    assert PENDING[-1].cancelled()
    assert chain_kinds(handle) == ["channel-open", "channel-open-timeout"]
    [opened] = [e.data for e in handle.events() if e.event_type == "channel-open"]
    [timed_out] = [e.data for e in handle.events() if e.event_type == "channel-open-timeout"]
    assert timed_out == {"channel": opened["channel"]}


def test_an_open_answered_after_the_timeout_is_recorded_as_a_timeout_only(
    start: Callable[..., ActorHandle],
) -> None:
    late = gate("late")
    handle = start()
    with pytest.raises(RequestTimeout):  # its future runs already: it cannot be cancelled
        handle.open_channel({"defer": True, "gate": "late"}, timeout=0.2)
    assert handle.request("sync", timeout=WAIT) == "ok"
    late.set()  # the actor accepts, too late
    with handle.open_channel({"defer": True}, timeout=WAIT):  # it answers the next one
        assert chain_kinds(handle) == ["channel-open", "channel-open-timeout", "channel-open"]
    first = next(e.data["channel"] for e in handle.events() if e.event_type == "channel-open")
    # It never accepted that channel: its handle_channel_close does not run for it.
    assert [n for n in notes("closed by caller") if n[1] == first] == []
