"""A caller that stops waiting cancels the deferred reply's future (what the proxy relies on)."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from theater_py import Actor, ActorContext, RequestTimeout, Runtime

PENDING: list[concurrent.futures.Future[Any]] = []


class Deferring(Actor):
    """Answers every request with a future it never completes."""

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        PENDING.append(future)
        return future


def test_a_request_timeout_cancels_the_deferred_future(runtime: Runtime, tmp_path: Path):
    PENDING.clear()
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        'name = "deferring"\nversion = "0.1.0"\n'
        'component = "tests.test_deferred_cancel:Deferring"\n'
    )
    actor = runtime.start_actor(manifest)
    with pytest.raises(RequestTimeout):
        actor.request("anything", timeout=0.2)
    [future] = PENDING
    assert future.cancelled()
    assert ("request-error", {"error": "cancelled"}) in [
        (event.event_type, event.data) for event in actor.events()
    ]
    assert actor.is_alive()
