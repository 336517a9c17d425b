"""A runtime's actors on a local multi-node Ray cluster (issue 14), as Ray tests itself.

Marked ``ray``: deselected by default, run by ``make test-ray`` (which installs the
``ray`` extra). One cluster serves the module: a head node, the driver's, with no
resources for actors; each test adds the worker nodes it needs, each with a resource of
its own so the test decides where actors may run, and removes them when done. Ray's
health check is shortened so a removed node is declared dead within about 1.5 s.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from theater_py import ActorFailed, ActorStopped, ChannelRefused, Runtime  # noqa: E402
from theater_py.errors import ActorNotFound, ActorStartError, RequestTimeout  # noqa: E402
from theater_py_actors.openai_proxy.simulator import OpenAISimulator  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]
HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}
NAMESPACE = "theater-py"
WAIT = 30.0  # seconds any wait for the cluster may last


class Nodes:
    """The module's cluster, and the worker nodes one test added."""

    def __init__(self, cluster: Any, tmp_path: Path) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.added: list[Any] = []

    def add(self, resource: str, **env: str) -> Any:
        """Add a worker node offering ``resource``; its own THEATER_PY_HOME, and ``env``."""
        home = self.tmp_path / f"home-{resource}-{uuid.uuid4().hex[:6]}"
        node = self.cluster.add_node(
            num_cpus=1,
            resources={resource: 100},
            env_vars={"THEATER_PY_HOME": str(home), **env},
        )
        self.cluster.wait_for_nodes(timeout=WAIT)
        self.added.append(node)
        return node

    def remove(self, node: Any) -> None:
        self.cluster.remove_node(node)
        self.added.remove(node)

    def of(self, node_id: str) -> Any:
        return next(n for n in self.added if n.node_id == node_id)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        # The workers import the test actors and theater_py_actors as the driver does.
        patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(ROOT / "actors")]))
        head = {"num_cpus": 0, "include_dashboard": False, "_system_config": HEALTH}
        cluster = cluster_utils.Cluster(initialize_head=True, head_node_args=head)
        try:
            ray.init(address=cluster.address, namespace="tests")
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()


@pytest.fixture
def nodes(cluster: Any, tmp_path: Path) -> Iterator[Nodes]:
    added = Nodes(cluster, tmp_path)
    yield added
    for node in list(added.added):
        added.remove(node)


@pytest.fixture
def ray_runtime(cluster: Any) -> Iterator[Runtime]:
    runtime = Runtime(ray_address=cluster.address)
    yield runtime
    runtime.shutdown()
    assert our_actors() == []


def our_actors() -> list[str]:
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == NAMESPACE
    )


def manifest(tmp_path: Path, resource: str | None, name: str = "where", handlers: str = "") -> Path:
    """A manifest of the Where actor, placed on the nodes offering ``resource``."""
    path = tmp_path / f"{name}.toml"
    lines = [f'name = "{name}"', 'version = "0.1.0"', 'component = "tests.ray_actors:Where"']
    if resource is not None:
        lines += ["[placement]", f"resources = {{ {resource} = 1 }}"]
    path.write_text("\n".join(lines) + "\n" + handlers)
    return path


def wait_until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT} s: {what}")


def child(supervisor: Any, name: str) -> Any:
    return next(c for c in supervisor.which_children() if c.name == name)


# -- messages, events, store ----------------------------------------------------------------


def test_an_actor_on_a_worker_answers_requests_sends_and_deferred_replies(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    node = nodes.add("alpha")
    handle = ray_runtime.start_actor(manifest(tmp_path, "alpha"))
    reply = handle.request("hello", timeout=WAIT)
    assert reply["node"] == node.node_id
    assert reply["pid"] != os.getpid()
    assert handle.request_json({"later": 7}, timeout=WAIT)["later"] == 7  # a deferred reply
    handle.send("one")
    handle.send_json("two")
    assert handle.request("sends", timeout=WAIT) == ["one", "two"]
    assert [c.name for c in ray_runtime.root.which_children()] == ["where"]


def test_a_failed_init_on_a_worker_is_a_failed_start_naming_the_error(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("kappa")
    with pytest.raises(ActorStartError, match="RuntimeError: no key on this node"):
        ray_runtime.start_actor(manifest(tmp_path, "kappa"), {"fail_init": "no key on this node"})
    with pytest.raises(ActorStartError, match=r"placement\.resources\.nu: no node"):
        ray_runtime.start_actor(manifest(tmp_path, "nu", "unplaceable"))  # refused at once
    hog = manifest(tmp_path, "kappa", "hog")
    hog.write_text(hog.read_text().replace("kappa = 1", "kappa = 100"))
    ray_runtime.start_actor(hog)  # takes all the kappa there is: the next one waits
    ray_runtime._ray.start_timeout = 3.0  # type: ignore[union-attr]
    with pytest.raises(ActorStartError, match="could not be placed or started within 3 s"):
        ray_runtime.start_actor(manifest(tmp_path, "kappa", "waiting"))
    broken = tmp_path / "broken.toml"
    broken.write_text(
        manifest(tmp_path, "kappa").read_text().replace("ray_actors:Where", "ray_actors:Nowhere")
    )
    with pytest.raises(ActorStartError, match="Nowhere"):  # refused in the driver already
        ray_runtime.start_actor(broken)


def test_an_actor_stopping_itself_on_a_worker_exits_with_its_reason(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("lambda_")
    permanent = ray_runtime.start_actor(manifest(tmp_path, "lambda_", "permanent"))
    transient = ray_runtime.start_actor(
        manifest(tmp_path, "lambda_", "transient"), restart="transient"
    )
    assert permanent.request({"exit": "gone wrong"}, timeout=WAIT)["message"]  # answered first
    wait_until(lambda: child(ray_runtime.root, "permanent").restarts == 1, "a restart")
    assert "gone wrong" in (child(ray_runtime.root, "permanent").last_failure or "")
    transient.request({"exit": "normal"}, timeout=WAIT)
    wait_until(lambda: not transient.is_alive(), "a normal exit, not restarted")
    assert permanent.request("again", timeout=WAIT)["message"] == "again"


def test_events_recorded_on_a_worker_reach_the_chain_intact(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("beta")
    handle = ray_runtime.start_actor(manifest(tmp_path, "beta"))
    handle.request({"record": {"step": 1}}, timeout=WAIT)
    with pytest.raises(ActorFailed, match="ValueError: boom"):
        handle.request({"crash": "boom"}, timeout=WAIT)
    handle.request({"record": {"step": 2}}, timeout=WAIT)
    events = handle.events()
    kinds = [e.event_type for e in events]
    notes = [e.data for e in events if e.event_type == "note"]
    assert notes == [{"step": 1}, {"step": 2}]
    # The worker's event sits between the driver's request and response, in order.
    first = kinds.index("note")
    assert kinds[first - 1 : first + 2] == ["request", "note", "response"]
    assert {"event_type": "actor-crash", "error": "ValueError: boom"} in [
        {"event_type": e.event_type, "error": e.data.get("error")}
        for e in events
        if isinstance(e.data, dict)
    ]
    verification = handle.verify()
    assert verification.ok, verification.reason
    assert verification.checked == len(events)


def test_the_store_is_reachable_from_every_node_without_a_shared_home(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("gamma")
    nodes.add("delta")  # each node has a THEATER_PY_HOME of its own
    store = '[[handler]]\ntype = "store"\n'
    writer = ray_runtime.start_actor(manifest(tmp_path, "gamma", "writer", store))
    reader = ray_runtime.start_actor(manifest(tmp_path, "delta", "reader", store))
    written = writer.request({"store": "shared text"}, timeout=WAIT)
    assert reader.request({"read": written["store_id"]}, timeout=WAIT) == "shared text"
    assert writer.request("x", timeout=WAIT)["node"] != reader.request("x", timeout=WAIT)["node"]
    # The driver reaches the same store, through the same host.
    content = ray_runtime.content_store
    ref = content.get_by_label(written["store_id"], "text")
    assert ref is not None
    assert content.get(written["store_id"], ref) == b"shared text"
    assert "store-write" in [e.event_type for e in writer.events()]


def test_channels_cross_to_an_actor_on_a_worker(nodes: Nodes, ray_runtime: Runtime, tmp_path: Path):
    node = nodes.add("iota")
    handle = ray_runtime.start_actor(manifest(tmp_path, "iota"))
    with handle.open_channel_json({"count": 300}, timeout=WAIT) as stream:
        assert [value["i"] for value in stream] == list(range(300))  # past the 64-buffer
    with handle.open_channel({"echo": True}, timeout=WAIT) as channel:
        channel.send("ping")
        reply = next(iter(channel))
        assert reply["got"] == "ping"
        assert reply["node"] == node.node_id
    with pytest.raises(ChannelRefused, match="not today"):
        handle.open_channel({"refuse": "not today"}, timeout=WAIT)
    closes = [e.data for e in handle.events() if e.event_type == "channel-close"]
    assert [c["to_caller"]["count"] for c in closes] == [300, 1]
    assert [c["closed_by"] for c in closes] == ["actor", "caller"]
    assert handle.verify().ok


def test_an_actor_placed_in_the_driver_spawns_children_that_run_on_workers(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    node = nodes.add("mu")
    spawner = tmp_path / "spawner.toml"
    spawner.write_text(
        'name = "spawner"\nversion = "0.1.0"\ncomponent = "tests.ray_actors:Spawner"\n'
        '[placement]\ndriver = true\n[[handler]]\ntype = "supervisor"\n'
    )
    init = {"manifest": str(manifest(tmp_path, "mu", "leaf")), "name": "leaf"}
    handle = ray_runtime.start_actor(spawner, init)
    reply = handle.request("hi", timeout=WAIT)
    assert reply["pid"] == os.getpid()  # the spawner runs here, in the driver
    assert reply["child"]["node"] == node.node_id  # its child on the worker
    assert reply["child"]["message"] == "hi"


def test_a_router_in_the_driver_routes_to_proxies_on_workers(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    from tests.proxy_fixtures import KEY, KEY_ENV
    from tests.router_fixtures import model, provider
    from tests.test_router import ask
    from theater_py_actors.genai_types import Completion

    nodes.add("xi", **{KEY_ENV: KEY})  # the key lives on the proxies' node only
    shipped = ROOT / "manifests" / "openai-proxy.toml"
    placed = tmp_path / "openai-proxy.toml"  # the shipped proxy, pinned to the worker
    placed.write_text(shipped.read_text() + "\n[placement]\nresources = { xi = 1 }\n")
    (tmp_path / "init.json").write_text((shipped.parent / "init.json").read_text())
    with OpenAISimulator(api_key=KEY) as alpha, OpenAISimulator(api_key=KEY) as beta:
        providers = {
            "alpha": {**provider(alpha.base_url, model("model-a")), "manifest": str(placed)},
            "beta": {**provider(beta.base_url, model("model-b")), "manifest": str(placed)},
        }
        init = {
            "config": {
                "providers": providers,
                "routes": {"smart": ["alpha:model-a", "beta:model-b"]},
            }
        }
        system = tmp_path / "fleet.toml"
        system.write_text(
            '[supervisor]\nname = "fleet"\n\n[[child]]\nname = "router"\n'
            'manifest = "openai-router"\nplacement = { driver = true }\n'
        )
        ray_runtime.start_system(system, {"router": init})
        router = ray_runtime.handle("router")
        reply = router.request(ask("hi there"), timeout=WAIT)
        assert isinstance(reply, Completion)
        assert reply.served_by == "alpha:model-a"
        alpha.fail_next(status=500, times=10)
        assert router.request(ask(), timeout=WAIT).served_by == "beta:model-b"
        hosts = [name for name in our_actors() if not name.endswith("/store")]
        assert sorted(name.split("/")[1] for name in hosts) == ["router-alpha", "router-beta"]


def test_a_handler_outliving_its_stop_has_its_ray_actor_killed(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    nodes.add("omicron")
    handle = ray_runtime.start_actor(manifest(tmp_path, "omicron", "slow"))
    handle.request("warm", timeout=WAIT)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(handle.request, {"sleep": 60}, WAIT * 3)
        wait_until(lambda: handle.events()[-1].event_type == "request", "the request running")
        with pytest.raises(RequestTimeout):
            handle.stop(timeout=0.5)
        with pytest.raises(ActorStopped):
            pending.result(timeout=WAIT)  # its caller is answered at once, as locally
        # Python could not end the handler; Ray ends its process.
        wait_until(lambda: [n for n in our_actors() if "/slow/" in n] == [], "its Host killed")


# -- node death ------------------------------------------------------------------------------


def test_a_node_dies_under_load_each_actor_restarts_on_a_surviving_node(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    ray_runtime._ray.watch_renew = 0.3  # type: ignore[union-attr]  # renewed many times
    doomed = nodes.add("epsilon")
    busy = ray_runtime.start_actor(manifest(tmp_path, "epsilon", "busy"))
    idle = ray_runtime.start_actor(manifest(tmp_path, "epsilon", "idle"))
    assert idle.request("where", timeout=WAIT)["node"] == doomed.node_id
    survivor = nodes.add("epsilon")  # the restarts can only go here once the first is gone

    outcomes: list[tuple[int, str, Any]] = []

    def caller(index: int) -> None:
        for n in range(6):
            try:
                reply = busy.request({"sleep": 0.2, "n": [index, n]}, timeout=WAIT)
            except ActorFailed as failed:
                outcomes.append((index, "failed", str(failed)))
            else:
                outcomes.append((index, "reply", reply["node"]))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(caller, index) for index in range(4)]
        wait_until(lambda: len(outcomes) >= 2, "the first replies")
        nodes.remove(doomed)
        for call in calls:
            call.result(timeout=WAIT * 3)  # none hangs: a RequestTimeout would raise here

    assert len(outcomes) == 24  # each call returned exactly once
    failed = [o for o in outcomes if o[1] == "failed"]
    assert len(failed) <= 1, failed  # only the message in flight when the node died
    assert all("RayActorLost" in o[2] for o in failed)
    late = [o for o in outcomes if o[1] == "reply" and o[2] == survivor.node_id]
    assert late, "the queued messages were answered by the new incarnation"
    # None got two replies: each answered request has one response in the chain.
    responses = [e for e in busy.events() if e.event_type == "response"]
    assert len(responses) == 24 - len(failed)
    assert busy.verify().ok

    # The idle actor, sent nothing since, was seen to exit and was restarted too.
    info = wait_until(lambda: child(ray_runtime.root, "idle").restarts == 1 or None, "idle restart")
    assert info
    assert "ray actor lost" in (child(ray_runtime.root, "idle").last_failure or "")
    assert idle.request("where", timeout=WAIT)["node"] == survivor.node_id
    assert child(ray_runtime.root, "busy").restarts == 1


def test_a_node_that_keeps_dying_exhausts_the_intensity_and_escalates(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path
):
    system = tmp_path / "system.toml"
    system.write_text(
        textwrap.dedent(f"""\
            [supervisor]
            name = "tree"
            strategy = "one_for_one"
            intensity = 1
            period = 60

            [[child]]
            name = "fragile"
            manifest = "{manifest(tmp_path, "zeta", "fragile")}"
            """)
    )
    first = nodes.add("zeta")
    tree = ray_runtime.start_system(system)
    fragile = ray_runtime.handle("fragile")
    assert fragile.request("x", timeout=WAIT)["node"] == first.node_id
    second = nodes.add("zeta")
    nodes.remove(first)
    wait_until(lambda: child(tree, "fragile").restarts == 1, "the first restart")
    assert fragile.request("x", timeout=WAIT)["node"] == second.node_id  # within intensity
    nodes.add("zeta")
    nodes.remove(second)  # a second restart within the period: more than intensity 1
    wait_until(lambda: not tree.is_alive(), "the supervisor gives up")
    with pytest.raises((ActorStopped, ActorNotFound)):
        fragile.request("x", timeout=WAIT)
    kinds = [e.event_type for e in tree.chain.events()]
    assert "supervisor-gave-up" in kinds


# -- the proxy ---------------------------------------------------------------------------------

KEY = "sk-ray-worker-only-0123456789"


def test_the_proxy_runs_on_a_worker_reading_the_key_there(
    nodes: Nodes, ray_runtime: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    assert "WORKER_KEY" not in os.environ  # only the worker node has the key
    node = nodes.add("proxy_node", WORKER_KEY=KEY)
    system = tmp_path / "proxy-system.toml"
    with OpenAISimulator(api_key=KEY) as sim:
        system.write_text(
            textwrap.dedent(f"""\
                [supervisor]
                name = "proxies"

                [[child]]
                name = "proxy"
                manifest = "{ROOT / "manifests" / "openai-proxy.toml"}"
                init = {{ config = {{ base_url = "{sim.base_url}", api_key_env = "WORKER_KEY" }} }}
                placement = {{ resources = {{ proxy_node = 1 }} }}
                """)
        )
        caplog.set_level(logging.DEBUG)
        ray_runtime.start_system(system)
        proxy = ray_runtime.handle("proxy")
        request = {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
            "max_tokens": 32,
        }
        reply = proxy.request_json({"GenerateCompletion": {"request": request}}, timeout=WAIT)
        # The simulator refuses a request without the key: the worker read it.
        assert reply["Completion"]["completion"]["content"][0]["text"] == "You said: Hello"
        assert sim.requests, "the worker reached the loopback upstream"
    events = json.dumps([e.to_json() for e in proxy.events()])
    assert "environment-read" in events
    assert KEY not in events
    assert KEY not in json.dumps(reply)
    assert KEY not in caplog.text
    assert proxy.verify().ok
    del node


# -- stopping --------------------------------------------------------------------------------


def test_stopping_the_runtime_stops_every_ray_actor_it_started(
    cluster: Any, nodes: Nodes, tmp_path: Path
):
    nodes.add("eta")
    before = len([n for n in ray.nodes() if n["Alive"]])
    runtime = Runtime(ray_address=cluster.address)
    for name in ("a", "b", "c"):
        runtime.start_actor(manifest(tmp_path, "eta", name)).request("x", timeout=WAIT)
    runtime.handle("a").stop()
    # b, c and the store's host (Ray's kill of a's host is asynchronous)
    wait_until(lambda: len(our_actors()) == 3, "a's host gone")
    runtime.shutdown()
    assert our_actors() == []
    assert ray.is_initialized()  # the test's own connection is left alone
    assert len([n for n in ray.nodes() if n["Alive"]]) == before


def test_local_starts_a_ray_instance_the_runtime_owns_and_stops(tmp_path: Path):
    script = textwrap.dedent(f"""\
        import ray
        from theater_py import Runtime
        runtime = Runtime(ray_address="local", in_memory=True)
        handle = runtime.start_actor({str(manifest(tmp_path, None))!r})
        print(handle.request("x", timeout=60)["message"])
        runtime.shutdown()
        print(ray.is_initialized())
        """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "actors")])}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["x", "False"]


# -- the CLI --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["address", "auto"])
def test_the_cli_runs_a_system_on_ray_and_serves_it_on_the_control_socket(
    cluster: Any, nodes: Nodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
):
    from tests.test_cli import cli, serving

    if how == "auto":  # Ray's own variable names the cluster
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)

    node = nodes.add("theta")
    system = tmp_path / "system.toml"
    system.write_text(
        '[supervisor]\nname = "cli-ray"\n\n[[child]]\nname = "where"\n'
        f'manifest = "{manifest(tmp_path, "theta")}"\n'
    )
    home = tmp_path / "home"
    address = cluster.address if how == "address" else "auto"
    with serving(home, "run", str(system), "--ray", address):
        listed = cli(home, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [actor["name"] for actor in json.loads(listed.stdout)] == ["where"]
        answered = cli(home, "request", "where", '"hi"')
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)["node"] == node.node_id
        assert len(our_actors()) == 2  # the actor's host and the store's
    assert our_actors() == []  # SIGTERM stopped them all


def test_the_ray_bench_runs_and_writes_its_results(tmp_path: Path):
    output = tmp_path / "ray.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "actors")])}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "bench.ray", "--quick", "--output", str(output)],
        check=False,
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(output.read_text())
    assert {"bare_ray", "theater_on_ray", "theater_local"} <= set(results["latency"])
    assert results["recovery"]["seconds"]
    assert results["proxy"]["on_paper"]["one_proxy_req_per_s"] > 0
