"""Review 3: defects left in the runtime after review 2, each with its regression test."""

from __future__ import annotations

import pytest

from tests import test_runtime_edge_cases as edge_cases
from tests.edge_actors import signal
from tests.test_runtime_edge_cases import WAIT, in_thread, logged, new_gate, wait_until
from theater_py import RequestTimeout, Runtime
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
