"""The mailbox under every crash and stop: issue 10's defects 1, 2, 3, 5 and 6.

Each test forces its interleaving (gates, signals, a patched hook that holds a
thread at the racy spot, bounded), and fails on the code before the fix.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from typing import Any

import pykka
import pytest

from tests import edge_actors
from tests import test_runtime_edge_cases as edge_cases
from tests.edge_actors import LOG, signal
from tests.test_runtime_edge_cases import (
    STALL,
    WAIT,
    in_thread,
    logged,
    new_gate,
    queued,
    supervisor_spec,
    wait_until,
    worker,
)
from theater_py import (
    ActorFailed,
    ActorStopped,
    ReplyEncodeError,
    RequestTimeout,
    Runtime,
)
from theater_py import _cell as cell_module
from theater_py._cell import ActorCell, _ActorProcess

edge = edge_cases.edge
rt = edge_cases.rt
manifest = edge_cases.manifest


# -- defect 1: a brutal kill never blocks --------------------------------------------------------


class RacingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that once says it holds a message it no longer holds.

    That is what ``empty()`` answers a reader on another thread when the actor's own
    thread takes the last message in between: the old drain then blocked in ``get()``.
    """

    stale = threading.Event()

    def empty(self) -> bool:
        if self.stale.is_set():
            self.stale.clear()
            return False
        return super().empty()


def test_a_brutal_kill_never_blocks_on_a_message_the_actor_took(
    rt: Runtime, manifest, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(pykka.ThreadingActor, "_create_actor_inbox", staticmethod(RacingQueue))
    handle = rt.start_actor(manifest(name="w"))
    bystander = rt.start_actor(manifest(name="bystander"))
    assert handle.request("warm", timeout=WAIT)["message"] == "warm"
    RacingQueue.stale.set()
    try:
        stopper = in_thread(rt.stop_actor, "w", 0)
        assert stopper.result(WAIT) is True
    finally:
        RacingQueue.stale.clear()
    with pytest.raises(ActorStopped):
        handle.request("after", timeout=WAIT)
    assert bystander.request("fine", timeout=WAIT)["message"] == "fine"


@pytest.mark.slow
def test_brutal_kills_racing_a_busy_mailbox_answer_every_caller(edge: None, manifest):
    runtime = Runtime(in_memory=True)
    try:
        path = manifest(name="busy")
        for round_ in range(40):
            handle = runtime.start_actor(path, name=f"busy-{round_}")
            callers = [in_thread(handle.request, n, WAIT) for n in range(20)]
            killer = in_thread(runtime.stop_actor, handle.name, 0)
            assert killer.result(WAIT) is True
            for caller in callers:
                with contextlib.suppress(ActorStopped):
                    assert caller.result(WAIT)["message"] in range(20)
    finally:
        runtime.shutdown(timeout=WAIT)


def test_a_stop_with_no_limit_still_ends(rt: Runtime, manifest, monkeypatch: pytest.MonkeyPatch):
    # `infinity` and timeout=None wait LONGEST_WAIT (an hour); a short one stands for it.
    monkeypatch.setattr(cell_module, "LONGEST_WAIT", 0.2, raising=False)
    hold = new_gate("hold")
    sup = rt.start_supervisor(supervisor_spec("sup", worker(manifest, "w", shutdown="infinity")))
    rt.handle("w").send({"gate": "hold"})
    assert signal("w:blocked").wait(WAIT)
    stopper = in_thread(sup.terminate_child, "w")
    try:
        assert stopper.result(WAIT) is False
    finally:
        hold.set()
    assert statuses_of(sup) == {"w": "exited"}


def statuses_of(sup: Any) -> dict[str, str]:
    return {row.name: row.status for row in sup.which_children()}


# -- defects 2 and 3: an init crash during a restart -------------------------------------------


def _hold_detach_of(
    monkeypatch: pytest.MonkeyPatch, incarnation: int, until: Any, then: Any = None
) -> None:
    """Hold the detach of an ending incarnation until ``until()`` (at most STALL s).

    It stands for the ending thread being preempted right there. Before the fix the
    supervisor heard of a failed ``init`` before that detach, so ``until`` came true;
    after it, nothing can happen meanwhile and the hold just runs out.
    """
    original = ActorCell._detach

    def held(self: ActorCell, process: Any, *args: Any) -> Any:
        if process.incarnation == incarnation:
            stop = threading.Event()
            for _ in range(int(STALL / 0.005)):
                if until(self):
                    break
                stop.wait(0.005)
            if then is not None:
                then(self)
        return original(self, process, *args)

    monkeypatch.setattr(ActorCell, "_detach", held)


def test_an_init_crash_during_a_restart_keeps_the_mailbox_in_order(
    rt: Runtime, manifest, monkeypatch: pytest.MonkeyPatch
):
    handle = rt.start_actor(
        manifest(name="w", init_state={"fail_init_at": [2]}), intensity=10, period=60
    )
    _hold_detach_of(
        monkeypatch,
        2,
        until=lambda cell: cell.incarnation >= 3,
        then=lambda cell: (handle.send("newer"), signal("newer sent").set()),
    )
    hold = new_gate("hold")
    handle.send({"gate": "hold"})
    assert signal("w:blocked").wait(WAIT)
    crash = in_thread(handle.request, {"crash": "first"}, WAIT)
    wait_until(lambda: queued(rt, "w") == 1)
    for n in range(5):
        handle.send(n)
    hold.set()
    with pytest.raises(ActorFailed):
        crash.result(WAIT)
    assert signal("newer sent").wait(WAIT)
    assert handle.request("sync", timeout=WAIT)["incarnation"] == 3
    handled = [entry[3] for entry in logged("handled", "w")]
    assert handled == [{"gate": "hold"}, 0, 1, 2, 3, 4, "newer", "sync"]


def test_a_failed_restart_given_up_leaves_no_zombie(
    rt: Runtime, manifest, monkeypatch: pytest.MonkeyPatch
):
    path = manifest(name="w", init_state={"fail_init_at": [2]})
    handle = rt.start_actor(path, intensity=1, period=60)
    root = rt.root
    _hold_detach_of(
        monkeypatch,
        2,
        until=lambda cell: all(row.name != "w" for row in root.which_children()),
    )
    with pytest.raises(ActorFailed):
        handle.request({"crash": "first"}, timeout=WAIT)
    # The restart's init raises: one restart more than the intensity allows.
    wait_until(lambda: all(row.name != "w" for row in root.which_children()))
    wait_until(lambda: not handle.is_alive())
    with pytest.raises(ActorStopped):
        handle.request("to a zombie?", timeout=STALL)
    assert rt.find_cell("w") is None
    assert rt.actors() == []
    again = rt.start_actor(path, name="w")
    assert again.request("second life", timeout=WAIT)["incarnation"] == 3


@pytest.mark.slow
def test_one_senders_messages_keep_their_order_across_crashes_and_failed_restarts(
    rt: Runtime, manifest
):
    failing = [n for n in range(2, 200) if n % 3 == 0]  # every third restart fails
    handle = rt.start_actor(
        manifest(name="w", init_state={"fail_init_at": failing}), intensity=10_000, period=60
    )
    rng = random.Random(10)
    sent: list[int] = []
    crashes = 0
    for n in range(600):
        if rng.random() < 0.08:
            handle.send({"crash": f"chaos {n}"})
            crashes += 1
        handle.send(n)
        sent.append(n)
    assert handle.request("sync", timeout=30)["message"] == "sync"
    handled = [entry[3] for entry in logged("handled", "w") if isinstance(entry[3], int)]
    assert handled == sent  # every message once, in the order sent
    assert crashes > 10
    assert any(entry[0] == "init" and entry[2] in failing for entry in LOG)


# -- defect 6: two incarnations at once -----------------------------------------------------------


def test_a_stop_that_times_out_takes_the_queue_and_flags_the_running_handler(
    rt: Runtime, manifest, caplog: pytest.LogCaptureFixture
):
    hold = new_gate("hold")
    handle = rt.start_actor(manifest(name="w"))
    running = in_thread(handle.request, {"gate": "hold", "keep_ctx": True}, WAIT)
    assert signal("w:blocked").wait(WAIT)
    behind = in_thread(handle.request, "queued behind it", WAIT)
    wait_until(lambda: queued(rt, "w") == 1)
    with pytest.raises(RequestTimeout):
        handle.stop(timeout=0.05)
    # At the timeout, not when the handler returns: the queue is failed, never run.
    with pytest.raises(ActorStopped):
        behind.result(WAIT)
    with pytest.raises(ActorStopped, match="while handling"):
        running.result(WAIT)
    caplog.set_level(logging.WARNING, "theater_py.actor")
    hold.set()
    wait_until(lambda: ("stop", "w", 1) in LOG)
    assert edge_actors.CONTEXTS["w"].stopping.is_set()
    handled = [entry[3] for entry in logged("handled", "w")]
    assert handled == [{"gate": "hold", "keep_ctx": True}]
    wait_until(lambda: any("dropped the reply" in r.getMessage() for r in caplog.records))


def test_a_brutal_kill_in_a_restart_hands_the_queue_to_the_next_incarnation(rt: Runtime, manifest):
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "a"),
            worker(manifest, "b", shutdown="brutal_kill"),
            strategy="one_for_all",
        )
    )
    hold = new_gate("hold")
    b = rt.handle("b")
    running = in_thread(b.request, {"gate": "hold"}, WAIT)
    assert signal("b:blocked").wait(WAIT)
    behind = [in_thread(b.request, n, WAIT) for n in range(3)]
    wait_until(lambda: queued(rt, "b") == 3)
    with pytest.raises(ActorFailed):
        rt.handle("a").request({"crash": "a"}, timeout=WAIT)
    # b is killed at once; its queue runs in its next incarnation, once, in order.
    assert [f.result(WAIT) for f in behind] == [{"incarnation": 2, "message": n} for n in range(3)]
    with pytest.raises(ActorStopped):
        running.result(WAIT)
    hold.set()
    wait_until(lambda: ("stop", "b", 1) in LOG)
    assert [entry[2:] for entry in logged("handled", "b")] == [
        (2, 0),
        (2, 1),
        (2, 2),
        (1, {"gate": "hold"}),
    ]
    assert all(row.status == "running" for row in sup.which_children())


def test_a_brutal_kill_before_init_ran_fails_that_start_and_never_replays_it(
    rt: Runtime, manifest, monkeypatch: pytest.MonkeyPatch
):
    handle = rt.start_actor(manifest(name="w"))
    cell = rt.find_cell("w")
    assert cell is not None
    held = threading.Event()
    original = _ActorProcess.on_start

    def on_start(self: _ActorProcess) -> None:
        original(self)
        if self.incarnation == 2:  # its thread has not taken the init yet
            held.wait(WAIT)

    monkeypatch.setattr(_ActorProcess, "on_start", on_start)
    try:
        assert cell.stop(WAIT, keep_mailbox=True) is True
        second = cell.start_incarnation()
        assert cell.stop(0, keep_mailbox=True) is True
    finally:
        held.set()
    with pytest.raises(ActorStopped, match="before its init ran"):
        second.result(WAIT)
    assert cell.start_incarnation().result(WAIT) is None
    assert handle.request("once", timeout=WAIT)["incarnation"] == 2
    assert [entry[2] for entry in logged("init", "w")] == [1, 2]


# -- smaller: a reply that is not JSON -------------------------------------------------------------


@pytest.mark.parametrize("json_call", [False, True])
def test_a_reply_that_is_not_json_fails_its_caller_and_the_actor_runs_on(
    rt: Runtime, manifest, json_call: bool
):
    handle = rt.start_actor(manifest(name="w"))
    call = handle.request_json if json_call else handle.request
    with pytest.raises(ReplyEncodeError, match="not JSON serializable"):
        call({"unencodable": True}, timeout=WAIT)
    assert handle.request("still here", timeout=WAIT) == {"incarnation": 1, "message": "still here"}
    assert [e.event_type for e in handle.events()].count("actor-crash") == 0
