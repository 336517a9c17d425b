"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import channel_actors, sample_actors
from tests.proxy_fixtures import proxy_defaults, sim, sim_options, start_proxy, start_proxy_at
from tests.router_fixtures import sims
from tests.tls_upstream import loopback_certificate
from theater_py import Runtime

# The OpenAI proxy tests' fixtures, registered here for every test file.
__all__ = [
    "loopback_certificate",
    "proxy_defaults",
    "sim",
    "sim_options",
    "sims",
    "start_proxy",
    "start_proxy_at",
]


@pytest.fixture(autouse=True)
def theater_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every runtime file of a test inside its tmp_path."""
    home = tmp_path / "theater-home"
    monkeypatch.setenv("THEATER_PY_HOME", str(home))
    return home


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    """An in-memory runtime, shut down after the test."""
    rt = Runtime(in_memory=True)
    yield rt
    rt.shutdown(timeout=10)


@pytest.fixture
def channel_log() -> Iterator[None]:
    """Reset the log and gates the channel actors share; open every gate after the test."""
    channel_actors.LOG.clear()
    channel_actors.GATES.clear()
    yield
    for gate in channel_actors.GATES.values():
        gate.set()  # never leave an actor blocked behind a test


@pytest.fixture
def shared() -> Iterator[type[sample_actors.Worker]]:
    """Reset the gates and the log the sample actors share with the test."""
    sample_actors.GATES.clear()
    sample_actors.LOG.clear()
    sample_actors.Worker.incarnations = 0
    yield sample_actors.Worker
    for gate in sample_actors.GATES.values():
        gate.set()  # never leave an actor blocked behind a test


def gate(name: str) -> threading.Event:
    """Create a gate a sample actor can wait on."""
    event = threading.Event()
    sample_actors.GATES[name] = event
    return event


ManifestFactory = Callable[..., Path]


@pytest.fixture
def make_manifest(tmp_path: Path) -> ManifestFactory:
    """Write a manifest for a sample actor and return its path."""

    def make(
        component: str = "Echo",
        *,
        name: str | None = None,
        handlers: str = "",
        init_state: Any = None,
        save_chain: bool = False,
    ) -> Path:
        actor_name = name or component.lower()
        folder = tmp_path / f"manifest-{actor_name}"
        folder.mkdir(exist_ok=True)
        lines = [
            f'name = "{actor_name}"',
            'version = "0.1.0"',
            f'component = "tests.sample_actors:{component}"',
            f"save_chain = {'true' if save_chain else 'false'}",
        ]
        if init_state is not None:
            (folder / "init.json").write_text(json.dumps(init_state))
            lines.append('init_state = "init.json"')
        path = folder / "manifest.toml"
        path.write_text("\n".join(lines) + "\n\n" + handlers)
        return path

    return make
