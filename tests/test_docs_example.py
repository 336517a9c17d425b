"""The Python examples of the docs run end to end against the loopback simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from theater_py_actors.openai_proxy.simulator import OpenAISimulator

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "openai_proxy_example.py"


def test_the_proxy_example_runs():
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "models: gpt-4o-mini"
    assert "answer: You said: Say hello to the actor world." in lines
    assert any(line.startswith("tool call: get_weather {") for line in lines)
    assert lines[-1].endswith("chain verifies: True")


def test_the_router_example_shows_a_fallback_and_a_budget_refusal() -> None:
    example = ROOT / "docs" / "examples" / "router_example.py"
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "models: smart, primary:small-1, backup:large-1"
    assert "served_by: backup:large-1" in lines
    assert "  tried primary:small-1: error server_error" in lines
    assert any(line.startswith("refused: budget_exceeded: ") for line in lines)
    assert lines[-1] == "calls made for it: 0"
    assert "PRICED HIGHER" in done.stderr


# -- the README's Quick start ----------------------------------------------------------


def quick_start() -> tuple[str, list[str]]:
    """Return the README's Quick start snippet, and its offline commands without comments."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet is not None, "the Quick start has a ```python block"
    after = section[snippet.end() :]
    commands = re.findall(r"^    (\S.*?)\s*(?:#.*)?$", after, re.MULTILINE)
    return snippet.group(1), commands[:3]


def run_snippet(tmp_path: Path, base_url: str, api_key: str) -> subprocess.CompletedProcess[str]:
    """Run the snippet as the third offline command does, from a folder outside the repository."""
    snippet, _ = quick_start()
    script = tmp_path / "quickstart.py"
    script.write_text(snippet, encoding="utf-8")
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": api_key}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_quick_start_offline_commands_fit_together():
    _, (serve, point, run) = quick_start()
    port = re.fullmatch(r"theater-py mock-openai --port (\d+) &", serve)
    assert port is not None, serve
    assert point == (
        f"export OPENAI_BASE_URL=http://127.0.0.1:{port.group(1)}/v1 OPENAI_API_KEY=offline"
    )
    assert run == "python quickstart.py"


def test_the_quick_start_snippet_runs_against_the_simulator(tmp_path: Path):
    with OpenAISimulator() as sim:
        done = run_snippet(tmp_path, sim.base_url, "offline")
        assert sim.requests_seen == 1
    assert done.returncode == 0, done.stderr
    assert done.stdout == "You said: Hello!\n"


def test_the_quick_start_snippet_prints_an_error_reply(tmp_path: Path):
    """A provider that refuses the key: the snippet says why instead of a KeyError."""
    with OpenAISimulator(api_key="the-right-key") as sim:
        done = run_snippet(tmp_path, sim.base_url, "sk-quickstart-wrong-key")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("error: authentication: "), done.stdout
    assert "sk-quickstart-wrong-key" not in done.stdout + done.stderr


def test_the_quick_start_shows_a_retry_without_any_logging_set_up(tmp_path: Path):
    """A wait is never silent: the retry's WARNING reaches stderr through Python's last resort."""
    with OpenAISimulator() as sim:
        sim.fail_next(429, retry_after="0.1")
        done = run_snippet(tmp_path, sim.base_url, "offline")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "You said: Hello!\n"
    assert done.stderr == "retrying in 0.1 s: 429 rate limit (attempt 2 of 5)\n"


def test_the_readme_links_the_guides_and_every_link_resolves():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in ("getting-started", "troubleshooting", "architecture"):
        assert f"](docs/{guide}.md)" in readme
    for target in re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).is_file(), target


# -- the agent loop and typed handles ----------------------------------------------------

AGENT_LOOP = ROOT / "docs" / "examples" / "agent_loop.py"
TYPED_HANDLE = """\
from theater_py_actors.genai_types import ListModels, Message, Role, ToolResult, ToolText
from theater_py_actors.openai_proxy import ProxyHandle
from theater_py import Runtime


def check(runtime: Runtime) -> None:
    proxy: ProxyHandle = runtime.start_actor("openai-proxy")
    reveal_type(proxy.request(ListModels()))
    proxy.request("ListModels")
    results = [ToolResult("call_1", [ToolText("18 C")])]
    Message(Role.USER, results)
"""


def test_the_agent_loop_runs_against_the_simulator():
    done = subprocess.run(
        [sys.executable, str(AGENT_LOOP)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "tool call: get_weather {'city': 'sample'}",
        "answer: Tool result: 18 C and sunny in sample",
    ]


def test_mypy_strict_accepts_the_agent_loop_and_knows_a_handles_reply_type(tmp_path: Path):
    pytest.importorskip("mypy")
    typed = tmp_path / "typed_handle.py"
    typed.write_text(TYPED_HANDLE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(AGENT_LOOP), str(typed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    notes = [line for line in done.stdout.splitlines() if "Revealed type" in line]
    # The one error is the str sent where a ProxyRequest goes; the agent loop has none.
    assert len(errors) == 1, done.stdout
    assert f'{typed.name}:9: error: Argument 1 to "request"' in errors[0]
    assert len(notes) == 1
    for reply in ("ModelList", "Completion", "ErrorResponse"):
        assert reply in notes[0]
