"""start_actor, handles, deferred replies, crashes and the mailbox that survives them."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid

import pytest

from tests import sample_actors
from tests.conftest import ManifestFactory, gate
from theater_py import (
    ActorFailed,
    ActorNameInUse,
    ActorNotFound,
    ActorStartError,
    ActorStopped,
    ManifestError,
    RequestTimeout,
    Runtime,
    start_actor,
)


def test_start_actor_returns_a_handle_that_answers(
    runtime: Runtime, make_manifest: ManifestFactory
):
    handle = runtime.start_actor(make_manifest("Echo"))
    assert handle.name == "echo"
    assert uuid.UUID(handle.id).version == 4
    assert handle.request("hi") == {"echo": "hi"}
    assert handle.request_json({"a": [1, 2.5, None]}) == {"echo": {"a": [1, 2.5, None]}}
    assert handle.is_alive()


def test_init_data_is_merged_shallowly_over_init_state(
    runtime: Runtime, make_manifest: ManifestFactory
):
    path = make_manifest("Echo", init_state={"config": {"a": 1, "b": 2}, "keep": True})
    handle = runtime.start_actor(path, '{"config": {"a": 9}}')
    assert handle.request("state") == {"config": {"a": 9}, "keep": True}


@pytest.mark.parametrize("init", [{"x": 1}, '{"x": 1}', b'{"x": 1}'])
def test_init_may_be_a_dict_json_text_or_json_bytes(
    runtime: Runtime, make_manifest: ManifestFactory, init: object
):
    assert runtime.start_actor(make_manifest("Echo"), init).request("state") == {"x": 1}


def test_an_init_that_raises_fails_the_start_and_frees_the_name(
    runtime: Runtime, make_manifest: ManifestFactory
):
    path = make_manifest("Echo")
    with pytest.raises(ActorStartError, match="no API key here"):
        runtime.start_actor(path, {"fail_init": "no API key here"})
    with pytest.raises(ActorNotFound):
        runtime.handle("echo")
    assert runtime.start_actor(path).request("ping") == {"echo": "ping"}


def test_a_component_that_is_not_an_actor_is_a_start_error(
    runtime: Runtime, make_manifest: ManifestFactory
):
    with pytest.raises(ActorStartError, match="NotAnActor"):
        runtime.start_actor(make_manifest("NotAnActor"))


def test_a_bad_manifest_is_a_manifest_error(runtime: Runtime, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('name = "x"\nversion = "1"\n')
    with pytest.raises(ManifestError, match="component"):
        runtime.start_actor(path)


def test_a_name_in_use_is_refused_and_a_name_may_be_chosen(
    runtime: Runtime, make_manifest: ManifestFactory
):
    path = make_manifest("Echo")
    runtime.start_actor(path)
    with pytest.raises(ActorNameInUse):
        runtime.start_actor(path)
    other = runtime.start_actor(path, name="echo-2")
    assert other.name == "echo-2"
    assert runtime.handle("echo-2").request(1) == {"echo": 1}


def test_handle_of_an_unknown_actor_raises(runtime: Runtime):
    with pytest.raises(ActorNotFound):
        runtime.handle("nobody")


def test_sends_are_handled_in_order(runtime: Runtime, make_manifest: ManifestFactory):
    handle = runtime.start_actor(make_manifest("Echo"))
    for i in range(50):
        handle.send(i)
    handle.send_json({"last": True})
    assert handle.request("sends") == [*range(50), {"last": True}]


def test_a_request_that_gets_no_reply_times_out(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    release = gate("g")
    handle = runtime.start_actor(make_manifest("Worker"))
    with pytest.raises(RequestTimeout):
        handle.request({"gate": "g"}, timeout=0.05)
    release.set()
    assert handle.request("after")["message"] == "after"


def test_a_request_that_timed_out_before_it_was_reached_is_dropped(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    release = gate("g")
    handle = runtime.start_actor(make_manifest("Worker"))
    handle.send({"gate": "g"})
    with pytest.raises(RequestTimeout):
        handle.request("too late", timeout=0.05)
    release.set()
    handle.request("sync")
    handled = [m for kind, _, m in sample_actors.LOG if kind == "handled"]
    assert "too late" not in handled
    assert "sync" in handled


def test_request_future_answers_without_waiting_and_a_cancel_drops_the_message(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    release = gate("g")
    handle = runtime.start_actor(make_manifest("Worker"))
    handle.send({"gate": "g"})
    answered = handle.request_future("first")
    dropped = handle.request_future("never handled")
    assert not answered.done()
    assert dropped.cancel()
    release.set()
    assert answered.result(timeout=10)["message"] == "first"
    handle.request("sync")
    handled = [m for kind, _, m in sample_actors.LOG if kind == "handled"]
    assert "first" in handled
    assert "never handled" not in handled


def test_request_future_fails_as_request_raises(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    handle = runtime.start_actor(make_manifest("Worker"))
    with pytest.raises(ActorFailed):
        handle.request_future({"crash": "on purpose"}).result(timeout=10)


def test_a_deferred_reply_does_not_block_the_mailbox(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    release = gate("slow")
    handle = runtime.start_actor(make_manifest("Deferred"))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(handle.request, {"wait": "slow"}, 10)
        # The actor answers other requests while the slow reply is outstanding.
        assert handle.request("fast", timeout=10) == {"now": "fast"}
        assert not slow.done()
        release.set()
        assert slow.result(10) == {"late": "slow"}


def test_a_failed_deferred_reply_reaches_its_caller_and_the_actor_lives(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    gate("x").set()
    handle = runtime.start_actor(make_manifest("Deferred"))
    with pytest.raises(ActorFailed, match="deferred failure"):
        handle.request({"wait": "x", "fail": True}, timeout=10)
    assert handle.request("still here") == {"now": "still here"}


def test_a_crash_fails_its_caller_and_the_restarted_actor_keeps_the_mailbox(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    release = gate("hold")
    handle = runtime.start_actor(make_manifest("Worker"))
    first_id = handle.id
    handle.send({"gate": "hold"})  # the actor blocks: what follows queues in its inbox
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        crash = pool.submit(handle.request, {"crash": "boom"}, 10)
        # Wait until the crash request is queued, so the order below is exact.
        while handle._current().queued() < 1:
            threading.Event().wait(0.001)
        behind = []
        for i in range(5):
            behind.append(pool.submit(handle.request, i, 10))
            while handle._current().queued() < i + 2:
                threading.Event().wait(0.001)
        release.set()
        with pytest.raises(ActorFailed, match="asked to crash: boom"):
            crash.result(10)
        replies = [f.result(10) for f in behind]
    assert [r["message"] for r in replies] == [0, 1, 2, 3, 4]
    assert {r["incarnation"] for r in replies} == {2}
    handled = [m for kind, _, m in sample_actors.LOG if kind == "handled"]
    assert handled == [{"gate": "hold"}, 0, 1, 2, 3, 4]
    assert handle.id == first_id


def test_an_actor_that_is_not_restarted_fails_its_queued_callers(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    release = gate("hold")
    handle = runtime.start_actor(make_manifest("Worker"), restart="temporary")
    handle.send({"gate": "hold"})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        crash = pool.submit(handle.request, {"crash": "once"}, 10)
        while handle._current().queued() < 1:
            threading.Event().wait(0.001)
        queued = pool.submit(handle.request, "queued", 10)
        while handle._current().queued() < 2:
            threading.Event().wait(0.001)
        release.set()
        with pytest.raises(ActorFailed):
            crash.result(10)
        with pytest.raises(ActorStopped):
            queued.result(10)
    assert not handle.is_alive()
    with pytest.raises(ActorStopped):
        handle.request("anyone?")


def test_a_base_exception_in_one_actor_touches_no_other(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    victim = runtime.start_actor(make_manifest("Worker"), name="victim")
    bystander = runtime.start_actor(make_manifest("Echo"), name="bystander")
    with pytest.raises(ActorFailed, match="KeyboardInterrupt"):
        victim.request({"base_exception": True})
    assert bystander.request("fine") == {"echo": "fine"}
    assert victim.request("back")["incarnation"] == 2


def test_an_actor_crashing_past_its_intensity_stays_stopped_alone(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    crashy = runtime.start_actor(make_manifest("Worker"), name="crashy", intensity=2, period=60)
    calm = runtime.start_actor(make_manifest("Echo"), name="calm")
    for _ in range(3):
        with pytest.raises(ActorFailed):
            crashy.request({"crash": "again"})
    with pytest.raises(ActorStopped):
        crashy.request("hello?", timeout=10)
    assert not crashy.is_alive()
    assert calm.request("ok") == {"echo": "ok"}


def test_stop_ends_the_actor_and_frees_its_name(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    path = make_manifest("Worker")
    handle = runtime.start_actor(path)
    handle.stop(timeout=5)
    assert not handle.is_alive()
    with pytest.raises(ActorStopped):
        handle.request("x")
    assert ("stop", "worker", 1) in sample_actors.LOG
    again = runtime.start_actor(path)
    # The old handle addresses the actor it was given, not a new one of the same name.
    with pytest.raises(ActorStopped):
        handle.request("y")
    assert again.request("y")["message"] == "y"


def test_a_normal_exit_of_a_transient_actor_is_not_restarted(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    handle = runtime.start_actor(make_manifest("Worker"), restart="transient")
    assert handle.request({"exit": True})["incarnation"] == 1
    with pytest.raises(ActorStopped):
        handle.request("gone", timeout=10)


def test_a_normal_exit_of_a_permanent_actor_is_restarted(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    handle = runtime.start_actor(make_manifest("Worker"))
    handle.request({"exit": True})
    assert handle.request("again", timeout=10)["incarnation"] == 2


def test_shutdown_stops_actors_newest_first(make_manifest: ManifestFactory, shared):
    rt = Runtime(in_memory=True)
    path = make_manifest("Worker")
    for name in ("a", "b", "c"):
        rt.start_actor(path, name=name)
    rt.shutdown(timeout=10)
    stops = [name for kind, name, _ in sample_actors.LOG if kind == "stop"]
    assert stops == ["c", "b", "a"]


def test_the_module_level_start_actor_uses_the_given_runtime(
    runtime: Runtime, make_manifest: ManifestFactory
):
    handle = start_actor(make_manifest("Echo"), runtime=runtime, name="via-module")
    assert runtime.handle("via-module").request(2) == {"echo": 2}
    assert handle.request(3) == {"echo": 3}


def test_actors_lists_what_runs(runtime: Runtime, make_manifest: ManifestFactory, shared):
    runtime.start_actor(make_manifest("Echo"))
    worker = runtime.start_actor(make_manifest("Worker"))
    with pytest.raises(ActorFailed):
        worker.request({"crash": "x"})
    worker.request("sync", timeout=10)
    rows = {row.name: row for row in runtime.actors()}
    assert set(rows) == {"echo", "worker"}
    assert rows["worker"].restarts == 1
    assert rows["echo"].status == "running"


def test_crash_on_request_is_handled_like_any_crash(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    handle = runtime.start_actor(make_manifest("Worker"))
    handle.crash("told to")
    assert handle.request("after", timeout=10)["incarnation"] == 2
    crashes = [e for e in handle.events() if e.event_type == "actor-crash"]
    assert crashes[0].data["error"] == "ActorKilled: told to"


def test_an_actor_stopping_itself_does_not_wait_on_its_own_thread(
    runtime: Runtime, make_manifest: ManifestFactory, shared
):
    handle = runtime.start_actor(make_manifest("Worker"))
    # The stop inside the handler waits up to 30 s for the actor's thread, which is the
    # very thread waiting: the reply must come at once instead.
    assert handle.request({"stop_self": True}, timeout=10)["incarnation"] == 1
    with pytest.raises(ActorStopped):
        handle.request("gone", timeout=10)
