"""Scale-out on Ray (issue 14): what a message costs, how fast a lost node's actor is back,
and what one proxy against four behind a router would serve.

``python -m bench.ray`` (needs the ``ray`` extra; a few minutes) starts a local Ray cluster
(``ray.cluster_utils.Cluster``: a head with no CPU for actors, and one-CPU worker nodes)
and measures, in one run:

- ``latency``: a request's round trip to the same echo actor three ways, interleaved:
  ``bare_ray`` (a plain Ray actor on a worker, ``ray.get(actor.handle.remote(Ping))``),
  ``theater_on_ray`` (a theater-py actor on a worker, ``handle.request(Ping)``) and
  ``theater_local`` (the same actor in this process). CPU per call is this process's
  only (the driver's), and the worker's is read from ``/proc`` for the proxy below.
- ``recovery``: from ``cluster.remove_node`` of the node an actor runs on to the restarted
  actor answering from another node, with Ray's health check at 500 ms x 3 (the time is
  mostly Ray's detection; Ray's defaults are slower, see docs/ray.md).
- ``proxy``: the OpenAI proxy actor on a worker against the lean loopback fake provider:
  per-request CPU of the driver and of the worker's Host process, and from them the
  throughput of one proxy and of four on separate workers behind a router, on paper
  (this machine has two cores; see :func:`_on_paper`).

Writes ``bench/results/<date>-ray.json`` (``--output`` overrides) and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from bench._machine import describe_machine
from bench._timing import compare, paired_ratio
from bench.actors import ECHO_MANIFEST, Ping, Pong
from bench.upstream import MODEL, PROMPT, Upstream
from theater_py import Runtime

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}
PROXY_MANIFEST = REPO / "manifests" / "openai-proxy.toml"


class BareEcho:
    """The bare Ray twin of ``bench.actors.EchoActor``: the floor of a Ray call."""

    def handle(self, ping: Ping) -> Pong:
        """Echo a ping."""
        return Pong(ping.seq, ping.text)


@contextlib.contextmanager
def local_cluster() -> Iterator[Cluster]:
    """A head node (the driver's, no CPU for actors); the caller adds worker nodes."""
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "actors")])
    head = {"num_cpus": 0, "include_dashboard": False, "_system_config": HEALTH}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        ray.init(address=cluster.address, namespace="bench")
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def _placed(folder: Path, source: Path, resource: str, name: str) -> Path:
    """A copy of a manifest pinned to the nodes offering ``resource``."""
    text = source.read_text(encoding="utf-8")
    path = folder / f"{name}.toml"
    if source.parent != folder and "init_state" in text:  # keep its init file beside it
        for line in text.splitlines():
            if line.startswith("init_state"):
                init = line.split("=", 1)[1].strip().strip('"')
                (folder / init).write_text((source.parent / init).read_text(encoding="utf-8"))
    path.write_text(f"{text}\n[placement]\nresources = {{ {resource} = 1 }}\n", encoding="utf-8")
    return path


def _latency(cluster: Cluster, folder: Path, count: int, repeats: int) -> dict[str, Any]:
    cluster.add_node(num_cpus=1, resources={"echo": 100})
    cluster.wait_for_nodes()
    bare = ray.remote(BareEcho).options(resources={"echo": 1}, num_cpus=0).remote()
    ping = Ping(1, "ping")
    with (
        Runtime(ray_address=cluster.address, in_memory=True) as on_ray,
        Runtime(in_memory=True) as local,
    ):
        remote_echo = on_ray.start_actor(_placed(folder, ECHO_MANIFEST, "echo", "echo"))
        local_echo = local.start_actor(ECHO_MANIFEST)
        calls = {
            "bare_ray": lambda: ray.get(bare.handle.remote(ping), timeout=30),
            "theater_on_ray": lambda: remote_echo.request(ping, timeout=30),
            "theater_local": lambda: local_echo.request(ping, timeout=30),
        }
        for call in calls.values():
            assert call() == Pong(1, "ping")
        results = compare(calls, count=count, repeats=repeats, warmup=min(count, 200))
    ray.kill(bare)
    results["theater_on_ray_vs_bare_ray"] = paired_ratio(
        results["theater_on_ray"], results["bare_ray"]
    )
    results["theater_on_ray_vs_local"] = paired_ratio(
        results["theater_on_ray"], results["theater_local"]
    )
    return results


def _recovery(cluster: Cluster, folder: Path, rounds: int) -> dict[str, Any]:
    seconds: list[float] = []
    resource = "recover"
    node = cluster.add_node(num_cpus=1, resources={resource: 100})
    cluster.wait_for_nodes()
    with Runtime(ray_address=cluster.address, in_memory=True) as runtime:
        handle = runtime.start_actor(_placed(folder, ECHO_MANIFEST, resource, "recover"))
        for _ in range(rounds):
            handle.request(Ping(0), timeout=30)
            spare = cluster.add_node(num_cpus=1, resources={resource: 100})
            cluster.wait_for_nodes()
            start = time.monotonic()
            cluster.remove_node(node)
            deadline = start + 60
            while time.monotonic() < deadline:
                try:
                    handle.request(Ping(1), timeout=5)
                except Exception:
                    time.sleep(0.01)
                    continue
                break
            seconds.append(round(time.monotonic() - start, 3))
            node = spare
    cluster.remove_node(node)
    return {
        "seconds": seconds,
        "median_s": round(statistics.median(seconds), 3),
        "max_s": max(seconds),
        "health_check": HEALTH,
    }


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time, from /proc (the Host runs on this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _host_pid(runtime: Runtime) -> int:
    backend = runtime._ray
    assert backend is not None
    (name,) = backend.host_names()
    host = ray.get_actor(name, namespace="theater-py")
    return int(ray.get(host.where.remote(), timeout=30)["pid"])


def _proxy_local(base_url: str, count: int, repeats: int, request: Any) -> float:
    """CPU per request (us) of the same proxy in this process: everything in one place."""
    os.environ["BENCH_KEY"] = "sk-bench"
    try:
        with Runtime() as runtime:
            init = {"config": {"base_url": base_url, "api_key_env": "BENCH_KEY"}}
            proxy = runtime.start_actor(PROXY_MANIFEST, init, name="proxy-local")
            for _ in range(min(count, 50)):
                proxy.request_json(request, timeout=30)
            runs = []
            for _ in range(repeats):
                start = time.process_time()
                for _ in range(count):
                    proxy.request_json(request, timeout=30)
                runs.append((time.process_time() - start) / count * 1e6)
    finally:
        del os.environ["BENCH_KEY"]
    return round(statistics.median(runs), 1)


def _proxy(
    cluster: Cluster, folder: Path, count: int, repeats: int, router_us: float
) -> dict[str, Any]:
    cluster.add_node(num_cpus=1, resources={"proxy": 100}, env_vars={"BENCH_KEY": "sk-bench"})
    cluster.wait_for_nodes()
    request = {
        "GenerateCompletion": {
            "request": {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
                "max_tokens": 64,
            }
        }
    }
    driver_us: list[float] = []
    host_us: list[float] = []
    latency_ms: list[float] = []
    with Upstream(0) as upstream, Runtime(ray_address=cluster.address) as runtime:
        init = {"config": {"base_url": upstream.base_url, "api_key_env": "BENCH_KEY"}}
        proxy = runtime.start_actor(_placed(folder, PROXY_MANIFEST, "proxy", "proxy"), init)
        assert "Completion" in proxy.request_json(request, timeout=30)
        pid = _host_pid(runtime)
        for _ in range(min(count, 50)):  # warm up
            proxy.request_json(request, timeout=30)
        for _ in range(repeats):
            driver = time.process_time()
            host = _cpu_seconds(pid)
            start = time.perf_counter()
            for _ in range(count):
                proxy.request_json(request, timeout=30)
            latency_ms.append((time.perf_counter() - start) / count * 1000)
            host_us.append((_cpu_seconds(pid) - host) / count * 1e6)
            driver_us.append((time.process_time() - driver) / count * 1e6)
        local_us = _proxy_local(upstream.base_url, count, repeats, request)
    measured = {
        "latency_ms": round(statistics.median(latency_ms), 3),
        "driver_cpu_us_per_request": round(statistics.median(driver_us), 1),
        "host_cpu_us_per_request": round(statistics.median(host_us), 1),
        "local_cpu_us_per_request": local_us,
        "router_hop_cpu_us": router_us,
        "repeats": repeats,
        "count": count,
    }
    measured["on_paper"] = _on_paper(
        measured["driver_cpu_us_per_request"], measured["host_cpu_us_per_request"], router_us
    )
    return measured


def router_cpu_us(fallback: float) -> tuple[float, str]:
    """The router's added CPU per request, from the newest ``*-router.json`` (issue 13's
    bench: the router's CPU per request minus a lone proxy's), else ``fallback``."""
    for path in sorted(RESULTS.glob("*-router.json"), reverse=True):
        contenders = json.loads(path.read_text())["router"]["overhead"]["contenders"]
        added = contenders["router"]["cpu_us"] - contenders["proxy"]["cpu_us"]
        return round(added, 1), f"{path.name}: router cpu_us - proxy cpu_us"
    return fallback, "no router results: one local request's CPU (theater_local)"


def _on_paper(driver_us: float, host_us: float, router_us: float) -> dict[str, Any]:
    """Throughput of 1 and 4 proxies, each on a worker of its own, from CPU per request.

    A proxy's Host is one Python process: its requests share one GIL, so it serves at
    most ``1e6 / host_us`` requests per second whatever its node's cores. The driver
    (cells, chains, the Ray calls) pays ``driver_us`` per request on its own GIL, and a
    router in front (a local actor in the driver) adds ``router_us`` (see
    :func:`router_cpu_us`). Four proxies scale until the driver saturates.
    """
    one = 1e6 / max(host_us, driver_us)
    proxies_limit = 4 * 1e6 / host_us
    driver_limit = 1e6 / (driver_us + router_us)
    four = min(proxies_limit, driver_limit)
    return {
        "one_proxy_req_per_s": round(one),
        "four_proxies_req_per_s": round(four),
        "speedup": round(four / one, 2),
        "bottleneck_with_four": "driver" if driver_limit < proxies_limit else "proxies",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the Ray benchmark; write its results JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.ray", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run (tens of seconds)")
    parser.add_argument("--output", type=Path, help="the results file")
    args = parser.parse_args(argv)
    sizes = {"count": 50, "repeats": 3, "rounds": 1} if args.quick else {}
    count = sizes.get("count", 500)
    repeats = sizes.get("repeats", 15)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder, local_cluster() as cluster:
        os.environ.setdefault("THEATER_PY_HOME", str(Path(folder) / "home"))
        print("latency ...", file=sys.stderr)
        latency = _latency(cluster, Path(folder), count, repeats)
        print("recovery ...", file=sys.stderr)
        recovery = _recovery(cluster, Path(folder), sizes.get("rounds", 5))
        print("proxy ...", file=sys.stderr)
        router_us, router_source = router_cpu_us(latency["theater_local"]["cpu_us"])
        proxy = _proxy(cluster, Path(folder), min(count, 200), repeats, router_us)
        proxy["router_hop_source"] = router_source
    ratio = (latency["theater_on_ray_vs_bare_ray"] or {}).get("median", float("inf"))
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": describe_machine(),
        "ray": ray.__version__,
        "seconds": round(time.monotonic() - started, 1),
        "latency": latency,
        "recovery": recovery,
        "proxy": proxy,
        "goals": {
            "theater_on_ray_within_1.3x_of_bare_ray": ratio <= 1.3,
            "recovery_under_5_s": recovery["max_s"] < 5,
        },
    }
    output = args.output or RESULTS / f"{results['date']}-ray.json"
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    summary = {
        name: latency[name]["median_us"] for name in ("bare_ray", "theater_on_ray", "theater_local")
    }
    print(
        json.dumps(
            {"median_us": summary, "recovery": recovery["seconds"], "proxy": proxy}, indent=2
        )
    )
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
