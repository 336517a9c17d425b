"""Review 2: a plugin command that fails while its parser is built."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from theater_py.cli import COMMAND_GROUP, EXIT_OK, Command, main


def _clashing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug")  # the common options already have it


CLASH = Command(summary="Clash.", run=lambda _args: EXIT_OK, add_arguments=_clashing_arguments)


def test_a_plugin_whose_arguments_clash_is_one_line_and_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [importlib.metadata.EntryPoint("clash", f"{__name__}:CLASH", COMMAND_GROUP)]

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return entries if group == COMMAND_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    status = main(["clash"])

    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("theater-py: error: the command 'clash' cannot be loaded")
    assert "--debug" in err
    assert len(err.splitlines()) == 1
