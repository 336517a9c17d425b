"""The control server frees what a client holds: a request it left, a line it trickles,
the actors it stopped; and `events --verify` says what the chain's own verify says."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from pathlib import Path

import pytest

from tests import test_deferred_cancel
from tests.conftest import ManifestFactory, gate
from theater_py import Runtime
from theater_py.control import ControlClient, ControlServer, RemoteError


def deferring_manifest(tmp_path: Path) -> Path:
    manifest = tmp_path / "deferring.toml"
    manifest.write_text(
        'name = "deferring"\nversion = "0.1.0"\n'
        'component = "tests.test_deferred_cancel:Deferring"\n'
    )
    return manifest


def wait_until(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        threading.Event().wait(0.02)


def test_a_client_that_leaves_abandons_its_request(runtime: Runtime, tmp_path: Path) -> None:
    # The server held the request (and the connection's slot) until its own 60 s
    # timeout, and the actor's deferred work ran on for nobody.
    pending = test_deferred_cancel.PENDING
    pending.clear()
    runtime.start_actor(deferring_manifest(tmp_path))
    with ControlServer(runtime, tmp_path / "h") as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(os.fspath(server.path))
            sock.sendall(b'{"op": "request", "actor": "deferring", "message": 1, "timeout": 60}\n')
            wait_until(lambda: len(pending) == 1, "the actor got the request")
        [future] = pending
        wait_until(future.cancelled, "the deferred reply is cancelled")
        wait_until(lambda: not server._connections, "the connection's slot is free")
        assert ControlClient(tmp_path / "h", timeout=10).ping()["pid"] == os.getpid()


def test_a_client_trickling_its_line_is_closed_after_the_idle_timeout(
    runtime: Runtime, tmp_path: Path
) -> None:
    # The timeout bounded each read: a byte every 0.1 s held a slot forever.
    with (
        ControlServer(runtime, tmp_path / "h", idle_timeout=0.5) as server,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
    ):
        sock.settimeout(10)
        sock.connect(os.fspath(server.path))
        deadline = time.monotonic() + 10
        closed = False
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b" ")
                if select.select([sock], [], [], 0.1)[0]:
                    closed = sock.recv(1) == b""
            except OSError:
                closed = True  # the server closed it: a write, or the read, fails
            # (closing with unread bytes resets the connection: either may see it)
        assert closed, "the server still reads a line trickled for 10 s"


def test_a_line_split_over_reads_is_still_one_request(runtime: Runtime, tmp_path: Path) -> None:
    with (
        ControlServer(runtime, tmp_path / "h") as server,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
    ):
        sock.settimeout(10)
        sock.connect(os.fspath(server.path))
        for part in (b'{"op": ', b'"ping"}\n{"op"', b': "list"}\n'):
            sock.sendall(part)
        with sock.makefile("rb") as reader:
            assert b'"pid"' in reader.readline()
            assert reader.readline() == b'{"ok":true,"result":[]}\n'


def test_the_server_remembers_only_the_newest_stopped_actors(
    runtime: Runtime, tmp_path: Path, make_manifest: ManifestFactory
) -> None:
    # Each actor stopped through the server stayed in memory for good.
    home = tmp_path / "h"
    client = ControlClient(home, timeout=10)
    with ControlServer(runtime, home, max_stopped=2) as server:
        for name in ("one", "two", "three"):
            runtime.start_actor(make_manifest("Echo", name=name))
            assert client.stop(name)
        assert list(server._stopped) == ["two", "three"]
        with pytest.raises(RemoteError, match="no actor named 'one'"):
            client.call("restart", actor="one")
        assert client.call("restart", actor="two")["name"] == "two"
        assert client.request("two", "hi") == {"echo": "hi"}


def test_max_stopped_must_not_be_negative(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_stopped"):
        ControlServer(runtime, tmp_path / "h", max_stopped=-1)


def test_events_verify_names_a_recorded_loss_as_the_chain_does(
    tmp_path: Path, make_manifest: ManifestFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI checked the streamed list, which has no numbers: it reported a broken
    # link where the saved chain's verify names the run of events it lost.
    from tests.test_chain_writes import failing_disk
    from theater_py.cli import main

    home = tmp_path / "h"
    with Runtime(home=home) as runtime, ControlServer(runtime, home):
        client = ControlClient(home, timeout=10)
        handle = runtime.start_actor(make_manifest("Echo", save_chain=True))
        handle.events()  # waits for the writer
        disk = failing_disk(runtime.event_database)
        disk.full = True
        client.request("echo", "lost")
        handle.events()
        disk.full = False
        client.request("echo", "saved")
        handle.events()
        expected = handle.verify()
        assert expected.missing and expected.reason is not None
        capsys.readouterr()
        assert main(["--home", str(home), "events", "echo", "--verify"]) == 1
        err = capsys.readouterr().err
        assert err == f"theater-py: error: the chain is incomplete: {expected.reason}\n"
        with client.events("echo", verify=True) as stream:
            list(stream)
        assert stream.summary is not None
        verification = stream.summary["verification"]
        assert verification["missing"] == [list(run) for run in expected.missing]


@pytest.mark.usefixtures("shared")
def test_a_client_that_sends_its_next_request_still_gets_its_reply(
    runtime: Runtime, tmp_path: Path, make_manifest: ManifestFactory
) -> None:
    release = gate("next")
    runtime.start_actor(make_manifest("Worker"))
    with (
        ControlServer(runtime, tmp_path / "h") as server,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
    ):
        sock.settimeout(10)
        sock.connect(os.fspath(server.path))
        sock.sendall(b'{"op": "request", "actor": "worker", "message": {"gate": "next"}}\n')
        sock.sendall(b'{"op": "ping", "id": 2}\n')  # while the first waits on the actor
        threading.Event().wait(0.2)  # lets the server see it (not needed for the outcome)
        release.set()
        with sock.makefile("rb") as reader:
            first, second = (json.loads(reader.readline()) for _ in range(2))
        assert first["result"]["message"] == {"gate": "next"}
        assert (second["id"], second["ok"]) == (2, True)


def test_events_verify_reports_a_broken_chain_as_the_chain_does(
    runtime: Runtime,
    tmp_path: Path,
    make_manifest: ManifestFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import attrs

    from theater_py.cli import main

    home = tmp_path / "h"
    handle = runtime.start_actor(make_manifest("Echo"))
    with ControlServer(runtime, home):
        ControlClient(home, timeout=10).request("echo", "hi")
        kept = handle._current().chain._storage._events  # type: ignore[attr-defined]
        kept[1] = attrs.evolve(kept[1], description="rewritten")
        expected = handle.verify()
        assert not expected.ok and expected.reason is not None
        capsys.readouterr()
        assert main(["--home", str(home), "events", "echo", "--verify"]) == 1
        err = capsys.readouterr().err
        assert err == f"theater-py: error: the chain is broken: {expected.reason}\n"
