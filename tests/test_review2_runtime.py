"""Review 2: probes of the runtime (issue 10) that found defects, or guard their fixes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import test_runtime_edge_cases as edge_cases
from tests.edge_actors import GATES, signal
from tests.test_runtime_edge_cases import (
    WAIT,
    in_thread,
    new_gate,
    supervisor_spec,
    wait_until,
    worker,
)
from theater_py import (
    IGNORE,
    Actor,
    ActorContext,
    ActorFailed,
    ActorStopped,
    ChildSpec,
    Runtime,
)
from theater_py._cell import CellStatus

edge = edge_cases.edge
rt = edge_cases.rt
manifest = edge_cases.manifest

STOPPED: dict[int, threading.Event] = {}
THREADS: dict[int, threading.Thread] = {}


class Parent(Actor):
    """Spawns children on request; a request may block on a gate, then crash."""

    incarnations = 0

    def init(self, ctx: ActorContext, state: Any) -> None:
        type(self).incarnations += 1
        self.incarnation = type(self).incarnations
        STOPPED[self.incarnation] = threading.Event()

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        if "spawn" in message:
            ctx.spawn(message["manifest"], name=message["spawn"])
        if "gate" in message:
            THREADS[self.incarnation] = threading.current_thread()
            signal(f"parent:{self.incarnation}:blocked").set()
            GATES[message["gate"]].wait(WAIT)
            raise RuntimeError("the old handler crashes at last")
        return {"incarnation": self.incarnation}

    def on_stop(self, ctx: ActorContext) -> None:
        STOPPED[self.incarnation].set()


def parent_manifest(tmp_path: Path) -> Path:
    folder = tmp_path / "parent"
    folder.mkdir()
    path = folder / "manifest.toml"
    path.write_text(
        'name = "parent"\nversion = "0.1.0"\n'
        'component = "tests.test_review2_runtime:Parent"\n\n'
        '[[handler]]\ntype = "supervisor"\n',
        encoding="utf-8",
    )
    return path


def test_a_late_crash_of_a_replaced_incarnation_leaves_the_new_ones_children(
    rt: Runtime, manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """A handler that outlived its shutdown in a one_for_all restart, then crashed, used to
    stop the children the *next* incarnation spawned: the cell's children are stopped on
    any exit of any incarnation, not only of the current one."""
    Parent.incarnations = 0
    STOPPED.clear()
    THREADS.clear()
    gate = new_gate("old")
    rt.start_supervisor(
        supervisor_spec(
            "sup",
            ChildSpec(name="parent", manifest=parent_manifest(tmp_path), shutdown=50),
            worker(manifest, "sib"),
            strategy="one_for_all",
        )
    )
    parent = rt.handle("parent")
    blocked = in_thread(parent.request, {"gate": "old"}, WAIT)
    assert signal("parent:1:blocked").wait(WAIT)
    with pytest.raises(ActorFailed):
        rt.handle("sib").request({"crash": "restart the group"}, timeout=WAIT)
    with pytest.raises(ActorStopped):  # its handler outlived the 50 ms shutdown
        blocked.result(WAIT)
    wait_until(lambda: parent.request("up", timeout=WAIT)["incarnation"] == 2)
    kid_manifest = manifest(name="kid")
    parent.request({"spawn": "kid", "manifest": str(kid_manifest)}, timeout=WAIT)
    assert rt.handle("kid").request("hello", timeout=WAIT)["message"] == "hello"

    gate.set()  # the old incarnation's handler now crashes
    assert STOPPED[1].wait(WAIT)
    THREADS[1].join(WAIT)  # its thread ends once the crash is handled
    assert not THREADS[1].is_alive()

    assert rt.handle("kid").request("still here", timeout=WAIT)["message"] == "still here"
    assert parent.request("fine", timeout=WAIT)["incarnation"] == 2


class SlowIgnore(Actor):
    """Its second init waits on the gate ``ignore``, then returns IGNORE."""

    incarnations = 0

    def init(self, ctx: ActorContext, state: Any) -> Any:
        type(self).incarnations += 1
        self.incarnation = type(self).incarnations
        if self.incarnation == 2:
            signal("slow:init:2").set()
            GATES["ignore"].wait(WAIT)
            return IGNORE
        return None

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        return {"incarnation": self.incarnation, "message": message}


def test_an_ignore_from_an_incarnation_being_replaced_keeps_the_mailbox(
    rt: Runtime, manifest: Callable[..., Path], tmp_path: Path
) -> None:
    """rest_for_one [b, slow]: b's crash restarts both; slow's init (incarnation 2) is
    still running when b crashes again, so the supervisor stops slow to restart it (keeping
    its mailbox); that init then returns IGNORE. The incarnation being replaced used to give
    the whole cell up: the request queued for slow failed with ActorStopped, and slow came
    back as a new actor (a new id). It is the restart's to decide, and it keeps the queue."""
    SlowIgnore.incarnations = 0
    gate = new_gate("ignore")
    folder = tmp_path / "slow"
    folder.mkdir()
    slow_manifest = folder / "manifest.toml"
    slow_manifest.write_text(
        'name = "slow"\nversion = "0.1.0"\ncomponent = "tests.test_review2_runtime:SlowIgnore"\n',
        encoding="utf-8",
    )
    rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "b"),
            ChildSpec(name="slow", manifest=slow_manifest, shutdown=5000),
            strategy="rest_for_one",
        )
    )
    slow = rt.handle("slow")
    first_id = slow.id
    with pytest.raises(ActorFailed):
        rt.handle("b").request({"crash": "restart b and slow"}, timeout=WAIT)
    assert signal("slow:init:2").wait(WAIT)
    queued = in_thread(slow.request, "queued while it restarts", WAIT)
    wait_until(lambda: rt.find_cell("slow") is not None and rt.find_cell("slow").queued() == 1)
    crasher = in_thread(rt.handle("b").request, {"crash": "again"}, WAIT)
    cell = rt.find_cell("slow")
    assert cell is not None
    # The supervisor's thread now waits for slow to stop (its mailbox kept for the restart).
    wait_until(lambda: cell.status is CellStatus.EXITED)
    gate.set()  # slow's init returns IGNORE while its supervisor stops it for the restart
    with pytest.raises(ActorFailed):
        crasher.result(WAIT)

    assert queued.result(WAIT) == {"incarnation": 3, "message": "queued while it restarts"}
    assert slow.id == first_id


BEGUN: list[tuple[int, Any]] = []
BEGUN_LOCK = threading.Lock()


class Counter(Actor):
    """Notes each message as its handler begins, with the incarnation that took it."""

    incarnations = 0

    def init(self, ctx: ActorContext, state: Any) -> None:
        with BEGUN_LOCK:
            type(self).incarnations += 1
            self.incarnation = type(self).incarnations

    def handle_send(self, ctx: ActorContext, message: Any) -> None:
        with BEGUN_LOCK:
            BEGUN.append((self.incarnation, message))

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        self.handle_send(ctx, message)
        return message


@pytest.mark.slow
@pytest.mark.parametrize("shutdown", ["brutal_kill", 0, 2000])
def test_one_senders_messages_begin_once_in_order_across_sibling_restarts(
    rt: Runtime, manifest: Callable[..., Path], tmp_path: Path, shutdown: str | int
) -> None:
    """one_for_all [counter, crasher]: the crasher crashes at random while one thread sends
    to the counter; each restart stops the counter (brutal_kill, or within its shutdown)
    and hands its queue to the next incarnation. Every message begins exactly once, in
    the order sent, and no incarnation begins one after a later incarnation began any."""
    Counter.incarnations = 0
    BEGUN.clear()
    folder = tmp_path / "counter"
    folder.mkdir()
    counter_manifest = folder / "manifest.toml"
    counter_manifest.write_text(
        'name = "counter"\nversion = "0.1.0"\ncomponent = "tests.test_review2_runtime:Counter"\n',
        encoding="utf-8",
    )
    rt.start_supervisor(
        supervisor_spec(
            "sup",
            ChildSpec(name="counter", manifest=counter_manifest, shutdown=shutdown),
            worker(manifest, "crasher"),
            strategy="one_for_all",
            intensity=100_000,
        )
    )
    counter, crasher = rt.handle("counter"), rt.handle("crasher")
    stop = threading.Event()

    def chaos() -> None:
        while not stop.wait(0.002):
            crasher.crash("chaos")

    monkey = threading.Thread(target=chaos)
    monkey.start()
    pace = threading.Event()
    try:
        for n in range(500):
            counter.send(n)
            pace.wait(0.001)  # spread the sends over many restarts
    finally:
        stop.set()
        monkey.join(WAIT)
    assert counter.request("sync", timeout=WAIT) == "sync"

    with BEGUN_LOCK:
        begun = list(BEGUN)
    numbers = [message for _, message in begun if isinstance(message, int)]
    assert numbers == list(range(500))
    incarnations = [incarnation for incarnation, _ in begun]
    assert incarnations == sorted(incarnations)
    assert Counter.incarnations > 3
