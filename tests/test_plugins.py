"""Plugins: the runtime finds actor packages' commands through entry points, imports none."""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import theater_py_actors.openai_proxy
from theater_py.cli import COMMAND_GROUP, EXIT_OK, Command, main

RUNTIME = Path(__file__).resolve().parents[1] / "theater_py"
PROXY_COMMANDS = ("chat", "models", "mock-openai", "demo")
PLUGINS = theater_py_actors.openai_proxy.__name__.partition(".")[
    0
]  # the actor packages' import name


def _hello_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--who", default="world")


def _hello(args: argparse.Namespace) -> int:
    print(f"hello {args.who} (home {args.home})")
    return EXIT_OK


HELLO = Command(summary="Say hello.", run=_hello, add_arguments=_hello_arguments)
NOT_A_COMMAND = object()


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed plugins: one that works, one that cannot be imported, one of the wrong type."""
    entries = [
        importlib.metadata.EntryPoint("hello", f"{__name__}:HELLO", COMMAND_GROUP),
        importlib.metadata.EntryPoint("broken", "tests.no_such_module:X", COMMAND_GROUP),
        importlib.metadata.EntryPoint("odd", f"{__name__}:NOT_A_COMMAND", COMMAND_GROUP),
        importlib.metadata.EntryPoint("list", "tests.no_such_module:X", COMMAND_GROUP),
    ]

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        assert group == COMMAND_GROUP
        return entries

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def test_the_runtime_imports_no_actor_package() -> None:
    """theater_py/ names no plugin: the proxy's commands come in through entry points."""
    for source in RUNTIME.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] != PLUGINS, f"{source.name} imports {module}"


def test_import_and_help_load_no_plugin() -> None:
    code = (
        "import sys, contextlib, io\n"
        "import theater_py, theater_py.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try: theater_py.cli.main(['--help'])\n"
        "    except SystemExit: pass\n"
        "assert 'mock-openai' in out.getvalue(), out.getvalue()\n"
        # Each with its own line, read from its source: the generic one said nothing.
        "assert 'Ask an OpenAI proxy actor one question.' in out.getvalue(), out.getvalue()\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] == {PLUGINS!r}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_the_proxy_contributes_its_commands_through_the_entry_point_group() -> None:
    entries = {ep.name: ep for ep in importlib.metadata.entry_points(group=COMMAND_GROUP)}
    for name in PROXY_COMMANDS:
        assert entries[name].value.startswith("theater_py_actors.openai_proxy.cli:")
        assert isinstance(entries[name].load(), Command)


@pytest.mark.usefixtures("plugins")
def test_a_plugin_command_runs_with_its_own_and_the_common_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status = main(["hello", "--who", "actors", "--home", str(tmp_path)])

    assert status == 0
    assert capsys.readouterr().out == f"hello actors (home {tmp_path})\n"


@pytest.mark.usefixtures("plugins")
def test_help_lists_plugins_without_loading_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "    hello" in out and "Say hello." in out  # read from this file's source
    assert "    broken" in out  # listed, never imported
    assert "(from tests.no_such_module; see broken --help)" in out


@pytest.mark.usefixtures("plugins")
def test_a_chosen_plugin_has_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["hello", "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: theater-py hello ")
    assert "Say hello." in out
    assert "--who" in out


@pytest.mark.usefixtures("plugins")
@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("broken", "the command 'broken' cannot be loaded: ModuleNotFoundError: "),
        ("odd", "the command 'odd' is a object, not a theater_py.cli.Command"),
    ],
)
def test_a_broken_plugin_is_one_line_and_status_1(
    command: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([command])

    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith(f"theater-py: error: {message}")
    assert len(err.splitlines()) == 1


@pytest.mark.usefixtures("plugins")
def test_a_plugin_cannot_replace_a_built_in_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status = main(["--home", str(tmp_path), "list"])

    assert status == 3  # the built-in `list`: no server runs on this home
    assert "no theater-py server is running" in capsys.readouterr().err


def test_a_summary_is_read_only_from_a_literal_in_the_source() -> None:
    from theater_py._plugin_summary import command_summary

    assert command_summary(f"{__name__}:HELLO") == "Say hello."
    assert command_summary(f"{__name__}:NOT_A_COMMAND") is None  # no summary= given
    assert command_summary(f"{__name__}:MISSING") is None
    assert command_summary("tests.no_such_module:X") is None
    assert command_summary("json.decoder.nothing:X") is None  # a module holds no submodule
