"""Review 3: a command name two installed distributions claim is refused, naming both."""

from __future__ import annotations

from pathlib import Path

import pytest

from theater_py.cli import COMMAND_GROUP, main

HELLO_A = "tests.test_plugins:HELLO"
HELLO_B = "tests.test_review2_plugins:CLASH"


def install(site: Path, dist: str, command: str, value: str) -> None:
    """Install a distribution's metadata (no code) that declares one plugin command."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{COMMAND_GROUP}]\n{command} = {value}\n")


@pytest.fixture
def rival_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    # Installed in this order, so a first-wins loader would pick "zeta-actors".
    install(site, "zeta-actors", "hello", HELLO_A)
    install(site, "alpha-actors", "hello", HELLO_B)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(site))  # one distribution seen twice is one claim


@pytest.mark.usefixtures("rival_plugins")
def test_a_command_two_distributions_install_is_an_error_naming_both(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["hello"])

    err = capsys.readouterr().err
    assert status == 1
    assert err == (
        "theater-py: error: the command 'hello' is installed by "
        f"alpha-actors ({HELLO_B}) and zeta-actors ({HELLO_A}); uninstall one of them\n"
    )


@pytest.mark.usefixtures("rival_plugins")
def test_help_lists_the_clash_and_the_other_commands_still_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "hello (unusable: the command 'hello' is installed by alpha-actors" in out
    assert main(["--home", str(tmp_path), "list"]) == 3  # no server: the built-in runs
