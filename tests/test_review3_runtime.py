"""Review 3: defects left in the runtime after review 2, each with its regression test."""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_runtime_edge_cases as edge_cases
from tests.edge_actors import GATES, signal
from tests.test_runtime_edge_cases import (
    WAIT,
    in_thread,
    logged,
    new_gate,
    supervisor_spec,
    wait_until,
    worker,
)
from theater_py import ActorFailed, ActorStopped, ChildSpec, RequestTimeout, Runtime
from theater_py._cell import CellStatus

edge = edge_cases.edge
rt = edge_cases.rt
manifest = edge_cases.manifest


def test_a_second_stop_waits_for_the_first_and_sees_its_outcome(rt: Runtime, manifest):
    hold = new_gate("hold")
    handle = rt.start_actor(manifest(name="w"))
    cell = rt.find_cell("w")
    assert cell is not None
    handle.send({"gate": "hold"})
    assert signal("w:blocked").wait(WAIT)
    first = in_thread(handle.stop, WAIT)
    wait_until(lambda: cell.status is CellStatus.STOPPING)

    # The handler still runs: a second stop must not report the actor stopped yet.
    with pytest.raises(RequestTimeout):
        handle.stop(timeout=0.2)
    assert logged("stop", "w") == []

    second = in_thread(lambda: (handle.stop(WAIT), list(logged("stop", "w")))[1])
    hold.set()
    assert first.result(WAIT) is None
    assert second.result(WAIT) == [("stop", "w", 1)]  # on_stop had run when it returned
    assert cell.status is CellStatus.STOPPED
    assert [e.event_type for e in cell.chain.events()].count("actor-stop") == 1


def test_a_second_stop_sees_the_first_one_time_out(rt: Runtime, manifest):
    hold = new_gate("hold")
    handle = rt.start_actor(manifest(name="w"))
    cell = rt.find_cell("w")
    assert cell is not None
    handle.send({"gate": "hold"})
    assert signal("w:blocked").wait(WAIT)
    first = in_thread(handle.stop, 0.3)
    wait_until(lambda: cell.status is CellStatus.STOPPING)

    with pytest.raises(RequestTimeout):  # the same outcome as the first: it did not finish
        handle.stop(timeout=WAIT)
    with pytest.raises(RequestTimeout):
        first.result(WAIT)
    assert cell.status is CellStatus.STOPPED
    hold.set()


# -- a handle addresses one actor: its restarts, never a newer actor of the same name ------------


def test_a_stale_handle_does_not_reach_a_new_actor_of_the_same_name(rt: Runtime, manifest):
    path = manifest(name="w")
    old = rt.start_actor(path)
    old_id = old.id
    old.stop(timeout=WAIT)
    new = rt.start_actor(path)

    with pytest.raises(ActorStopped):
        old.request("hello", timeout=WAIT)
    with pytest.raises(ActorStopped):
        old.send("hello")
    assert not old.is_alive()
    assert old.id == old_id != new.id
    old.stop(timeout=WAIT)  # stops nothing: its actor is stopped already
    assert new.request("hello", timeout=WAIT)["incarnation"] == 2  # counted by name
    assert logged("handled", "w") == [("handled", "w", 2, "hello")]


def test_a_stale_handle_of_a_stopping_actor_does_not_stop_its_successor(rt: Runtime, manifest):
    hold = new_gate("hold")
    path = manifest(name="w")
    old = rt.start_actor(path)
    old.send({"gate": "hold"})
    assert signal("w:blocked").wait(WAIT)
    first = in_thread(old.stop, WAIT)
    wait_until(lambda: rt.find_cell("w") is None)  # stopping: the name is free
    new = rt.start_actor(path)

    with pytest.raises(RequestTimeout):  # it waits for its own actor's stop
        old.stop(timeout=0.2)
    assert new.is_alive()
    hold.set()
    assert first.result(WAIT) is None
    old.stop(timeout=WAIT)
    assert new.request("still here", timeout=WAIT)["message"] == "still here"


def test_a_handle_to_an_actor_given_up_does_not_reach_its_successor(rt: Runtime, manifest):
    path = manifest(name="w")
    old = rt.start_actor(path, intensity=0)
    with pytest.raises(ActorFailed):
        old.request({"crash": "once is too often"}, timeout=WAIT)
    wait_until(lambda: rt.find_cell("w") is None)
    new = rt.start_actor(path)

    with pytest.raises(ActorStopped):
        old.request("hello", timeout=WAIT)
    assert new.request("hello", timeout=WAIT)["incarnation"] == 2


def test_a_handle_follows_its_actor_started_afresh_by_its_supervisor(rt: Runtime, manifest):
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "t", restart="transient"),
            worker(manifest, "a"),
            strategy="one_for_all",
        )
    )
    handle = rt.handle("t")
    handle.request({"exit": True}, timeout=WAIT)  # exits normally: its spec stays, no process
    wait_until(lambda: not handle.is_alive())
    with pytest.raises(ActorFailed):
        rt.handle("a").request({"crash": "restart the group"}, timeout=WAIT)
    wait_until(handle.is_alive)  # the group's restart started it afresh
    assert handle.request("fresh", timeout=WAIT)["incarnation"] == 2
    sup.terminate_child("t")
    sup.restart_child("t")
    assert handle.request("again", timeout=WAIT)["incarnation"] == 3


def test_a_handle_follows_its_actor_into_a_restarted_subtree(rt: Runtime, manifest):
    middle = supervisor_spec("middle", worker(manifest, "leaf"), intensity=0)
    top = rt.start_supervisor(
        supervisor_spec(
            "top",
            ChildSpec(name="middle", type="supervisor", supervisor=middle, restart="transient"),
        )
    )
    handle = rt.handle("leaf")
    top.terminate_child("middle")
    with pytest.raises(ActorStopped):
        handle.request("down", timeout=WAIT)
    top.restart_child("middle")  # a new supervisor, with a new leaf, in the same place
    assert handle.request("back", timeout=WAIT)["incarnation"] == 2


# -- a supervisor given up from another thread while it restarts a child -------------------------


def test_a_supervisor_given_up_during_a_restart_leaves_no_child_running(
    rt: Runtime, manifest, monkeypatch: pytest.MonkeyPatch
):
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "t", restart="transient"),
            worker(manifest, "a"),
            strategy="one_for_all",
        )
    )
    rt.handle("t").request({"exit": True}, timeout=WAIT)  # no process: a restart makes it anew
    wait_until(lambda: rt.find_cell("t") is None)
    making, hold = signal("making t"), new_gate("make")
    made: list[Any] = []
    make_target = rt.make_target

    def slow_make_target(spec: ChildSpec) -> Any:
        if spec.name == "t":
            making.set()
            GATES["make"].wait(WAIT)
        made.append(make_target(spec))
        return made[-1]

    monkeypatch.setattr(rt, "make_target", slow_make_target)
    with pytest.raises(ActorFailed):
        rt.handle("a").request({"crash": "restart the group"}, timeout=WAIT)
    assert making.wait(WAIT)  # the supervisor's thread is in the middle of the restart

    given_up = in_thread(sup.terminate, "given up")
    hold.set()
    given_up.result(WAIT)
    assert sup._ref.actor_stopped.wait(WAIT)  # its thread is done with every message

    assert [target.name for target in made] == ["t"]
    assert not made[0].is_alive()
    assert rt.find_cell("t") is None
    assert rt.find_cell("a") is None
