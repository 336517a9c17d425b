"""ActorChannel.set_farewell: the last message a caller reads when the actor's end closes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from theater_py import Actor, ActorChannel, ActorContext, ActorHandle, ActorStopped, Runtime


def start(runtime: Runtime, tmp_path: Path, component: str) -> ActorHandle:
    name = component.lower()
    path = tmp_path / f"{name}.toml"
    component = f"tests.test_channel_farewell:{component}"
    path.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{component}"\n')
    return runtime.start_actor(path)


class Streamer(Actor):
    """Accepts a channel, sends one message, sets a farewell, and waits to be stopped."""

    def init(self, ctx: ActorContext, state: Any) -> None:
        self.channels: list[ActorChannel] = []

    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        channel.send({"hello": message})
        if message != "plain":
            channel.set_farewell({"bye": message})
        if message == "removed":
            channel.set_farewell(None)
        return True

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        return "pong"


def test_a_stop_delivers_the_farewell_then_actor_stopped(runtime: Runtime, tmp_path: Path) -> None:
    handle = start(runtime, tmp_path, "Streamer")
    readers = {
        name: iter(handle.open_channel(name, timeout=10)) for name in ("a", "plain", "removed")
    }
    assert {name: next(reader) for name, reader in readers.items()} == {
        "a": {"hello": "a"},
        "plain": {"hello": "plain"},
        "removed": {"hello": "removed"},
    }
    runtime.stop_actor("streamer", timeout=10)
    rest: dict[str, list[Any]] = {}
    for name, reader in readers.items():
        rest[name] = []
        with pytest.raises(ActorStopped):
            rest[name].extend(reader)
    assert rest == {"a": [{"bye": "a"}], "plain": [], "removed": []}


class Closer(Streamer):
    def handle_channel_open(self, ctx: ActorContext, channel: ActorChannel, message: Any) -> bool:
        channel.set_farewell({"bye": message})
        channel.send({"hello": message})
        channel.close()
        return True


def test_a_channel_the_actor_closes_gets_no_farewell(runtime: Runtime, tmp_path: Path) -> None:
    handle = start(runtime, tmp_path, "Closer")
    with handle.open_channel("x", timeout=10) as channel:
        assert list(channel) == [{"hello": "x"}]
    runtime.stop_actor("closer", timeout=10)
