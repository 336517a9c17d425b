"""Review 2: supervisors against OTP's supervisor.erl (significant children, auto_shutdown).

OTP's ``handle_call({start_child, ChildSpec}, ...)`` checks the spec against the
supervisor's ``auto_shutdown`` (``check_childspec/2``): a significant child under
``auto_shutdown = never`` is ``{bad_combination, ...}``, refused before it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import test_runtime_edge_cases as edge_cases
from tests.edge_actors import LOG
from tests.test_runtime_edge_cases import WAIT, supervisor_spec, wait_until, worker
from theater_py import (
    ActorFailed,
    ChildSpec,
    Runtime,
    SupervisorError,
    SupervisorFlags,
    SupervisorSpec,
)

edge = edge_cases.edge
rt = edge_cases.rt
manifest = edge_cases.manifest


def statuses(sup) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {row.name: row.status for row in sup.which_children()}


def test_start_child_refuses_a_significant_child_when_auto_shutdown_is_never(
    rt: Runtime, manifest: Callable[..., Path]
) -> None:
    sup = rt.start_supervisor(supervisor_spec("sup", worker(manifest, "a")))
    significant = worker(manifest, "s", restart="transient", significant=True)

    with pytest.raises(SupervisorError, match=r"s\.significant"):
        sup.start_child(significant)

    assert statuses(sup) == {"a": "running"}
    assert rt.find_cell("s") is None
    assert not [entry for entry in LOG if entry[0] == "init" and entry[1] == "s"]


def test_start_child_refuses_what_is_not_a_child_spec(rt: Runtime) -> None:
    sup = rt.start_supervisor(SupervisorSpec("sup"))

    with pytest.raises(SupervisorError, match="ChildSpec"):
        sup.start_child({"name": "x", "manifest": "x.toml"})  # type: ignore[arg-type]


def test_a_crashing_temporary_significant_child_shuts_its_supervisor_down(
    rt: Runtime, manifest: Callable[..., Path]
) -> None:
    """supervisor.erl do_restart: a temporary child is deleted on any exit, then
    do_auto_shutdown runs; a crash counts as its own exit."""
    inner = SupervisorSpec(
        "inner",
        SupervisorFlags(intensity=5, period=60, auto_shutdown="any_significant"),
        (worker(manifest, "s", restart="temporary", significant=True), worker(manifest, "o")),
    )
    top = rt.start_supervisor(
        supervisor_spec(
            "top", ChildSpec(name="inner", type="supervisor", supervisor=inner, restart="transient")
        )
    )
    with pytest.raises(ActorFailed):
        rt.handle("s").request({"crash": "bye"}, timeout=WAIT)
    wait_until(lambda: statuses(top) == {"inner": "exited"})
    assert rt.find_cell("o") is None


def test_all_significant_in_simple_one_for_one_waits_for_the_last_dynamic_child(
    rt: Runtime, manifest: Callable[..., Path]
) -> None:
    """supervisor.erl do_auto_shutdown, simple_one_for_one: shut down when dyn_size is 0."""
    template = worker(manifest, "tpl", restart="transient", significant=True)
    inner = SupervisorSpec(
        "inner",
        SupervisorFlags("simple_one_for_one", 5, 60, auto_shutdown="all_significant"),
        (template,),
    )
    top = rt.start_supervisor(
        supervisor_spec(
            "top", ChildSpec(name="inner", type="supervisor", supervisor=inner, restart="transient")
        )
    )
    sup = rt.supervisor("inner")
    sup.start_child("d1")
    sup.start_child("d2")
    rt.handle("d1").request({"exit": True}, timeout=WAIT)
    wait_until(lambda: statuses(sup) == {"d2": "running"})
    assert statuses(top) == {"inner": "running"}
    rt.handle("d2").request({"exit": True}, timeout=WAIT)
    wait_until(lambda: statuses(top) == {"inner": "exited"})


def _escalate(rt: Runtime, crasher: str) -> None:
    """Crash ``crasher``, whose supervisor (intensity 0) gives up and is restarted."""
    with pytest.raises(ActorFailed):
        rt.handle(crasher).request({"crash": "escalate"}, timeout=WAIT)


def test_a_restarted_supervisor_starts_its_static_specs_again(
    rt: Runtime, manifest: Callable[..., Path]
) -> None:
    """supervisor.erl: a restarted supervisor runs init again, so its children are the
    specs init returns: a static child deleted with delete_child is back."""
    inner = supervisor_spec("inner", worker(manifest, "a"), worker(manifest, "b"), intensity=0)
    top = rt.start_supervisor(
        supervisor_spec("top", ChildSpec(name="inner", type="supervisor", supervisor=inner))
    )
    sup = rt.supervisor("inner")
    sup.terminate_child("b")
    sup.delete_child("b")
    assert statuses(sup) == {"a": "running"}

    _escalate(rt, "a")
    wait_until(lambda: [row.restarts for row in top.which_children()] == [1])
    sup = rt.supervisor("inner")
    wait_until(lambda: statuses(sup) == {"a": "running", "b": "running"})
    assert rt.handle("b").request("back", timeout=WAIT)["message"] == "back"


def test_a_restarted_simple_one_for_one_supervisor_has_no_dynamic_children(
    rt: Runtime, manifest: Callable[..., Path]
) -> None:
    """supervisor.erl init_dynamic: a restarted simple_one_for_one starts empty; its
    dynamic children (start_child's) ended with the old incarnation."""
    template = worker(manifest, "tpl")
    inner = SupervisorSpec(
        "inner", SupervisorFlags("simple_one_for_one", intensity=0, period=60), (template,)
    )
    top = rt.start_supervisor(
        supervisor_spec("top", ChildSpec(name="inner", type="supervisor", supervisor=inner))
    )
    sup = rt.supervisor("inner")
    sup.start_child("d1")
    sup.start_child("d2")

    _escalate(rt, "d1")
    wait_until(lambda: [row.restarts for row in top.which_children()] == [1])
    wait_until(lambda: statuses(top) == {"inner": "running"})
    assert statuses(rt.supervisor("inner")) == {}
    assert rt.find_cell("d1") is None
    assert rt.find_cell("d2") is None
