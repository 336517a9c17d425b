"""What a saved chain keeps when its process is killed: chain_durability, with a real kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from theater_py.chain import EventDatabase
from theater_py.errors import ManifestError
from theater_py.manifest import parse_manifest

ROOT = Path(__file__).resolve().parents[1]
HEAD = 'name = "victim"\nversion = "0.1.0"\ncomponent = "tests.sample_actors:Echo"\n'


@pytest.mark.parametrize("value", ["batched", "fsync"])
def test_the_manifest_names_the_chain_durability(value: str) -> None:
    manifest = parse_manifest(HEAD + f'chain_durability = "{value}"\n').manifest
    assert manifest.chain_durability == value
    assert parse_manifest(HEAD).manifest.chain_durability == "batched"


@pytest.mark.parametrize(("value", "got"), [('"always"', "'always'"), ("true", "a boolean")])
def test_an_unknown_chain_durability_is_named(value: str, got: str) -> None:
    with pytest.raises(ManifestError, match=got) as caught:
        parse_manifest(HEAD + f"chain_durability = {value}\n", source="m.toml")
    assert caught.value.field == "chain_durability"


def kill_while_serving(tmp_path: Path, durability: str, acknowledged: int) -> list[int]:
    """Run the victim until it has answered ``acknowledged`` requests, kill -9 it, and
    return the numbers of every request it answered (the last printed before it died)."""
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(HEAD + f'save_chain = true\nchain_durability = "{durability}"\n')
    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.chain_victim", str(tmp_path / "home"), str(manifest)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    answered: list[int] = []
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline() == "started\n"
        while len(answered) < acknowledged:
            line = victim.stdout.readline()
            assert line, "the victim died before it was killed"
            answered.append(int(line))
        os.kill(victim.pid, signal.SIGKILL)
        remaining, _ = victim.communicate(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    return answered + [int(line) for line in remaining.split()]


def saved_requests(home: Path) -> tuple[list[int], bool]:
    """Return the requests whose response the victim's saved chain holds, and if it verifies."""
    with EventDatabase(home / "events.sqlite3") as db:
        [actor_id] = db.actor_ids()
        chain = db.chain(actor_id, persist=True)
        events = chain.events()
        ok = chain.verify().ok
    answered = [e.data["echo"] for e in events if e.event_type == "response"]
    return answered, ok


def test_fsync_keeps_every_event_recorded_before_a_kill_9(tmp_path: Path) -> None:
    answered = kill_while_serving(tmp_path, "fsync", acknowledged=100)
    saved, ok = saved_requests(tmp_path / "home")

    assert ok
    assert saved[: len(answered)] == answered  # every answered request's response is on disk


def test_batched_keeps_a_prefix_that_verifies_after_a_kill_9(tmp_path: Path) -> None:
    answered = kill_while_serving(tmp_path, "batched", acknowledged=300)
    saved, ok = saved_requests(tmp_path / "home")

    assert ok  # what reached the disk is the chain's start, intact
    # Requests 0, 1, 2...: the newest answered may be lost, and one answered but not yet
    # printed when the kill came may be there.
    assert answered == list(range(len(answered)))
    assert saved == list(range(len(saved)))


def test_an_fsync_chain_records_only_once_its_event_is_in_the_file(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "events.sqlite3"
    with EventDatabase(path) as db:
        chain = db.chain("a", persist=True, durability="fsync")
        reader = sqlite3.connect(path)
        try:
            for number in range(20):
                event = chain.record("tick", number)
                row = reader.execute(
                    "SELECT hash FROM events WHERE actor_id = 'a' AND seq = ?", (number,)
                ).fetchone()
                assert row == (event.hash,)  # committed before record() returned
        finally:
            reader.close()
        with pytest.raises(ValueError, match="durability"):
            db.chain("b", persist=True, durability="sometimes")  # type: ignore[arg-type]
