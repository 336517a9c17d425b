"""The issue's targets judged against a run's results, and the run rendered as Markdown."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from bench.router import JUDGED_LATENCY_MS

__all__ = ["judge_targets", "render_markdown"]

_Target = tuple[str, str, Callable[[dict[str, Any]], float | None], str, float]


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _proxy_latency_ratio(results: dict[str, Any]) -> float | None:
    return _get(results, "proxy", "ratios_vs_requests", "proxy_typed", "latency")  # type: ignore[no-any-return]


def _proxy_throughput(results: dict[str, Any]) -> float | None:
    return _get(results, "concurrency", "throughput_vs_requests", "proxy_typed")  # type: ignore[no-any-return]


def _hop_ratio(results: dict[str, Any]) -> float | None:
    return _get(results, "hop", "ratios", "request_typed_vs_pykka_ask")  # type: ignore[no-any-return]


def _saved_hop_ratio(results: dict[str, Any]) -> float | None:
    return _get(results, "hop", "ratios", "request_typed_saved_vs_pykka_ask")  # type: ignore[no-any-return]


def _import_s(results: dict[str, Any]) -> float | None:
    return _get(results, "footprint", "import_theater_py", "median_s")  # type: ignore[no-any-return]


def _help_s(results: dict[str, Any]) -> float | None:
    return _get(results, "footprint", "cli_help", "median_s")  # type: ignore[no-any-return]


def _router_runs(part: dict[str, Any]) -> list[dict[str, Any]]:
    """A router part's overhead runs, the provider answering at once first (a results file
    before 2026-11-30 holds one paced run, not a list)."""
    paced = part.get("overhead_paced") or []
    if isinstance(paced, dict):
        paced = [paced]
    return [run for run in (part.get("overhead"), *paced) if run]


def _router_ratio(results: dict[str, Any]) -> float | None:
    for run in _router_runs(results.get("router") or {}):
        if _get(run, "upstream", "latency_ms") == JUDGED_LATENCY_MS:
            return _get(run, "added", "router", "latency_ratio", "median")  # type: ignore[no-any-return]
    return None


_TARGETS: tuple[_Target, ...] = (
    (
        "proxy_latency",
        "proxy actor within 1.15x of raw requests per request (median latency)",
        _proxy_latency_ratio,
        "<=",
        1.15,
    ),
    (
        "proxy_throughput",
        "one proxy actor reaches >= 95 % of raw requests' throughput from the same threads",
        _proxy_throughput,
        ">=",
        0.95,
    ),
    (
        "typed_hop",
        "typed request round trip under 2.5x a bare Pykka ask (median)",
        _hop_ratio,
        "<",
        2.5,
    ),
    (
        "saved_chain_hop",
        "typed request round trip to a save_chain actor under 3x a bare Pykka ask (median)",
        _saved_hop_ratio,
        "<",
        3.0,
    ),
    (
        "router_latency",
        "a router in front of one proxy adds under 10 % latency per request, the provider "
        f"answering in {JUDGED_LATENCY_MS} ms (paired median)",
        _router_ratio,
        "<",
        1.10,
    ),
    (
        "import_time",
        "python -c 'import theater_py' under 0.3 s (wall, interpreter start included)",
        _import_s,
        "<",
        0.3,
    ),
    (
        "cli_help",
        "theater-py --help under 0.3 s (wall, interpreter start included)",
        _help_s,
        "<",
        0.3,
    ),
)


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">=": operator.ge,
}


def judge_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Judge each target of the issue; ``met`` is ``None`` when the run did not measure it."""
    judged = []
    for name, description, measure, relation, limit in _TARGETS:
        value = measure(results)
        met = None if value is None else _COMPARE[relation](value, limit)
        judged.append(
            {
                "name": name,
                "target": description,
                "limit": f"{relation} {limit}",
                "measured": value,
                "met": met,
            }
        )
    return judged


def _cell(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return f"{_cell(value[0])}-{_cell(value[1])}{suffix}"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
        return text + suffix
    return f"{value}{suffix}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _failures(contenders: dict[str, Any]) -> list[str]:
    lines = [
        f"- {name}: {entry.get('failed_requests', entry.get('failed_repeats'))} failed "
        f"({entry['error']}); those {'bursts' if 'failed_bursts' in entry else 'repeats'} "
        "are left out of the figures"
        for name, entry in contenders.items()
        if "error" in entry
    ]
    return [*lines, ""] if lines else []


def _hop(results: dict[str, Any]) -> list[str]:
    hop = results.get("hop")
    if not hop:
        return []
    base = hop["latency"]["pykka_ask"]["median_us"]
    paired = hop.get("paired_ratios", {})
    rows = []
    for name, entry in hop["latency"].items():
        pair = paired.get(f"{name}_vs_pykka_ask")
        rows.append(
            [
                name,
                _cell(entry["median_us"]),
                _cell(entry["p99_us"]),
                _cell(entry["spread_us"]),
                _cell(entry["cpu_us"]),
                f"{entry['median_us'] / base:.2f}x",
                f"{pair['median']:.2f}x ({_cell(pair['spread'])})" if pair else "-",
            ]
        )
    lines = ["### Runtime hop (request round trip to an echo actor)", ""]
    lines += _table(
        [
            "path",
            "median us",
            "p99 us",
            "spread of medians us",
            "CPU us/call",
            "vs pykka ask",
            "paired (range)",
        ],
        rows,
    )
    base_rate = hop["throughput"]["pykka_tell"]["median_msgs_per_s"]
    rows = [
        [
            name,
            _cell(entry["median_msgs_per_s"]),
            _cell(entry["spread_msgs_per_s"]),
            _cell(entry["send_cost_us"]),
            f"{entry['median_msgs_per_s'] / base_rate:.2f}x",
        ]
        for name, entry in hop["throughput"].items()
    ]
    lines += _table(
        ["fire-and-forget", "msgs/s", "spread msgs/s", "caller us/send", "vs pykka tell"], rows
    )
    return lines


def _proxy(results: dict[str, Any]) -> list[str]:
    proxy = results.get("proxy")
    if not proxy:
        return []
    ratios = proxy.get("ratios_vs_requests", {})
    rows = []
    for name, entry in proxy["contenders"].items():
        if "unavailable" in entry:
            rows.append([name, "unavailable: " + entry["unavailable"], "", "", "", ""])
            continue
        ratio = ratios.get(name, {})
        rows.append(
            [
                name,
                _cell(entry["median_us"]),
                _cell(entry["p99_us"]),
                _cell(entry["spread_us"]),
                _cell(entry["cpu_us"]),
                f"{_cell(ratio.get('latency'), 'x')} / {_cell(ratio.get('cpu'), 'x')}",
            ]
        )
    lines = ["### Proxy overhead (one request at a time, provider answering at once)", ""]
    return (
        lines
        + _failures(proxy["contenders"])
        + _table(
            [
                "client",
                "median us",
                "p99 us",
                "spread of medians us",
                "CPU us/request",
                "vs requests (latency / CPU)",
            ],
            rows,
        )
    )


def _concurrency(results: dict[str, Any]) -> list[str]:
    run = results.get("concurrency")
    if not run:
        return []
    relative = run.get("throughput_vs_requests", {})
    rows = []
    for name, entry in run["contenders"].items():
        if "unavailable" in entry:
            rows.append([name, "unavailable: " + entry["unavailable"], "", "", "", ""])
            continue
        rows.append(
            [
                name,
                _cell(entry["median_s"]),
                _cell(entry["spread_s"]),
                f"{entry['vs_ideal']:.2f}x",
                _cell(entry["cpu_ms_per_request"]),
                _cell(relative.get(name)),
            ]
        )
    lines = [
        f"### Concurrency ({run['requests']} requests, {run['threads']} caller threads, "
        f"{run['latency_ms']} ms upstream latency, ideal {run['ideal_s']} s)",
        "",
    ]
    return (
        lines
        + _failures(run["contenders"])
        + _table(
            [
                "client",
                "wall s (median)",
                "spread s",
                "vs ideal",
                "CPU ms/request",
                "throughput vs requests",
            ],
            rows,
        )
    )


def _footprint(results: dict[str, Any]) -> list[str]:
    foot = results.get("footprint")
    if not foot:
        return []
    proxy = foot["proxy_runtime"]
    idle = foot["idle_actors"]
    rows = [
        ["bare `python -c pass`", _cell(foot["python_bare"]["median_s"], " s")],
        [
            "`python -c 'import theater_py'`",
            f"{_cell(foot['import_theater_py']['median_s'], ' s')} "
            f"(net {_cell(foot['import_theater_py']['net_s'], ' s')})",
        ],
        [
            f"`{foot['cli_help']['command']}`",
            f"{_cell(foot['cli_help']['median_s'], ' s')} "
            f"(net {_cell(foot['cli_help']['net_s'], ' s')})",
        ],
        ["`start_actor` to ready, echo (warm)", _cell(proxy["echo_start_warm_ms"], " ms")],
        [
            "`start_actor` to ready, proxy (first, imports included)",
            _cell(proxy["proxy_start_first_ms"], " ms"),
        ],
        ["`start_actor` to ready, proxy (warm)", _cell(proxy["proxy_start_warm_ms"], " ms")],
        ["RSS: bare interpreter", _cell(proxy["rss_bare_python_mib"], " MiB")],
        ["RSS: runtime with a proxy actor", _cell(proxy["rss_with_proxy_actor_mib"], " MiB")],
        [
            "RSS: same, after 100 requests",
            _cell(proxy.get("rss_after_100_requests_mib"), " MiB"),
        ],
        [
            "Python memory retained per proxied request",
            _cell(proxy.get("retained_bytes_per_request"), " B"),
        ],
        [
            "threads: runtime with a proxy actor (idle / after requests)",
            f"{proxy['threads_with_proxy_actor']} / "
            f"{_cell(proxy.get('threads_after_100_requests'))}",
        ],
        [f"start {idle['actors']} echo actors", _cell(idle["start_all_s"], " s")],
        ["memory per idle actor (RSS)", _cell(idle["rss_per_actor_kib"], " KiB")],
        ["threads per idle actor", _cell(idle["threads_per_actor"])],
        [f"stop {idle['actors']} echo actors (runtime shutdown)", _cell(idle["stop_all_s"], " s")],
    ]
    return ["### Start-up and footprint", "", *_table(["what", "measured"], rows)]


def _stream(results: dict[str, Any]) -> list[str]:
    stream = results.get("stream")
    if not stream:
        return []
    ratios = stream.get("ratios_vs_requests", {})
    versus_sdk = stream.get("cpu_per_chunk_vs_openai", {})
    rows = []
    for name, entry in stream["contenders"].items():
        if "unavailable" in entry:
            rows.append([name, "unavailable: " + entry["unavailable"], "", "", "", ""])
            continue
        rows.append(
            [
                name,
                _cell(entry["ttft"]["median_us"]),
                _cell(entry["ttft"]["spread_us"]),
                _cell(ratios.get(name, {}).get("ttft_extra_us")),
                _cell(entry["cpu_per_chunk_us"]),
                f"{_cell(ratios.get(name, {}).get('cpu_per_chunk'), 'x')} / "
                f"{_cell(versus_sdk.get(name), 'x')}",
            ]
        )
    chunks = stream["upstream"]["chunks"]
    lines = [f"### Streaming ({chunks} chunks, provider writing at once)", ""]
    lines += _table(
        [
            "client",
            "TTFT median us",
            "spread us",
            "TTFT minus requests' us",
            "CPU us/chunk",
            "CPU/chunk vs requests / openai",
        ],
        rows,
    )
    burst = stream.get("concurrent")
    if burst:
        rows = [
            [name, _cell(entry["chunks_per_s"]), _cell(entry["spread"])]
            for name, entry in burst["contenders"].items()
        ]
        lines += [f"{burst['streams']} concurrent streams, {burst['bursts']} bursts:", ""]
        lines += _table(["client", "chunks/s median", "spread"], rows)
        paired = burst.get("proxy_vs_requests")
        if paired:
            lines += [
                f"proxy / requests, paired per burst: {_cell(paired['paired_median'])} "
                f"({_cell(paired['paired_spread'])})",
                "",
            ]
    for goal, verdict in stream.get("goals", {}).items():
        met = {True: "met", False: "**missed**", None: "not measured"}[verdict["met"]]
        measured = verdict.get("measured", verdict.get("measured_extra_us"))
        lines.append(f"- {goal}: {_cell(measured)}, {met}")
    return [*lines, ""]


def _router(results: dict[str, Any]) -> list[str]:
    part = results.get("router")
    if not part:
        return []
    lines = ["", "### Router", ""]
    for overhead in _router_runs(part):
        lines += router_overhead_table(overhead)
    soak = part["soak"]
    lines += [
        "",
        f"Soak: {soak['requests']} requests, {soak['concurrency']} at once, 3 faulty providers: "
        f"{soak['served']} served, errors {soak['errors']}, lost {soak['lost']}, answered twice "
        f"{soak['answered_twice']}, wrong answers {soak['wrong_answer']}, spent "
        f"{soak['spent_usd']} of {soak['budget_usd']} USD ({'ok' if soak['ok'] else 'FAILED'}).",
    ]
    return lines


def router_overhead_table(overhead: dict[str, Any]) -> list[str]:
    """One router overhead run (:func:`bench.router.overhead`) as a Markdown table."""
    rows = []
    for name, entry in overhead["contenders"].items():
        added = overhead["added"].get(name, {})
        ratio = (added.get("latency_ratio") or {}).get("median")
        rows.append(
            [
                name,
                _cell(entry.get("median_us"), " us"),
                _cell(entry.get("cpu_us"), " us"),
                _cell(ratio, "x"),
                _cell(added.get("added_latency_us"), " us"),
                _cell(added.get("break_even_ms"), " ms"),
            ]
        )
    upstream = overhead.get("upstream", {})
    latency = upstream.get("latency_ms", 0)
    what = upstream.get("model") or f"a fake provider answering in {latency} ms"
    header = ["contender", "median latency", "CPU/request", "vs proxy", "added", "break-even"]
    return [f"Against {what}:", "", *_table(header, rows), ""]


def render_markdown(results: dict[str, Any]) -> str:
    """Render a run's results as Markdown tables: targets, then each measurement."""
    lines = ["### Targets", ""]
    rows = []
    for target in results.get("targets", []):
        met = {True: "met", False: "**missed**", None: "not measured"}[target["met"]]
        rows.append([target["target"], target["limit"], _cell(target["measured"]), met])
    lines += _table(["target", "limit", "measured", ""], rows)
    for section in (_hop, _proxy, _concurrency, _footprint, _stream, _router):
        lines += section(results)
    return "\n".join(lines)
