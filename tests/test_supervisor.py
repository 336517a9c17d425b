"""Supervisors, after the cases of OTP's supervisor_SUITE."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import sample_actors
from tests.conftest import ManifestFactory
from theater_py import (
    ActorFailed,
    ActorStartError,
    ActorStopped,
    Backoff,
    ChildSpec,
    Runtime,
    SupervisorFlags,
    SupervisorSpec,
)
from theater_py import supervisor as supervisor_module


def events_of(log: list, kind: str) -> list:
    return [entry[1] for entry in log if entry[0] == kind]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return
        done.wait(0.005)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def worker_manifest(make_manifest: ManifestFactory, shared) -> Path:
    return make_manifest("Worker")


def tree(
    manifest: Path,
    names: list[str],
    *,
    strategy: str = "one_for_one",
    intensity: int = 5,
    period: float = 60,
    restart: dict[str, str] | None = None,
    name: str = "sup",
    backoff: Backoff | None = None,
    init: dict | None = None,
) -> SupervisorSpec:
    restart = restart or {}
    children = tuple(
        ChildSpec(name=n, manifest=manifest, restart=restart.get(n, "permanent"), init=init)
        for n in names
    )
    flags = SupervisorFlags(strategy=strategy, intensity=intensity, period=period, backoff=backoff)
    return SupervisorSpec(name=name, flags=flags, children=children)


# -- restart type x exit reason ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "exit_message", "restarted"),
    [
        ("permanent", {"crash": "x"}, True),
        ("permanent", {"exit": True}, True),
        ("transient", {"crash": "x"}, True),
        ("transient", {"exit": True}, False),
        ("temporary", {"crash": "x"}, False),
        ("temporary", {"exit": True}, False),
    ],
)
def test_restart_type_by_exit_reason(
    runtime: Runtime, worker_manifest: Path, restart: str, exit_message: dict, restarted: bool
):
    sup = runtime.start_supervisor(tree(worker_manifest, ["w"], restart={"w": restart}))
    handle = runtime.handle("w")
    with contextlib.suppress(ActorFailed):
        handle.request(exit_message)
    if restarted:
        assert handle.request("again", timeout=10)["incarnation"] == 2
        assert sup.which_children()[0].restarts == 1
    else:
        with pytest.raises(ActorStopped):
            handle.request("again", timeout=10)
        assert sample_actors.Worker.incarnations == 1


@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
def test_a_stopped_child_is_never_restarted(runtime: Runtime, worker_manifest: Path, restart: str):
    runtime.start_supervisor(tree(worker_manifest, ["w"], restart={"w": restart}))
    handle = runtime.handle("w")
    runtime.stop_actor("w", timeout=5)
    with pytest.raises(ActorStopped):
        handle.request("x", timeout=5)
    assert runtime.find_cell("w") is None
    assert sample_actors.Worker.incarnations == 1


# -- start and stop order -----------------------------------------------------------------------


def test_children_start_in_order_and_stop_newest_first(runtime: Runtime, worker_manifest: Path):
    sup = runtime.start_supervisor(tree(worker_manifest, ["a", "b", "c"]))
    assert events_of(sample_actors.LOG, "init") == ["a", "b", "c"]
    assert [c.name for c in sup.which_children()] == ["a", "b", "c"]
    sup.stop()
    assert events_of(sample_actors.LOG, "stop") == ["c", "b", "a"]


def test_a_child_failing_to_start_stops_the_started_ones_and_names_itself(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    good = make_manifest("Worker")
    bad = make_manifest("Echo")
    spec = SupervisorSpec(
        name="sup",
        children=(
            ChildSpec(name="a", manifest=good),
            ChildSpec(name="b", manifest=bad, init={"fail_init": "cannot start"}),
            ChildSpec(name="c", manifest=good),
        ),
    )
    with pytest.raises(ActorStartError, match=r"'b'.*cannot start"):
        runtime.start_supervisor(spec)
    assert events_of(sample_actors.LOG, "init") == ["a"]
    assert events_of(sample_actors.LOG, "stop") == ["a"]
    assert runtime.find_cell("a") is None


# -- strategies ----------------------------------------------------------------------------------


def incarnations(runtime: Runtime, names: list[str]) -> dict[str, int]:
    return {n: runtime.handle(n).request("which", timeout=10)["incarnation"] for n in names}


def test_one_for_one_restarts_only_the_crashed_child(runtime: Runtime, worker_manifest: Path):
    runtime.start_supervisor(tree(worker_manifest, ["a", "b", "c"]))
    with pytest.raises(ActorFailed):
        runtime.handle("b").request({"crash": "b"})
    assert incarnations(runtime, ["a", "b", "c"]) == {"a": 1, "b": 4, "c": 3}


def test_one_for_all_restarts_every_child_in_order(runtime: Runtime, worker_manifest: Path):
    runtime.start_supervisor(tree(worker_manifest, ["a", "b", "c"], strategy="one_for_all"))
    sample_actors.LOG.clear()
    with pytest.raises(ActorFailed):
        runtime.handle("b").request({"crash": "b"})
    wait_until(lambda: len(events_of(sample_actors.LOG, "init")) == 3)
    assert events_of(sample_actors.LOG, "stop") == ["b", "c", "a"]
    assert events_of(sample_actors.LOG, "init") == ["a", "b", "c"]


def test_rest_for_one_restarts_the_crashed_child_and_those_after_it(
    runtime: Runtime, worker_manifest: Path
):
    runtime.start_supervisor(tree(worker_manifest, ["a", "b", "c"], strategy="rest_for_one"))
    sample_actors.LOG.clear()
    with pytest.raises(ActorFailed):
        runtime.handle("b").request({"crash": "b"})
    wait_until(lambda: len(events_of(sample_actors.LOG, "init")) == 2)
    assert events_of(sample_actors.LOG, "init") == ["b", "c"]
    assert incarnations(runtime, ["a"]) == {"a": 1}


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_temporary_bystander_is_stopped_and_not_restarted(
    runtime: Runtime, worker_manifest: Path, strategy: str
):
    sup = runtime.start_supervisor(
        tree(worker_manifest, ["a", "b", "t"], strategy=strategy, restart={"t": "temporary"})
    )
    bystander = runtime.handle("t")
    with pytest.raises(ActorFailed):
        runtime.handle("a").request({"crash": "a"})
    wait_until(lambda: [c.name for c in sup.which_children()] == ["a", "b"])
    wait_until(lambda: all(c.status == "running" for c in sup.which_children()))
    with pytest.raises(ActorStopped):
        bystander.request("x", timeout=5)
    assert runtime.find_cell("t") is None
    assert runtime.handle("b").request("y", timeout=10)["incarnation"] == 5


# -- intensity and period ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(supervisor_module, "_clock", fake)
    return fake


def crash(runtime: Runtime, name: str) -> None:
    with pytest.raises(ActorFailed):
        runtime.handle(name).request({"crash": name}, timeout=10)


def test_restarts_spread_over_time_are_tolerated(
    runtime: Runtime, worker_manifest: Path, clock: FakeClock
):
    sup = runtime.start_supervisor(tree(worker_manifest, ["w"], intensity=2, period=10))
    for _ in range(6):
        crash(runtime, "w")
        runtime.handle("w").request("sync", timeout=10)
        clock.now += 6  # never more than two restarts within 10 s
    assert sup.which_children()[0].restarts == 6
    assert sup.is_alive()


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_restarts_bunched_in_the_period_make_the_supervisor_give_up(
    runtime: Runtime, worker_manifest: Path, clock: FakeClock, strategy: str
):
    sup = runtime.start_supervisor(
        tree(worker_manifest, ["w", "other"], intensity=2, period=10, strategy=strategy)
    )
    for _ in range(2):
        crash(runtime, "w")
        runtime.handle("w").request("sync", timeout=10)
        clock.now += 1
    crash(runtime, "w")  # the third restart within 10 s: too many
    wait_until(lambda: not sup.is_alive())
    assert runtime.find_cell("w") is None
    assert runtime.find_cell("other") is None
    assert any(e.event_type == "supervisor-gave-up" for e in sup.chain.events())


# -- escalation ----------------------------------------------------------------------------------


def test_a_leafs_repeated_crashes_escalate_one_level_and_no_further(
    runtime: Runtime, worker_manifest: Path, clock: FakeClock
):
    leaf_sup = SupervisorSpec(
        name="middle",
        flags=SupervisorFlags(intensity=1, period=10),
        children=(ChildSpec(name="leaf", manifest=worker_manifest),),
    )
    top = SupervisorSpec(
        name="top",
        flags=SupervisorFlags(intensity=3, period=10),
        children=(
            ChildSpec(name="sibling", manifest=worker_manifest),
            ChildSpec(name="middle", type="supervisor", supervisor=leaf_sup),
        ),
    )
    sup = runtime.start_supervisor(top)
    crash(runtime, "leaf")
    runtime.handle("leaf").request("sync", timeout=10)
    crash(runtime, "leaf")  # the middle supervisor's second restart in 10 s: it gives up
    wait_until(lambda: any(c.name == "middle" and c.restarts == 1 for c in sup.which_children()))
    wait_until(lambda: all(c.status == "running" for c in sup.which_children()))
    assert runtime.handle("leaf").request("back", timeout=10)["message"] == "back"
    assert runtime.handle("sibling").request("untouched", timeout=10)["incarnation"] == 1
    assert sup.is_alive()


# -- backoff and a child that cannot start ----------------------------------------------------


def test_a_child_that_cannot_restart_leaves_the_supervisor_responsive(
    runtime: Runtime, worker_manifest: Path
):
    spec = tree(
        worker_manifest,
        ["w"],
        intensity=50,
        period=60,
        backoff=Backoff(min_ms=20, max_ms=200, multiplier=2, jitter=0),
        init={"crash_init_after": 1},
    )
    sup = runtime.start_supervisor(spec)
    crash(runtime, "w")
    # Every restart's init fails; the supervisor still answers and counts them.
    wait_until(lambda: sup.which_children()[0].restarts >= 3)
    row = sup.which_children()[0]
    assert row.status in ("backoff", "starting", "waiting")
    assert row.last_failure is not None and "init refuses" in row.last_failure
    assert sup.count_children().active == 0
    assert sup.stop() is True


def test_backoff_delays_grow_and_are_capped():
    backoff = Backoff(min_ms=100, max_ms=1000, multiplier=3, jitter=0.5)
    assert [backoff.delay(n, 0.0) for n in range(4)] == [0.1, 0.3, 0.9, 1.0]
    assert backoff.delay(0, 1.0) == pytest.approx(0.15)


# -- counting and introspection ------------------------------------------------------------------


def test_count_children(runtime: Runtime, worker_manifest: Path):
    leaf = SupervisorSpec(name="inner", children=(ChildSpec(name="x", manifest=worker_manifest),))
    spec = SupervisorSpec(
        name="outer",
        children=(
            ChildSpec(name="a", manifest=worker_manifest),
            ChildSpec(name="inner", type="supervisor", supervisor=leaf),
        ),
    )
    sup = runtime.start_supervisor(spec)
    counts = sup.count_children()
    assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 2, 1, 1)


# -- no message lost ---------------------------------------------------------------------------


@pytest.mark.slow
def test_no_message_is_lost_across_periodic_crashes(runtime: Runtime, worker_manifest: Path):
    runtime.start_supervisor(tree(worker_manifest, ["w"], intensity=1000, period=60))
    handle = runtime.handle("w")
    threads_before = threading.active_count()

    def caller(index: int) -> list[str]:
        outcomes = []
        for n in range(40):
            message = {"crash": f"{index}-{n}"} if n % 10 == 9 else {"n": n}
            try:
                handle.request(message, timeout=30)
                outcomes.append("reply")
            except ActorFailed:
                outcomes.append("failed")
        return outcomes

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(caller, range(16)))
    flat = [o for r in results for o in r]
    assert len(flat) == 16 * 40
    assert flat.count("failed") == 16 * 4
    assert flat.count("reply") == 16 * 36
    # The last crash's restart may still be under way when its caller hears of the crash.
    wait_until(lambda: sample_actors.Worker.incarnations == 1 + 16 * 4)
    wait_until(lambda: threading.active_count() <= threads_before + 1)


def test_which_children_reports_the_last_failure(runtime: Runtime, worker_manifest: Path):
    sup = runtime.start_supervisor(tree(worker_manifest, ["w"]))
    crash(runtime, "w")
    runtime.handle("w").request("sync", timeout=10)
    row = sup.which_children()[0]
    assert row.restarts == 1
    assert row.last_failure == "RuntimeError: asked to crash: w"
    assert row.status == "running"


def test_bad_flags_and_specs_name_the_field():
    from theater_py import SupervisorError

    with pytest.raises(SupervisorError, match="strategy"):
        SupervisorFlags(strategy="one_for_some")
    with pytest.raises(SupervisorError, match="intensity"):
        SupervisorFlags(intensity=-1)
    with pytest.raises(SupervisorError, match="restart"):
        ChildSpec(name="x", manifest="m.toml", restart="sometimes")
    with pytest.raises(SupervisorError, match="shutdown"):
        ChildSpec(name="x", manifest="m.toml", shutdown="soon")


def test_a_crash_is_logged_once_with_its_traceback(
    runtime: Runtime, worker_manifest: Path, caplog: pytest.LogCaptureFixture
):
    runtime.start_supervisor(tree(worker_manifest, ["w"]))
    caplog.set_level("DEBUG")
    crash(runtime, "w")
    runtime.handle("w").request("sync", timeout=10)
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert [r.name for r in with_traceback] == ["theater_py.actor"]
    assert str(with_traceback[0].exc_info[1]) == "asked to crash: w"

    def supervisor_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "theater_py.supervisor"]

    wait_until(lambda: any("restarted w" in line for line in supervisor_lines()))
    assert any("crashed" in line for line in supervisor_lines())
    assert not [r for r in caplog.records if r.name.startswith("pykka") and r.levelno >= 30]


def test_simple_one_for_one_starts_children_from_its_template(
    runtime: Runtime, worker_manifest: Path
):
    template = ChildSpec(name="template", manifest=worker_manifest, init={"role": "base"})
    sup = runtime.start_supervisor(
        SupervisorSpec(
            name="pool",
            flags=SupervisorFlags(strategy="simple_one_for_one", intensity=5, period=60),
            children=(template,),
        )
    )
    assert sup.which_children() == []
    sup.start_child("w1")
    sup.start_child("w2", init={"extra": True})
    assert [c.name for c in sup.which_children()] == ["w1", "w2"]
    crash(runtime, "w2")
    assert runtime.handle("w2").request("back", timeout=10)["incarnation"] == 3
    assert runtime.handle("w1").request("fine", timeout=10)["incarnation"] == 1
    from theater_py import SupervisorError

    with pytest.raises(SupervisorError, match="simple_one_for_one"):
        runtime.root.start_child("by-name")


def test_a_start_that_hangs_times_out_and_leaves_nothing_behind(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    from tests.conftest import gate

    stuck = gate("never")
    with pytest.raises(ActorStartError, match="did not start within"):
        runtime.root.start_child(
            ChildSpec(name="slow", manifest=make_manifest("Worker"), init={"init_gate": "never"}),
            timeout=0.2,
        )
    stuck.set()
    assert all(c.name != "slow" for c in runtime.root.which_children())
    wait_until(lambda: runtime.find_cell("slow") is None)
