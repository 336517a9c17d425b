"""The theater-py command: real server processes, a real socket, the real proxy and simulator.

Servers run as subprocesses (`python -m theater_py start|run`), stopped by signal. Client
commands run as subprocesses where the process boundary matters (exit statuses, the entry
point, one-line errors) and otherwise through `cli.main()`, which is the same code over the
same socket without another interpreter's start-up.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from theater_py import Actor, ActorContext
from theater_py.chain import verify_events
from theater_py.cli import main
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

REPO = Path(__file__).resolve().parent.parent
SIM_KEY = "sk-sim-0123456789abcdef"
COMMANDS = (
    "start",
    "run",
    "status",
    "list",
    "request",
    "send",
    "stop",
    "restart",
    "events",
    "chat",
    "models",
)


class FakeProxy(Actor):
    """Answers as an OpenAI proxy does, with a tool call and a cost the simulator never gives."""

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        request = message["GenerateCompletion"]["request"]
        text = request["messages"][0]["content"][0]["text"]
        return {
            "Completion": {
                "completion": {
                    "content": [
                        {"type": "text", "text": f"looking up {text}"},
                        {
                            "type": "tool_use",
                            "id": "call_1",
                            "name": "lookup",
                            "input": {"q": text},
                        },
                    ],
                    "id": "c-1",
                    "model": "fake-1",
                    "role": "assistant",
                    "stop_reason": "tool_use",
                    "type": "message",
                    "usage": {"input_tokens": 3, "output_tokens": 5, "cost_usd": 0.00012},
                }
            }
        }


# -- helpers ----------------------------------------------------------------------------


def cli_env(home: Path) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "THEATER_PY_HOME": str(home),
        "PYTHONPATH": str(REPO) if not path else f"{REPO}{os.pathsep}{path}",
        "SIM_KEY": SIM_KEY,
    }


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a new interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "theater_py", *args],
        env=cli_env(home),
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command in this process; return its status, stdout and stderr."""
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("theater-py: error: ")
    return lines[0]


def write_manifest(folder: Path, name: str, component: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\nversion = "0.1.0"\ncomponent = "{component}"\n')
    return path


class Server:
    """A `theater-py start|run` subprocess."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.socket = home / "control.sock"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "theater_py", *args],
            env=cli_env(home),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = ""

    def wait_ready(self, deadline: float = 30.0) -> None:
        """Wait until the socket accepts, which it does only once the actors are up."""
        for _ in range(int(deadline / 0.02)):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(str(self.socket)) == 0:
                    return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.02)  # a bounded poll that also sees an early exit
                _, self.log = self.proc.communicate()
                pytest.fail(f"the server exited with {self.proc.returncode}: {self.log}")
        pytest.fail("the server's socket did not appear")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            _, self.log = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.log = self.proc.communicate()
        return self.proc.returncode


@contextlib.contextmanager
def serving(home: Path, *args: str) -> Iterator[Server]:
    server = Server(home, *args)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# -- a shared server: a system of sample actors and the real OpenAI proxy -----------------


@pytest.fixture(scope="module")
def sim() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(api_key=SIM_KEY) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, sim: OpenAISimulator) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("system")
    echo = write_manifest(folder, "echo", "tests.sample_actors:Echo")
    children = [
        ("echo", echo),
        ("worker", write_manifest(folder, "worker", "tests.sample_actors:Worker")),
        ("shop", write_manifest(folder, "shop", "tests.sample_actors:Shop")),
        ("victim", echo),
        ("followed", echo),
        ("openai-proxy", REPO / "manifests" / "openai-proxy.toml"),
    ]
    tables = "".join(
        f'\n[[child]]\nname = "{name}"\nmanifest = "{manifest}"\n' for name, manifest in children
    )
    system_file = folder / "system.toml"
    system_file.write_text(
        '[supervisor]\nname = "cli-test"\nstrategy = "one_for_one"\nintensity = 10\n' + tables
    )
    # The simulator is no provider the catalog knows: ListModels lists the config's models.
    gpt_4o = {
        "id": "gpt-4o",
        "max_tokens": 128000,
        "pricing": {"input_cost_per_million_tokens": 2.5, "output_cost_per_million_tokens": 10},
    }
    config = {"config": {"base_url": sim.base_url, "api_key_env": "SIM_KEY", "models": [gpt_4o]}}
    init = f"openai-proxy={json.dumps(config)}"
    with serving(folder / "home", "run", str(system_file), "--init", init) as server:
        yield server


@pytest.fixture
def home(system: Server) -> str:
    return str(system.home)


# -- help and usage -----------------------------------------------------------------------


def test_help_lists_every_command_and_the_exit_statuses(tmp_path: Path) -> None:
    result = cli(tmp_path, "--help")
    assert result.returncode == 0
    for command in (*COMMANDS, "mock-openai"):
        assert f"\n    {command}" in result.stdout
    assert "exit status:" in result.stdout
    assert "THEATER_PY_HOME" in result.stdout


@pytest.mark.parametrize("command", [*COMMANDS, "mock-openai"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: theater-py {command} ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["request", '"hi"'], "give the actor's NAME and the MESSAGE"),
        (["chat", "openai-proxy"], "give the actor's NAME and the PROMPT"),
        (["models"], "give the actor's NAME, or --manifest"),
        (["request", "--manifest", "m.toml", "echo", '"hi"'], "NAME or --manifest, not both"),
        (["request", "--init", "{}", "echo", '"hi"'], "--init goes with --manifest"),
        (["run", "system.toml", "--init", '{"config": {"key": "sk-x"}}'], "CHILD=FILE|JSON"),
        (["request", "echo", "ListModels"], "a JSON string needs quotes"),
        (["request", "echo", "@missing.json"], "file not found: missing.json"),
        (["start", "echo.toml", "--init", '{"api_key": "sk-x",}'], "--init is not valid JSON"),
        (["list", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(args)
    except SystemExit as exited:  # argparse's own errors
        status = int(exited.code or 0)
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.splitlines()) == 1
    assert message in err
    assert "sk-x" not in err  # an init value is never quoted back


@pytest.mark.parametrize(
    ("command", "manifest", "message"),
    [
        ("start", "system.toml", "this is a system manifest ([supervisor] and [[child]] tables)"),
        ("run", "openai-proxy.toml", "this is an actor's manifest (it names a component)"),
    ],
)
def test_the_other_kind_of_manifest_names_the_command_that_takes_it(
    tmp_path: Path, command: str, manifest: str, message: str
) -> None:
    result = cli(tmp_path / "home", command, f"manifests/{manifest}")
    assert result.returncode == 2
    line = one_error_line(result.stderr)
    assert message in line
    assert f"`theater-py {'run' if command == 'start' else 'start'} FILE`" in line


def test_a_missing_actor_class_is_named_with_the_modules_actor_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, "typo", "tests.test_cli:FakeProxi")
    status, _, err = run_main(
        capsys, "--home", str(tmp_path / "home"), "request", "--manifest", str(manifest), "1"
    )
    assert status == 2
    line = one_error_line(err)
    assert "tests.test_cli.FakeProxi does not exist (its Actor subclasses: FakeProxy)" in line


@pytest.mark.parametrize("command", ["start", "run"])
def test_a_config_error_at_start_is_bad_input_said_once(tmp_path: Path, command: str) -> None:
    """One line (not the actor's and the supervisor's log lines too), exit 2, the fix named."""
    init = json.dumps({"config": {"defualt_model": "gpt-4o"}})
    if command == "start":
        args = ("start", "manifests/openai-proxy.toml", "--init", init)
    else:
        args = ("run", "manifests/system.toml", "--init", f"openai-proxy={init}")
    result = cli(tmp_path / "home", *args)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result.stderr)
    assert "config.defualt_model: unknown key (did you mean 'default_model'?" in line
    assert not (tmp_path / "home" / "control.sock").exists()


# -- serving in the foreground -------------------------------------------------------------


def test_start_serves_an_actor_until_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, "worker", "tests.sample_actors:Worker")
    home = tmp_path / "home"
    server = Server(home, "start", str(manifest), "--name", "w1", "--init", '{"note": "é"}')
    try:
        server.wait_ready()
        assert stat.S_IMODE(os.stat(server.socket).st_mode) == 0o600
        result = cli(home, "request", "w1", '{"crash": "boom"}')
        assert result.returncode == 1
        assert "asked to crash: boom" in one_error_line(result.stderr)
        status, out, _ = run_main(capsys, "--home", str(home), "request", "w1", '{"n": 1}')
        assert status == 0
        assert json.loads(out) == {"incarnation": 2, "message": {"n": 1}}
    finally:
        status = server.stop(signal.SIGTERM)
    assert status == 0
    assert not server.socket.exists()
    log = server.log
    assert "started actor w1" in log
    assert "crashed" in log
    assert "boom" in log
    assert "restarted w1" in log
    assert "SIGTERM received: shutting down" in log
    assert "Traceback" not in log


def test_a_stale_socket_is_replaced_and_sigint_stops_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, "echo", "tests.sample_actors:Echo")
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(home / "control.sock"))  # left behind, as by a killed server
    status, _, err = run_main(capsys, "--home", str(home), "list")
    assert status == 3
    assert "no theater-py server is running" in one_error_line(err)
    server = Server(home, "start", str(manifest))
    try:
        server.wait_ready()
        status, out, _ = run_main(capsys, "--home", str(home), "status")
        assert status == 0
        assert f"pid {server.proc.pid}" in out
    finally:
        assert server.stop(signal.SIGINT) == 0
    assert "removed the stale control socket" in server.log
    assert "SIGINT received" in server.log
    assert not server.socket.exists()


def test_a_second_server_on_the_same_home_is_refused(system: Server) -> None:
    result = cli(system.home, "run", "manifests/system.toml")
    assert result.returncode == 4
    assert f"already runs in {system.home} (pid {system.proc.pid})" in one_error_line(result.stderr)
    assert cli(system.home, "list").returncode == 0  # the first server is untouched


def test_start_into_a_running_server_stop_and_restart_each_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = write_manifest(tmp_path, "echo", "tests.sample_actors:Echo")
    system_file = tmp_path / "system.toml"
    system_file.write_text(
        '[supervisor]\nname = "tree"\nstrategy = "one_for_one"\n\n'
        f'[[child]]\nname = "first"\nmanifest = "{echo}"\ninit = {{ n = 1 }}\n'
    )
    home = tmp_path / "home"
    server = Server(home, "run", str(system_file))

    def ask(*args: str) -> tuple[int, str, str]:
        return run_main(capsys, "--home", str(home), *args)

    def ids() -> dict[str, str]:
        _, out, _ = ask("list", "--json")
        return {actor["name"]: actor["id"] for actor in json.loads(out)}

    try:
        server.wait_ready()
        status, out, _ = ask("start", str(echo), "--name", "late", "--init", '{"n": 2}')
        assert status == 0
        assert out.startswith("started late (")
        assert out.endswith(f" in the server (pid {server.proc.pid})\n")
        assert set(ids()) == {"first", "late"}
        assert ask("stop", "late")[0] == 0
        assert "late" not in ids()
        status, out, err = ask("events", "late", "--verify")  # a stopped actor's chain reads
        assert status == 0, err
        assert "actor-stop" in out.splitlines()[-1]
        assert err.startswith("chain verified: ")
        status, out, _ = ask("restart", "late")
        assert (status, out) == (0, f"restarted late ({ids()['late']})\n")
        assert json.loads(ask("request", "late", '"state"')[1]) == {"n": 2}  # its init kept
        before = ids()["first"]
        assert ask("restart", "first")[0] == 0  # running: stopped, then started again
        assert ids()["first"] != before
        assert json.loads(ask("request", "first", '"state"')[1]) == {"n": 1}
        assert ask("request", "first", '{"Probe": {"text": "private words"}}')[0] == 0
        status, _, err = ask("restart", "nobody")
        assert status == 3
        assert "no actor named 'nobody' runs or was stopped on this server" in err
    finally:
        assert server.stop() == 0
    log = server.log
    assert "started actor late (" in log
    assert "stopped actor late\n" in log
    assert "restarted actor late (" in log and "under supervisor root" in log
    assert "restarted actor first (" in log and "under supervisor tree" in log
    # One line per request: op, actor, the message's tag, the outcome and the duration.
    assert re.search(r"request first Probe: ok in \d+\.\d{3} s", log)
    assert re.search(r"restart nobody: ActorNotFound in \d+\.\d{3} s", log)
    assert "private words" not in log


def test_a_failed_start_exits_1_and_leaves_no_socket(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, "echo", "tests.sample_actors:Echo")
    home = tmp_path / "home"
    result = cli(home, "start", str(manifest), "--init", '{"fail_init": "no thanks"}')
    assert result.returncode == 1
    assert "no thanks" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert not (home / "control.sock").exists()


# -- talking to a running server -----------------------------------------------------------


def test_list_shows_every_actor(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "--home", home, "list")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "ID", "STATUS", "RESTARTS", "UPTIME", "QUEUED", "CHAIN"]
    names = {row.split()[0] for row in rows}
    assert {"echo", "worker", "shop", "openai-proxy"} <= names
    status, out, _ = run_main(capsys, "list", "--json", "--home", home)
    actors = {a["name"]: a for a in json.loads(out)}
    assert actors["echo"]["status"] == "running"
    assert set(actors["echo"]) == {
        "name",
        "id",
        "status",
        "restarts",
        "uptime_s",
        "queued",
        "chain",
    }
    assert actors["echo"]["chain"] == {"saved": False, "lost": 0, "error": None}


def test_request_reads_json_inline_from_a_file_and_from_stdin(
    home: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli(Path(home), "request", "echo", '{"inline": [1, 2]}')
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"echo": {"inline": [1, 2]}}
    message = tmp_path / "message.json"
    message.write_text('{"from": "file"}')
    status, out, _ = run_main(capsys, "--home", home, "request", "echo", f"@{message}")
    assert (status, json.loads(out)) == (0, {"echo": {"from": "file"}})
    monkeypatch.setattr(sys, "stdin", io.StringIO('"from stdin"'))
    status, out, _ = run_main(capsys, "--home", home, "request", "echo", "-")
    assert (status, json.loads(out)) == (0, {"echo": "from stdin"})


def test_send_queues_a_message(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "--home", home, "send", "shop", '{"Add": {"items": []}}')
    assert (status, out) == (0, "")
    status, out, _ = run_main(capsys, "--home", home, "send", "echo", '{"sent": true}')
    assert (status, out) == (0, "")
    _, out, _ = run_main(capsys, "--home", home, "request", "echo", '"sends"')
    assert {"sent": True} in json.loads(out)


def test_request_errors_map_to_exit_statuses(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(Path(home), "request", "nobody", "1")
    assert result.returncode == 3
    assert "no actor named 'nobody'" in one_error_line(result.stderr)
    status, _, err = run_main(capsys, "--home", home, "request", "shop", '{"Add": {"items": 1}}')
    assert status == 2
    assert "Add.items" in one_error_line(err)
    status, _, err = run_main(capsys, "--home", home, "request", "worker", '{"crash": "x"}')
    assert status == 1
    assert "asked to crash: x" in one_error_line(err)


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_main(capsys, "--debug", "--home", str(tmp_path), "list")
    assert status == 3
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("theater-py: error: no theater-py server")


def test_stop_stops_an_actor_for_good(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "--home", home, "stop", "victim")
    assert (status, out) == (0, "stopped victim\n")
    status, _, err = run_main(capsys, "--home", home, "request", "victim", "1")
    assert status == 3
    status, _, err = run_main(capsys, "--home", home, "stop", "victim")
    assert status == 3
    assert "no actor named 'victim'" in one_error_line(err)


def test_events_print_the_chain_and_verify_it(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_main(capsys, "--home", home, "request", "echo", '"for the chain"')
    status, out, err = run_main(capsys, "--home", home, "events", "echo", "--verify")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[0] == "0"
    assert lines[0].split()[2] == "actor-start"
    assert any(line.split()[2] == "request" for line in lines)
    assert err == f"chain verified: {len(lines)} events\n"
    status, out, _ = run_main(capsys, "--home", home, "events", "echo", "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert verify_events(events).ok
    assert (events[-2]["event_type"], events[-2]["data"]) == ("request", "for the chain")


def test_events_follow_until_the_actor_stops(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "theater_py", "events", "followed", "--follow", "--verify"],
        env=cli_env(Path(home)),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in follower.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        seen = [lines.get(timeout=30).split()[2] for _ in range(2)]
        assert seen == ["actor-start", "init"]
        run_main(capsys, "--home", home, "request", "followed", '"while followed"')
        assert [lines.get(timeout=10).split()[2] for _ in range(2)] == ["request", "response"]
        run_main(capsys, "--home", home, "stop", "followed")
        assert lines.get(timeout=10).split()[2] == "actor-stop"
        _, err = follower.communicate(timeout=10)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
        reader.join(10)
    assert follower.returncode == 0
    assert err == "chain verified: 5 events\n"


# -- the OpenAI proxy ----------------------------------------------------------------------


def test_chat_prints_the_answer_and_the_usage(
    home: str, sim: OpenAISimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_main(
        capsys, "--home", home, "chat", "openai-proxy", "Hello there", "--system", "Be brief."
    )
    assert status == 0
    assert out == "You said: Hello there\n"
    assert err.startswith("gpt-4o")
    assert " input + " in err
    assert " output tokens" in err
    body = sim.last_body
    assert body["model"] == "gpt-4o"  # the proxy's default, as --model was not given
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert 1024 in (body.get("max_tokens"), body.get("max_completion_tokens"))
    status, out, _ = run_main(
        capsys, "--home", home, "chat", "openai-proxy", "Hi", "--model", "gpt-4o-mini"
    )
    assert status == 0
    assert sim.last_body["model"] == "gpt-4o-mini"


def test_chat_takes_its_options_anywhere(
    home: str, sim: OpenAISimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_main(
        capsys, "--home", home, "chat", "openai-proxy", "--model", "gpt-4o-mini", "Hello"
    )
    assert (status, out) == (0, "You said: Hello\n")
    assert sim.last_body["model"] == "gpt-4o-mini"
    status, out, _ = run_main(
        capsys, "chat", "--max-tokens", "50", "openai-proxy", "--home", home, "Hi", "--debug"
    )
    assert (status, out) == (0, "You said: Hi\n")
    assert 50 in (sim.last_body.get("max_tokens"), sim.last_body.get("max_completion_tokens"))


def test_chat_reports_an_error_reply_in_one_line_without_the_key(
    home: str, sim: OpenAISimulator
) -> None:
    sim.fail_next(401)
    result = cli(Path(home), "chat", "openai-proxy", "Hello")
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "openai-proxy: authentication: " in line and "(HTTP 401)" in line
    assert line.count("authentication") == 1
    assert SIM_KEY not in result.stdout + result.stderr


def test_models_prints_a_table(home: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_main(capsys, "--home", home, "models", "openai-proxy")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["MODEL", "CONTEXT", "INPUT", "$/1M", "OUTPUT", "$/1M"]
    table = {row.split()[0]: row.split()[1:] for row in rows}
    assert table["gpt-4o"] == ["128,000", "2.5", "10"]
    status, _, err = run_main(capsys, "--home", home, "models", "echo")
    assert status == 1
    assert "echo did not answer as an OpenAI proxy does" in one_error_line(err)


def test_models_live_lists_what_the_provider_serves(
    home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_main(capsys, "--home", home, "models", "openai-proxy", "--live")
    assert status == 0
    table = {row.split()[0]: row.split()[1:] for row in out.splitlines()[1:]}
    assert table["gpt-4o"] == ["128,000", "2.5", "10"]  # the simulator's, described by the catalog


def test_one_shot_chat_needs_no_server(tmp_path: Path, sim: OpenAISimulator) -> None:
    config = {"config": {"base_url": sim.base_url, "api_key_env": "SIM_KEY"}}
    result = cli(
        tmp_path / "home",
        "chat",
        "--manifest",
        "manifests/openai-proxy.toml",
        "--init",
        json.dumps(config),
        "One shot",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: One shot\n"
    assert SIM_KEY not in result.stdout + result.stderr
    assert not (tmp_path / "home" / "control.sock").exists()


def test_one_shot_chat_shows_each_retry_as_it_happens(tmp_path: Path, sim: OpenAISimulator) -> None:
    sim.fail_next(429, retry_after="0.1", times=2)
    config = {"config": {"base_url": sim.base_url, "api_key_env": "SIM_KEY"}}
    result = cli(
        tmp_path / "home",
        "chat",
        "--manifest",
        "manifests/openai-proxy.toml",
        "--init",
        json.dumps(config),
        "Patience",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: Patience\n"
    assert result.stderr.splitlines()[:-1] == RETRIED_TWICE  # each once, then the usage


RETRIED_TWICE = [
    "retrying in 0.1 s: 429 rate limit (attempt 2 of 5)",
    "retrying in 0.1 s: 429 rate limit (attempt 3 of 5)",
]


def test_chat_against_a_server_shows_each_retry_as_one_shot_chat_does(
    home: str, sim: OpenAISimulator
) -> None:
    sim.fail_next(429, retry_after="0.1", times=2)
    result = cli(Path(home), "chat", "openai-proxy", "Patience")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: Patience\n"
    # The proxy's log is the server's: the stream tells the caller of each retry.
    assert result.stderr.splitlines()[:-1] == RETRIED_TWICE


def test_one_shot_request_and_tool_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = write_manifest(tmp_path, "echo", "tests.sample_actors:Echo")
    init = tmp_path / "init.json"
    init.write_text('{"from": "init file"}')
    home = str(tmp_path / "home")
    status, out, _ = run_main(
        capsys, "--home", home, "request", "--manifest", str(echo), "--init", str(init), '"state"'
    )
    assert (status, json.loads(out)) == (0, {"from": "init file"})
    fake = write_manifest(tmp_path, "fake", "tests.test_cli:FakeProxy")
    status, out, err = run_main(capsys, "--home", home, "chat", "--manifest", str(fake), "weather")
    assert status == 0
    assert out.splitlines() == [
        "looking up weather",
        'tool call lookup (id call_1): {"q": "weather"}',
    ]
    assert err == "fake-1: 3 input + 5 output tokens, $0.000120\n"
    status, _, err = run_main(capsys, "--home", home, "request", "--manifest", "nope.toml", "1")
    assert status == 2
    assert "nope.toml: manifest file not found" in one_error_line(err)
