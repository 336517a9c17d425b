"""Review of the control server: a timeout no thread can wait is bad input, refused up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ManifestFactory
from tests.test_control import raw_exchange
from theater_py import Runtime
from theater_py.control import ControlServer


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
