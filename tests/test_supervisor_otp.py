"""Supervisors, OTP-exact: issue 10's defects 7 and 8 and its OTP features.

Each test mirrors a case of OTP's supervisor_SUITE (named in its docstring) with
theater-py's names: a child's ``Id`` is its name, ``undefined`` a spec with no
process (status ``exited``), ``{error, running}`` a SupervisorError.
"""

from __future__ import annotations

import pytest

from tests import test_runtime_edge_cases as edge_cases
from tests.edge_actors import LOG
from tests.test_runtime_edge_cases import WAIT, logged, supervisor_spec, wait_until, worker
from theater_py import (
    ActorFailed,
    ActorNameInUse,
    ActorNotFound,
    ActorStartError,
    ActorStopped,
    ChildSpec,
    Runtime,
    SupervisorError,
    SupervisorFlags,
    SupervisorSpec,
    check_childspecs,
)

edge = edge_cases.edge
rt = edge_cases.rt
manifest = edge_cases.manifest


def statuses(sup) -> dict[str, str]:
    return {row.name: row.status for row in sup.which_children()}


def inits(name: str) -> list[int]:
    return [entry[2] for entry in LOG if entry[0] == "init" and entry[1] == name]


# -- defect 7: a supervisor that gives up exits with `shutdown` ----------------------------------


@pytest.mark.parametrize(("restart", "restarted"), [("transient", False), ("permanent", True)])
def test_a_supervisor_that_gives_up_exits_with_shutdown(
    rt: Runtime, manifest, restart: str, restarted: bool
):
    """supervisor_SUITE: restart of a supervisor child after it reached its intensity."""
    middle = supervisor_spec("middle", worker(manifest, "leaf"), intensity=0)
    top = rt.start_supervisor(
        supervisor_spec(
            "top", ChildSpec(name="middle", type="supervisor", supervisor=middle, restart=restart)
        )
    )
    with pytest.raises(ActorFailed):
        rt.handle("leaf").request({"crash": "give up"}, timeout=WAIT)
    if restarted:  # permanent: any exit is restarted
        wait_until(lambda: statuses(top) == {"middle": "running"})
        assert rt.handle("leaf").request("back", timeout=WAIT)["incarnation"] == 2
    else:  # transient: shutdown is not abnormal, so it stays down; its spec stays
        wait_until(lambda: statuses(top) == {"middle": "exited"})
        assert rt.find_cell("leaf") is None
        assert inits("leaf") == [1]
    assert top.is_alive()
    events = [e for e in top.chain.events() if e.event_type == "child-exited"]
    assert restarted or events[0].data == {"child": "middle", "reason": "shutdown"}


# -- defect 8: a transient child that exited normally, in a restarted subtree ----------------------


def test_restarting_a_subtree_starts_its_normally_exited_transient_child_afresh(
    rt: Runtime, manifest
):
    """supervisor_SUITE: transient children kept with pid undefined across a restart."""
    middle = supervisor_spec(
        "middle",
        worker(manifest, "t", restart="transient"),
        worker(manifest, "p"),
        intensity=0,
    )
    top = rt.start_supervisor(
        supervisor_spec("top", ChildSpec(name="middle", type="supervisor", supervisor=middle))
    )
    rt.handle("t").request({"exit": True}, timeout=WAIT)
    inner = rt.supervisor("middle")
    wait_until(lambda: statuses(inner) == {"t": "exited", "p": "running"})
    with pytest.raises(ActorFailed):
        rt.handle("p").request({"crash": "restart the subtree"}, timeout=WAIT)
    wait_until(lambda: statuses(inner) == {"t": "running", "p": "running"})
    assert statuses(top) == {"middle": "running"}
    assert [row.restarts for row in top.which_children()] == [1]
    assert rt.handle("t").request("fresh", timeout=WAIT)["incarnation"] == 2
    assert rt.handle("p").request("back", timeout=WAIT)["incarnation"] == 2


def test_a_one_for_all_restart_starts_a_normally_exited_transient_sibling(rt: Runtime, manifest):
    """supervisor_SUITE one_for_all: every child with a spec is started again."""
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "t", restart="transient"),
            worker(manifest, "a"),
            strategy="one_for_all",
        )
    )
    rt.handle("t").request({"exit": True}, timeout=WAIT)
    wait_until(lambda: statuses(sup)["t"] == "exited")
    with pytest.raises(ActorFailed):
        rt.handle("a").request({"crash": "a"}, timeout=WAIT)
    wait_until(lambda: statuses(sup) == {"t": "running", "a": "running"})
    assert rt.handle("t").request("fresh", timeout=WAIT)["incarnation"] == 2


# -- terminate_child, restart_child, delete_child, get_childspec -----------------------------------


def test_child_admin(rt: Runtime, manifest):
    """supervisor_SUITE child_adm: terminate keeps the spec; restart, delete need no process."""
    spec_a = worker(manifest, "a")
    sup = rt.start_supervisor(supervisor_spec("sup", spec_a, worker(manifest, "b")))
    assert sup.get_childspec("a") == spec_a
    with pytest.raises(ActorNotFound):
        sup.get_childspec("nobody")
    with pytest.raises(SupervisorError, match="running"):
        sup.restart_child("a")
    with pytest.raises(SupervisorError, match="running"):
        sup.delete_child("a")
    handle = rt.handle("a")
    assert sup.terminate_child("a") is True
    assert statuses(sup) == {"a": "exited", "b": "running"}
    assert sup.count_children().active == 1
    assert sup.count_children().specs == 2
    with pytest.raises(ActorStopped):
        handle.request("no process", timeout=WAIT)
    with pytest.raises(SupervisorError, match="has the spec of"):  # OTP: already_present
        sup.start_child(spec_a)
    with pytest.raises(ActorNameInUse):  # OTP: already_started
        sup.start_child(worker(manifest, "b"))
    assert sup.restart_child("a") is not None
    assert handle.request("back", timeout=WAIT)["incarnation"] == 2  # the handle follows
    assert statuses(sup) == {"a": "running", "b": "running"}
    assert sup.terminate_child("a") is True
    sup.delete_child("a")
    assert statuses(sup) == {"b": "running"}
    for call in (sup.restart_child, sup.delete_child, sup.get_childspec):
        with pytest.raises(ActorNotFound):
            call("a")
    with pytest.raises(ActorNotFound):
        sup.terminate_child("a")


def test_terminate_child_forgets_a_temporary_child(rt: Runtime, manifest):
    """supervisor_SUITE temporary_*: a temporary child's spec goes with its process."""
    sup = rt.start_supervisor(supervisor_spec("sup", worker(manifest, "t", restart="temporary")))
    assert sup.terminate_child("t") is True
    assert sup.which_children() == []
    with pytest.raises(ActorNotFound):
        sup.restart_child("t")


def test_a_failed_restart_child_keeps_the_spec(rt: Runtime, manifest):
    """OTP: restart_child returns the start error; the child stays with pid undefined."""
    sup = rt.start_supervisor(
        supervisor_spec("sup", worker(manifest, "w", init_state={"fail_init_at": [2]}))
    )
    sup.terminate_child("w")
    with pytest.raises(ActorStartError, match="init refuses"):
        sup.restart_child("w")
    assert statuses(sup) == {"w": "exited"}
    assert sup.restart_child("w") is not None
    assert rt.handle("w").request("third time", timeout=WAIT)["incarnation"] == 3


def test_simple_one_for_one_refuses_restart_and_delete_and_counts_one_spec(rt: Runtime, manifest):
    """supervisor_SUITE simple_one_for_one / count_children: specs is 1."""
    template = worker(manifest, "template")
    sup = rt.start_supervisor(
        SupervisorSpec(
            "pool", SupervisorFlags(strategy="simple_one_for_one", intensity=5), (template,)
        )
    )
    for name in ("w1", "w2", "w3"):
        sup.start_child(name)
    counts = sup.count_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (1, 3, 0, 3)
    with pytest.raises(SupervisorError, match="simple_one_for_one"):
        sup.restart_child("w1")
    with pytest.raises(SupervisorError, match="simple_one_for_one"):
        sup.delete_child("w1")
    assert sup.terminate_child("w1") is True
    assert [row.name for row in sup.which_children()] == ["w2", "w3"]


# -- check_childspecs ----------------------------------------------------------------------------


def test_check_childspecs(manifest):
    """supervisor_SUITE sup_flags / child_specs: the checks name the child and field."""
    a = ChildSpec(name="a", manifest="a.toml")
    sig = ChildSpec(name="s", manifest="s.toml", restart="transient", significant=True)
    assert check_childspecs([a, sig]) is None
    assert check_childspecs([a, sig], "any_significant") is None
    with pytest.raises(SupervisorError, match="duplicate"):
        check_childspecs([a, a])
    with pytest.raises(SupervisorError, match=r"children\[1\]"):
        check_childspecs([a, {"name": "b"}])
    with pytest.raises(SupervisorError, match=r"s\.significant"):
        check_childspecs([sig], "never")
    with pytest.raises(SupervisorError, match="auto_shutdown"):
        check_childspecs([a], "sometimes")
    with pytest.raises(SupervisorError, match="sequence"):
        check_childspecs("a")
    with pytest.raises(SupervisorError, match="permanent child cannot be significant"):
        ChildSpec(name="p", manifest="p.toml", significant=True)
    with pytest.raises(SupervisorError, match="significant"):
        SupervisorSpec("sup", SupervisorFlags(), (sig,))


# -- significant children and auto_shutdown -------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "exits", "shut_down"),
    [
        ("any_significant", ["s1"], True),
        ("all_significant", ["s1"], False),
        ("all_significant", ["s1", "s2"], True),
    ],
)
def test_auto_shutdown(rt: Runtime, manifest, mode: str, exits: list[str], shut_down: bool):
    """supervisor_SUITE auto_shutdown_*: the supervisor exits with shutdown."""
    inner = SupervisorSpec(
        "inner",
        SupervisorFlags(intensity=5, period=60, auto_shutdown=mode),
        (
            worker(manifest, "s1", restart="transient", significant=True),
            worker(manifest, "s2", restart="temporary", significant=True),
            worker(manifest, "other"),
        ),
    )
    top = rt.start_supervisor(
        supervisor_spec(
            "top", ChildSpec(name="inner", type="supervisor", supervisor=inner, restart="transient")
        )
    )
    for name in exits:
        rt.handle(name).request({"exit": True}, timeout=WAIT)
    if shut_down:
        wait_until(lambda: statuses(top) == {"inner": "exited"})
        assert rt.find_cell("other") is None
        assert any(e.event_type == "supervisor-auto-shutdown" for e in rt_chain(rt, "inner"))
    else:
        wait_until(lambda: statuses(rt.supervisor("inner"))["s1"] == "exited")
        assert rt.handle("other").request("still", timeout=WAIT)["incarnation"] == 1
        assert statuses(top) == {"inner": "running"}


def rt_chain(rt: Runtime, name: str) -> list:
    return rt._supervisors[name].chain.events()


def test_a_significant_child_terminated_by_its_supervisor_shuts_nothing_down(rt: Runtime, manifest):
    """OTP: auto_shutdown follows a significant child's own exit, not terminate_child."""
    sup = rt.start_supervisor(
        SupervisorSpec(
            "sup",
            SupervisorFlags(auto_shutdown="any_significant"),
            (worker(manifest, "s", restart="transient", significant=True), worker(manifest, "o")),
        )
    )
    sup.terminate_child("s")
    assert sup.is_alive()
    assert rt.handle("o").request("fine", timeout=WAIT)["incarnation"] == 1


# -- exit reasons: ctx.stop(reason) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "reason", "restarted"),
    [
        ("permanent", "shutdown", True),
        ("permanent", ["shutdown", "bye"], True),
        ("transient", "shutdown", False),
        ("transient", ["shutdown", "bye"], False),
        ("transient", "boom", True),
        ("temporary", "boom", False),
        ("temporary", "shutdown", False),
    ],
)
def test_restart_type_by_exit_reason_with_shutdown_reasons(
    rt: Runtime, manifest, restart: str, reason: object, restarted: bool
):
    """supervisor_SUITE permanent/transient/temporary_normal|shutdown|abnormal."""
    sup = rt.start_supervisor(supervisor_spec("sup", worker(manifest, "w", restart=restart)))
    handle = rt.handle("w")
    handle.request({"exit": reason}, timeout=WAIT)
    if restarted:
        assert handle.request("again", timeout=WAIT)["incarnation"] == 2
    else:
        wait_until(lambda: not handle.is_alive())
        with pytest.raises(ActorStopped):
            handle.request("again", timeout=WAIT)
        assert inits("w") == [1]
    rows = sup.which_children()
    assert [row.status for row in rows] == (
        ["running"] if restarted else ([] if restart == "temporary" else ["exited"])
    )


def test_ctx_stop_refuses_a_reason_that_is_not_one(rt: Runtime, manifest):
    handle = rt.start_actor(manifest(name="w"))
    with pytest.raises(ActorFailed, match="reason"):
        handle.request({"exit": ["not shutdown", 1]}, timeout=WAIT)


# -- init returns IGNORE --------------------------------------------------------------------------


def test_an_init_that_returns_ignore_keeps_the_spec_with_no_process(rt: Runtime, manifest):
    """supervisor_SUITE sup_start_ignore_child: {ok, undefined}, restart_child later."""
    sup = rt.start_supervisor(supervisor_spec("sup", worker(manifest, "a")))
    result = sup.start_child(worker(manifest, "lazy", init_state={"ignore_at": [1]}))
    assert result is None
    assert statuses(sup) == {"a": "running", "lazy": "exited"}
    assert rt.find_cell("lazy") is None
    assert sup.restart_child("lazy") is not None
    assert rt.handle("lazy").request("now", timeout=WAIT)["incarnation"] == 2
    gone = worker(manifest, "gone", restart="temporary", init_state={"ignore_at": [1]})
    assert sup.start_child(gone) is None
    assert "gone" not in statuses(sup)


def test_a_static_child_that_ignores_its_start_does_not_fail_the_tree(rt: Runtime, manifest):
    """supervisor_SUITE sup_start_ignore_*: the supervisor starts; the child has no process."""
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup", worker(manifest, "lazy", init_state={"ignore_at": [1]}), worker(manifest, "b")
        )
    )
    assert statuses(sup) == {"lazy": "exited", "b": "running"}


# -- a failed restart in a group retries the whole group (try_again) ------------------------------


def test_a_failed_restart_in_one_for_all_restarts_the_whole_group_again(rt: Runtime, manifest):
    """supervisor_SUITE one_for_all_restart_failure (try_again)."""
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "a"),
            worker(manifest, "b", init_state={"fail_init_at": [2]}),
            strategy="one_for_all",
        )
    )
    with pytest.raises(ActorFailed):
        rt.handle("a").request({"crash": "a"}, timeout=WAIT)
    # b's restart fails: a, already restarted, is stopped and both start again.
    wait_until(lambda: statuses(sup) == {"a": "running", "b": "running"} and len(inits("b")) == 3)
    assert inits("a") == [1, 2, 3]
    assert [entry[2] for entry in logged("stop", "a")] == [1, 2]
    assert rt.handle("a").request("back", timeout=WAIT)["incarnation"] == 3
    assert {row.name: row.restarts for row in sup.which_children()} == {"a": 2, "b": 2}


def test_a_failed_restart_in_rest_for_one_restarts_from_that_child(rt: Runtime, manifest):
    """supervisor_SUITE rest_for_one_restart_failure (try_again)."""
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "a"),
            worker(manifest, "b", init_state={"fail_init_at": [2]}),
            worker(manifest, "c"),
            strategy="rest_for_one",
        )
    )
    with pytest.raises(ActorFailed):
        rt.handle("b").request({"crash": "b"}, timeout=WAIT)
    wait_until(lambda: set(statuses(sup).values()) == {"running"} and len(inits("b")) == 3)
    assert inits("a") == [1]
    assert rt.handle("c").request("back", timeout=WAIT)["incarnation"] >= 2


# -- nothing left behind ---------------------------------------------------------------------------


def test_restart_child_of_a_stopped_supervisor_is_an_error(rt: Runtime, manifest):
    sup = rt.start_supervisor(supervisor_spec("sup", worker(manifest, "a")))
    sup.stop()
    with pytest.raises(SupervisorError, match="stopped"):
        sup.restart_child("a")


def test_a_group_whose_restart_always_fails_gives_up_at_its_intensity(rt: Runtime, manifest):
    """supervisor_SUITE one_for_all_restart_failure: try_again counts toward the intensity."""
    sup = rt.start_supervisor(
        supervisor_spec(
            "sup",
            worker(manifest, "a"),
            worker(manifest, "b", init_state={"fail_init_after": 1}),
            strategy="one_for_all",
            intensity=3,
        )
    )
    with pytest.raises(ActorFailed):
        rt.handle("a").request({"crash": "a"}, timeout=WAIT)
    wait_until(lambda: not sup.is_alive())
    assert rt.find_cell("a") is None
    assert rt.find_cell("b") is None
    assert len(inits("b")) == 4  # the first start, then three failed restarts
    assert any(e.event_type == "supervisor-gave-up" for e in sup.chain.events())
