"""Review of the control server: a timeout no thread can wait is bad input, refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ManifestFactory
from tests.test_control import raw_exchange
from theater_py import Runtime
from theater_py.control import ControlClient, ControlServer


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "request", "actor": "echo", "message": "hi", "timeout": 1e300},
        {"op": "stop", "actor": "echo", "timeout": 1e300},
        {"op": "restart", "actor": "echo", "timeout": 1e300},
    ],
)
def test_a_timeout_longer_than_a_thread_can_wait_is_a_bad_request(
    runtime: Runtime, make_manifest: ManifestFactory, tmp_path: Path, request_: dict
) -> None:
    # It raised OverflowError once the op had begun: an InternalError, and a stop that
    # stopped the actor without remembering it (no restart, no events afterwards).
    runtime.start_actor(make_manifest("Echo"), name="echo")
    with ControlServer(runtime, tmp_path / "h") as server:
        (response,) = raw_exchange(server.path, json.dumps(request_).encode() + b"\n")
        assert response["error"]["type"] == "BadRequest"
        assert "'timeout'" in response["error"]["message"]
        assert runtime.find_cell("echo") is not None  # nothing was done
        (listed,) = raw_exchange(server.path, b'{"op": "list"}\n')
        assert [actor["name"] for actor in listed["result"]] == ["echo"]


def test_follow_keeps_streaming_once_a_chain_in_memory_drops_its_oldest_events(
    make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    # The stream counted events by their index in the kept window: once the window was
    # full (10,000 events by default) it sent nothing more, and the count was wrong.
    runtime = Runtime(in_memory=True, max_memory_events=4)
    try:
        runtime.start_actor(make_manifest("Echo"), name="echo")
        with ControlServer(runtime, tmp_path / "h"):
            client = ControlClient(tmp_path / "h", timeout=10)
            with client.events("echo", follow=True, read_timeout=10) as stream:
                events = iter(stream)
                assert [next(events)["event_type"] for _ in range(2)] == ["actor-start", "init"]
                for n in range(3):
                    client.request("echo", f"m{n}")
                    got = [next(events) for _ in range(2)]
                    assert [e["event_type"] for e in got] == ["request", "response"], n
                    assert got[0]["data"] == f"m{n}"
                client.stop("echo")
                rest = list(events)
            assert [e["event_type"] for e in rest] == ["actor-stop"]
            assert stream.summary == {"count": 9, "ended": "actor stopped"}
    finally:
        runtime.shutdown(timeout=10)
