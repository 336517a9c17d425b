# ruff: noqa: F811 -- pytest fixtures imported from tests/test_ray.py
"""Adversarial review of the Ray backend (issue 14): each test shows one defect."""

from __future__ import annotations

import concurrent.futures
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from tests.test_ray import (  # noqa: E402,F401 -- the module's cluster fixtures
    WAIT,
    Nodes,
    child,
    cluster,
    nodes,
    our_actors,
    ray_runtime,
    wait_until,
)
from theater_py import Runtime  # noqa: E402
from theater_py.errors import ManifestError, StoreError  # noqa: E402
from theater_py.placement import parse_placement  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(240)]


def slow_manifest(tmp_path: Path, resource: str, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nversion = "0.1.0"\ncomponent = "tests.review_ray_actors:Slow"\n'
        f"[placement]\nresources = {{ {resource} = 1 }}\n"
    )
    return path


# -- placement: values Ray refuses are accepted by the parser --------------------------------


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"resources": {"tpu": 0.00001}}, "placement.resources.tpu"),  # Ray: 1e-4 steps
        ({"resources": {"CPU": 1}}, "placement.resources.CPU"),  # Ray: use num_cpus
        ({"resources": {"GPU": 1}}, "placement.resources.GPU"),
    ],
)
def test_placement_values_ray_refuses_are_refused_naming_the_field(table: Any, field: str):
    with pytest.raises(ManifestError, match=field.replace(".", r"\.")):
        parse_placement(table, source="system.toml")


def test_a_bad_placement_fails_the_start_naming_the_field(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("pl")
    path = tmp_path / "pl.toml"
    path.write_text(
        'name = "pl"\nversion = "0.1.0"\ncomponent = "tests.review_ray_actors:Slow"\n'
        "[placement]\nnum_cpus = 1.5\n"
    )
    with pytest.raises(Exception) as raised:
        ray_runtime.start_actor(path)
    assert "placement.num_cpus" in str(raised.value), str(raised.value)


# -- supervision: one node death is one failure for one_for_all ------------------------------


# -- callers on node death -----------------------------------------------------------------


# -- secrets: the worker's crash log reaches the driver through Ray ------------------------


# -- the store host ------------------------------------------------------------------------


def test_the_store_host_comes_back_after_its_process_dies(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    store = ray_runtime.content_store
    store_id = store.new_store()
    store.store_at_label(store_id, "x", b"kept")
    # Its process dies (no_restart=False: as a crash, which Ray may restart).
    ray.kill(ray_runtime._ray._store_host, no_restart=False)  # type: ignore[union-attr]

    def served() -> bytes | None:
        try:
            ref = store.get_by_label(store_id, "x")
            return None if ref is None else store.get(store_id, ref)
        except StoreError:  # the call in flight when it died, or while it restarts
            return None

    assert wait_until(served, "the store served again") == b"kept"


# -- a graceful stop while a handler runs --------------------------------------------------


# -- the Host's "replies" group: deferred replies starve channel pulls ---------------------


def test_pending_deferred_replies_do_not_starve_an_open_channel(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("starve")
    handle = ray_runtime.start_actor(slow_manifest(tmp_path, "starve", "starve"))
    channel = handle.open_channel({"hi": 1}, timeout=WAIT)
    replies = iter(channel)
    channel.send("before")
    assert next(replies)["got"] == "before"
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        # 64 slow deferred replies in flight (a proxy under load has as many).
        pending = [pool.submit(handle.request, {"defer": 45}, 120) for _ in range(64)]
        wait_until(
            lambda: sum(e.event_type == "request" for e in handle.events()) >= 64, "all running"
        )
        time.sleep(1)
        channel.send("during")
        with concurrent.futures.ThreadPoolExecutor(1) as reader:
            got = reader.submit(next, replies, "ended")
            try:
                value = got.result(timeout=10)  # locally: at once
            except concurrent.futures.TimeoutError:
                value = "no reply within 10 s"
        assert isinstance(value, dict), value
        assert value["got"] == "during"
        for call in pending:
            call.result(timeout=120)
    channel.close()


# -- lifecycle: one runtime's shutdown ends another's Ray ----------------------------------


def test_a_second_local_runtime_is_refused_and_one_runtime_does_not_end_anothers_ray(
    tmp_path: Path,
):
    """Ray is one per process: a second ``local`` runtime would silently share (and then
    lose) the first's instance, so it is refused; a runtime that joins the connection
    keeps it alive past the shutdown of the one that started it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    path = tmp_path / "plain.toml"
    path.write_text(
        'name = "plain"\nversion = "0.1.0"\ncomponent = "tests.review_ray_actors:Slow"\n'
    )
    script = textwrap.dedent(f"""\
        import ray
        from theater_py import Runtime
        from theater_py.errors import TheaterError
        first = Runtime(ray_address="local", in_memory=True)
        try:
            Runtime(ray_address="local", in_memory=True)
        except TheaterError as exc:
            print("refused" if "local" in str(exc) else exc, flush=True)
        second = Runtime(ray_address="auto", in_memory=True)
        handle = second.start_actor({str(path)!r})
        print(handle.request("before", timeout=60)["message"], flush=True)
        first.shutdown()
        try:
            print(handle.request("after", timeout=30)["message"], flush=True)
        finally:
            second.shutdown()
        print("down" if not ray.is_initialized() else "still up", flush=True)
        """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "actors")])}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=200,
        env=env,
    )
    assert result.stdout.split() == ["refused", "before", "after", "down"], result.stderr[-1500:]


# -- events a background thread records on a worker -----------------------------------------


def test_events_recorded_by_a_background_thread_reach_the_chain_without_another_message(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    """Locally ctx.record appends at once; on a worker the events wait in the Host's
    unbounded buffer for the next reply, so an idle actor's chain lags forever (and the
    buffer is lost if its node dies)."""
    nodes.add("ticks")
    handle = ray_runtime.start_actor(slow_manifest(tmp_path, "ticks", "ticks"))
    assert handle.request({"ticks": 50}, timeout=WAIT) == "ticking"
    time.sleep(5)  # the thread recorded its 50 events long ago
    ticks = [e for e in handle.events() if e.event_type == "tick"]
    assert len(ticks) == 50, f"{len(ticks)} of 50 background events in the chain after 5 s"
    assert handle.verify().ok


def test_a_hosts_event_buffer_is_bounded_and_records_what_it_dropped():
    from theater_py._ray.host import DROPPED_EVENT, EventBuffer

    buffer = EventBuffer(cap=3)
    for i in range(5):
        buffer.record("tick", {"i": i})
    events = buffer.drain()
    assert [e[0] for e in events] == ["tick", "tick", "tick", DROPPED_EVENT]
    assert '"dropped":2' in events[-1][1]
    buffer.record("tick", {"i": 5})
    assert [e[0] for e in buffer.drain()] == ["tick"]  # the count starts again
