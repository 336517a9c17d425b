"""Review 2: channels under crashes, restarts and stops, from many callers at once."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from theater_py import (
    ActorFailed,
    ActorStopped,
    ChildSpec,
    RequestTimeout,
    Runtime,
    SupervisorFlags,
    SupervisorSpec,
)

WAIT = 10.0


pytestmark = pytest.mark.usefixtures("channel_log")


def streamer(tmp_path: Path) -> Path:
    path = tmp_path / "streamer.toml"
    path.write_text(
        'name = "streamer"\nversion = "0.1.0"\ncomponent = "tests.channel_actors:Streamer"\n'
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("shutdown", [None, "brutal_kill", 5000])
def test_channels_under_random_crashes_always_end_and_leave_no_thread(
    tmp_path: Path, shutdown: str | int | None
) -> None:
    """Every stream ends (all read, ActorFailed or ActorStopped), never by a timeout,
    while the actor crashes at random under many readers (``None``), or a sibling's
    crash restarts it in a one_for_all group (stopped within its ``shutdown``); then no
    thread is left."""
    before = set(threading.enumerate())
    outcomes: list[str] = []
    lock = threading.Lock()
    with Runtime(in_memory=True) as runtime:
        if shutdown is None:
            handle = runtime.start_actor(streamer(tmp_path), intensity=10_000, period=60)
            victim = handle
        else:
            sibling = tmp_path / "sibling.toml"
            sibling.write_text(
                'name = "sibling"\nversion = "0.1.0"\ncomponent = "tests.channel_actors:Streamer"\n'
            )
            flags = SupervisorFlags("one_for_all", intensity=10_000, period=60)
            children = (
                ChildSpec(name="streamer", manifest=streamer(tmp_path), shutdown=shutdown),
                ChildSpec(name="sibling", manifest=sibling),
            )
            runtime.start_supervisor(SupervisorSpec("sup", flags, children))
            handle = runtime.handle("streamer")
            victim = runtime.handle("sibling")
        stop = threading.Event()

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(25):
                outcome = "?"
                try:
                    with handle.open_channel({"count": 30}, timeout=WAIT) as channel:
                        want = rng.choice([5, 30, 31])
                        seen: list[Any] = []
                        for item in channel:
                            seen.append(item["i"])
                            if len(seen) >= want:
                                break
                        assert seen == list(range(len(seen)))  # in order, none lost
                        outcome = "read"
                except ActorFailed:
                    outcome = "failed"
                except ActorStopped:
                    outcome = "stopped"
                except RequestTimeout:
                    outcome = "timeout"
                with lock:
                    outcomes.append(outcome)

        def chaos() -> None:
            rng = random.Random(7)
            while not stop.wait(rng.uniform(0.001, 0.01)):
                victim.crash("chaos")

        readers = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
        monkey = threading.Thread(target=chaos)
        for thread in [*readers, monkey]:
            thread.start()
        for thread in readers:
            thread.join(60)
        stop.set()
        monkey.join(WAIT)
        assert handle.request("alive", timeout=WAIT) == "ok"
    for thread in set(threading.enumerate()) - before:
        thread.join(WAIT)
    assert set(threading.enumerate()) - before == set()
    assert len(outcomes) == 100
    assert "timeout" not in outcomes
    assert "?" not in outcomes
    assert outcomes.count("failed" if shutdown is None else "stopped") > 0
