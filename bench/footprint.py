"""Start-up and footprint: import time, the CLI's start, actor start, memory and threads.

Everything that depends on a fresh interpreter runs in one: ``import theater_py`` and
``theater-py --help`` as subprocesses timed from outside (the bare interpreter's start is
measured alike and subtracted), the rest in ``python -m bench.footprint --child ...``
children that print one JSON object. Memory is the resident set size (``VmRSS``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from theater_py import ActorHandle

__all__ = ["main", "run"]

_REPO = Path(__file__).resolve().parent.parent


def _rss_kib() -> int:
    """Return this process's resident set size in KiB (its peak where /proc is missing)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(_REPO)}


def _wall(command: Sequence[str], runs: int) -> list[float]:
    """Run ``command`` ``runs`` times; return each run's wall time in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=_REPO, env=_env(), check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def _summary(times: list[float], bare: float) -> dict[str, Any]:
    median = statistics.median(times)
    return {
        "median_s": round(median, 4),
        "spread_s": [round(min(times), 4), round(max(times), 4)],
        "net_s": round(median - bare, 4),
        "runs": len(times),
    }


def _importtime_tree(stderr: str) -> list[tuple[int, str, int]]:
    """Parse ``-X importtime`` output into ``(depth, module, cumulative us)``, in its order."""
    rows = []
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((depth, name.strip(), int(parts[1])))
    return rows


def _import_breakdown(runs: int) -> dict[str, Any]:
    """Return the cumulative import time of theater_py and of its direct imports."""
    totals: list[int] = []
    children: dict[str, list[int]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import theater_py"],
            cwd=_REPO,
            env=_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        rows = _importtime_tree(done.stderr)
        # A module's imports are listed before it: walk back from theater_py to the
        # previous top-level import to find its subtree.
        end = next(i for i, row in enumerate(rows) if row[:2] == (0, "theater_py"))
        totals.append(rows[end][2])
        for depth, name, cumulative in reversed(rows[:end]):
            if depth == 0:
                break
            if depth == 1:
                children.setdefault(name, []).append(cumulative)
    top = sorted(children.items(), key=lambda item: -statistics.median(item[1]))[:8]
    return {
        "theater_py_cumulative_ms": round(statistics.median(totals) / 1000, 2),
        "direct_imports_ms": {name: round(statistics.median(us) / 1000, 2) for name, us in top},
        "note": "-X importtime adds its own overhead; compare the entries with each other",
    }


def _cli_command() -> list[str]:
    script = shutil.which("theater-py", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "theater_py"]


def _child(kind: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.footprint", "--child", kind, *args],
        cwd=_REPO,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(
    *, runs: int, actors: int, base_url: str | None, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Measure start-up and footprint.

    Args:
        runs: interpreter starts per command timed.
        actors: how many idle echo actors to start at once.
        base_url: a fake provider for the proxy actor's requests, or ``None`` to skip them.
        progress: told of each finished part.

    Returns:
        ``python_bare``, ``import_theater_py`` and ``cli_help`` (wall times, ``net_s`` being
        the part above a bare interpreter's start), ``import_breakdown``, ``proxy_runtime``
        (start times, RSS and threads of a runtime with a proxy actor) and ``idle_actors``
        (start time, memory and threads per idle actor).
    """
    bare_times = _wall([sys.executable, "-c", "pass"], runs)
    import_times = _wall([sys.executable, "-c", "import theater_py"], runs)
    cli = _cli_command()
    help_times = _wall([*cli, "--help"], runs)
    bare = statistics.median(bare_times)
    progress("footprint: interpreter starts")
    results: dict[str, Any] = {
        "python_bare": _summary(bare_times, bare),
        "import_theater_py": _summary(import_times, bare),
        "cli_help": {"command": " ".join([Path(cli[0]).name, *cli[1:], "--help"])}
        | _summary(help_times, bare),
        "import_breakdown": _import_breakdown(min(runs, 5)),
    }
    results["proxy_runtime"] = _child("proxy", base_url or "")
    progress("footprint: proxy runtime")
    results["idle_actors"] = _child("actors", str(actors))
    progress("footprint: idle actors")
    return results


# -- children: each runs in a fresh interpreter and prints one JSON object ---------------------


def _complete(proxy: ActorHandle, request: dict[str, Any]) -> None:
    reply = proxy.request_json(request, timeout=30)
    if "Completion" not in reply:
        raise RuntimeError(f"the proxy answered {reply}")


def _retained_per_call(call: Callable[[], object], calls: int) -> int:
    """Return the bytes of Python memory still held after each call (what a server accumulates)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            call()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return round((after - before) / calls)


def _child_proxy(base_url: str) -> dict[str, Any]:
    rss_bare = _rss_kib()
    threads_bare = threading.active_count()
    from bench.actors import ECHO_MANIFEST
    from theater_py import Runtime

    rss_imported = _rss_kib()
    from bench.clients import KEY, KEY_ENV, PROXY_MANIFEST

    os.environ[KEY_ENV] = KEY
    manifest = PROXY_MANIFEST
    config = {
        "base_url": base_url or "http://127.0.0.1:9/v1",  # nothing is sent without base_url
        "api_key_env": KEY_ENV,
        "max_cache_size": 0,
    }
    with Runtime(in_memory=True) as runtime:
        start = time.perf_counter()
        proxy = runtime.start_actor(manifest, {"config": config}, name="proxy")
        first_start = time.perf_counter() - start
        rss_proxy = _rss_kib()
        threads_proxy = threading.active_count()
        served: dict[str, Any] = {}
        if base_url:
            request = {
                "GenerateCompletion": {
                    "request": {
                        "model": "gpt-4o",
                        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                        "temperature": 0.7,
                    }
                }
            }
            for _ in range(100):
                _complete(proxy, request)
            served = {
                "rss_after_100_requests_mib": round(_rss_kib() / 1024, 1),
                "threads_after_100_requests": threading.active_count(),
                "retained_bytes_per_request": _retained_per_call(
                    lambda: _complete(proxy, request), 200
                ),
            }
        proxy.stop(timeout=10)
        warm = []
        for _ in range(10):
            start = time.perf_counter()
            proxy = runtime.start_actor(manifest, {"config": config}, name="proxy")
            warm.append(time.perf_counter() - start)
            proxy.stop(timeout=10)
        echo_first = time.perf_counter()
        echo = runtime.start_actor(ECHO_MANIFEST, name="echo")
        echo_first = time.perf_counter() - echo_first
        echo.stop(timeout=10)
        echo_warm = []
        for _ in range(50):
            start = time.perf_counter()
            echo = runtime.start_actor(ECHO_MANIFEST, name="echo")
            echo_warm.append(time.perf_counter() - start)
            echo.stop(timeout=10)
    return {
        "rss_bare_python_mib": round(rss_bare / 1024, 1),
        "rss_after_import_mib": round(rss_imported / 1024, 1),
        "rss_with_proxy_actor_mib": round(rss_proxy / 1024, 1),
        "threads_bare": threads_bare,
        "threads_with_proxy_actor": threads_proxy,
        **served,
        "proxy_start_first_ms": round(first_start * 1000, 2),
        "proxy_start_warm_ms": round(statistics.median(warm) * 1000, 2),
        "echo_start_first_ms": round(echo_first * 1000, 2),
        "echo_start_warm_ms": round(statistics.median(echo_warm) * 1000, 3),
        "echo_start_warm_spread_ms": [
            round(min(echo_warm) * 1000, 3),
            round(max(echo_warm) * 1000, 3),
        ],
    }


def _child_actors(count: int) -> dict[str, Any]:
    from bench.actors import ECHO_MANIFEST, Ping, Pong
    from theater_py import Runtime

    with Runtime(in_memory=True) as runtime:
        warm = runtime.start_actor(ECHO_MANIFEST, name="warm-up")  # imports, caches
        warm.stop(timeout=10)
        rss_before = _rss_kib()
        threads_before = threading.active_count()
        start = time.perf_counter()
        handles = [runtime.start_actor(ECHO_MANIFEST, name=f"echo-{i}") for i in range(count)]
        started = time.perf_counter() - start
        if any(handle.request(Ping(i)) != Pong(i, "ping") for i, handle in enumerate(handles)):
            raise RuntimeError("an idle actor does not answer")
        rss_after = _rss_kib()
        threads_after = threading.active_count()
        start = time.perf_counter()
        runtime.shutdown(timeout=30)
        stopped = time.perf_counter() - start
    return {
        "actors": count,
        "start_all_s": round(started, 3),
        "start_per_actor_ms": round(started / count * 1000, 3),
        "rss_per_actor_kib": round((rss_after - rss_before) / count, 1),
        "threads_per_actor": round((threads_after - threads_before) / count, 2),
        "rss_total_mib": round(rss_after / 1024, 1),
        "stop_all_s": round(stopped, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run one child measurement and print its JSON (used by :func:`run`)."""
    parser = argparse.ArgumentParser(prog="python -m bench.footprint")
    parser.add_argument("--child", choices=("proxy", "actors"), required=True)
    parser.add_argument("arg", nargs="?", default="")
    args = parser.parse_args(argv)
    if args.child == "proxy":
        result = _child_proxy(args.arg)
    else:
        result = _child_actors(int(args.arg or 1000))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
