"""The control socket: a ControlServer and ControlClients in one process, over a real socket."""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManifestFactory, gate
from theater_py import Actor, ActorContext, Runtime
from theater_py.chain import verify_events
from theater_py.control import (
    ControlClient,
    ControlError,
    ControlServer,
    EventStream,
    NoServerRunning,
    RemoteError,
    ServerAlreadyRunning,
)


class Unencodable(Actor):
    """Replies with a value JSON cannot carry."""

    def handle_request(self, ctx: ActorContext, message: Any) -> Any:
        return {1, 2}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "h"


@pytest.fixture
def server(runtime: Runtime, home: Path) -> Iterator[ControlServer]:
    srv = ControlServer(runtime, home)
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def client(home: Path) -> ControlClient:
    return ControlClient(home, timeout=10)


def raw_exchange(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw lines on one connection and read one response per line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.fspath(path))
        with sock.makefile("rb") as reader:
            responses = []
            for line in lines:
                sock.sendall(line)
                responses.append(json.loads(reader.readline()))
            return responses


def stale_socket(path: Path) -> None:
    """Leave a socket file nothing listens on, as a killed server does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(os.fspath(path))


def read_events(stream: EventStream, count: int) -> list[dict[str, Any]]:
    events = iter(stream)
    return [next(events) for _ in range(count)]


# -- the socket and the home ------------------------------------------------------------


def test_the_socket_is_private_and_the_lock_file_names_the_pid(
    server: ControlServer, home: Path
) -> None:
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert (home / "control.lock").read_text() == f"{os.getpid()}\n"


def test_close_removes_the_socket_and_frees_the_home(
    runtime: Runtime, home: Path, client: ControlClient
) -> None:
    first = ControlServer(runtime, home)
    first.start()
    assert client.ping()["pid"] == os.getpid()
    assert first.close()
    assert not first.path.exists()
    with pytest.raises(NoServerRunning, match="no theater-py server is running"):
        client.ping()
    second = ControlServer(runtime, home)
    second.start()
    try:
        assert client.ping()["home"] == os.fspath(home)
    finally:
        second.close()


def test_a_second_server_on_the_same_home_is_refused(
    server: ControlServer, runtime: Runtime, home: Path, client: ControlClient
) -> None:
    with pytest.raises(ServerAlreadyRunning, match=f"already runs in .*pid {os.getpid()}"):
        ControlServer(runtime, home).claim()
    assert client.ping()["pid"] == os.getpid()  # the first one is untouched


def test_a_socket_someone_accepts_on_is_never_replaced(runtime: Runtime, home: Path) -> None:
    home.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(os.fspath(home / "control.sock"))
        other.listen()
        srv = ControlServer(runtime, home)
        with pytest.raises(ServerAlreadyRunning, match="already listens on"):
            srv.start()
        srv.close()
        assert (home / "control.sock").exists()


def test_a_stale_socket_is_replaced(
    runtime: Runtime, home: Path, client: ControlClient, caplog: pytest.LogCaptureFixture
) -> None:
    stale_socket(home / "control.sock")
    with pytest.raises(NoServerRunning):
        client.ping()
    with ControlServer(runtime, home):
        assert client.ping()["pid"] == os.getpid()
    assert "removed the stale control socket" in caplog.text


def test_a_file_in_the_sockets_place_is_reported(runtime: Runtime, home: Path) -> None:
    home.mkdir()
    (home / "control.sock").write_text("not a socket")
    srv = ControlServer(runtime, home)
    with pytest.raises(ControlError, match="exists and is not a socket"):
        srv.start()
    srv.close()


def test_a_socket_path_too_long_is_a_clear_error(runtime: Runtime, tmp_path: Path) -> None:
    srv = ControlServer(runtime, tmp_path / ("x" * 120))
    with pytest.raises(ControlError, match="shorter THEATER_PY_HOME"):
        srv.start()
    srv.close()


# -- operations -------------------------------------------------------------------------


@pytest.mark.usefixtures("server")
def test_list_request_send_and_stop(
    runtime: Runtime, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    handle = runtime.start_actor(make_manifest("Echo"))
    [info] = client.list_actors()
    assert info["name"] == "echo"
    assert info["id"] == handle.id
    assert (info["status"], info["restarts"], info["queued"]) == ("running", 0, 0)
    assert info["uptime_s"] >= 0
    assert client.request("echo", {"a": [1, "é"]}) == {"echo": {"a": [1, "é"]}}
    client.send("echo", "queued")
    assert client.request("echo", "sends") == ["queued"]
    assert client.stop("echo") is True
    assert client.list_actors() == []
    with pytest.raises(RemoteError, match="no actor named 'echo'") as caught:
        client.request("echo", "hi")
    assert caught.value.type == "ActorNotFound"


@pytest.mark.usefixtures("server", "shared")
def test_a_crash_is_reported_and_the_restarted_actor_answers(
    runtime: Runtime, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    runtime.start_actor(make_manifest("Worker"))
    with pytest.raises(RemoteError, match="asked to crash: boom") as caught:
        client.request("worker", {"crash": "boom"})
    assert caught.value.type == "ActorFailed"
    assert client.request("worker", "again") == {"incarnation": 2, "message": "again"}
    assert client.list_actors()[0]["restarts"] == 1


@pytest.mark.usefixtures("server", "shared")
def test_a_slow_reply_times_out_on_the_server(
    runtime: Runtime, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    release = gate("slow")
    runtime.start_actor(make_manifest("Worker"))
    with pytest.raises(RemoteError) as caught:
        client.request("worker", {"gate": "slow"}, timeout=0.2)
    assert caught.value.type == "RequestTimeout"
    release.set()


@pytest.mark.usefixtures("server")
def test_a_message_that_does_not_decode_names_the_path(
    runtime: Runtime, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    runtime.start_actor(make_manifest("Shop"))
    assert client.request("shop", {"Add": {"items": [{"name": "tea"}]}}) == {"Total": {"count": 1}}
    with pytest.raises(RemoteError) as caught:
        client.request("shop", {"Add": {"items": [{"name": 5}]}})
    assert caught.value.type == "MessageDecodeError"
    assert caught.value.path is not None
    assert "items[0].name" in caught.value.path


@pytest.mark.usefixtures("server")
def test_a_reply_that_is_not_json_fails_the_request_not_the_connection(
    runtime: Runtime, client: ControlClient, tmp_path: Path
) -> None:
    manifest = tmp_path / "unencodable.toml"
    manifest.write_text(
        'name = "odd"\nversion = "0.1.0"\ncomponent = "tests.test_control:Unencodable"\n'
    )
    runtime.start_actor(manifest)
    with pytest.raises(RemoteError, match="not JSON") as caught:
        client.request("odd", "hi")
    assert caught.value.type == "ReplyEncodeError"  # the runtime refuses to record it
    assert client.ping()["pid"] == os.getpid()
    assert runtime.handle("odd").is_alive()


def test_bad_lines_get_error_responses_and_the_connection_lives_on(server: ControlServer) -> None:
    responses = raw_exchange(
        server.path,
        b"not json\n",
        b"[1, 2]\n",
        b'{"op": "fly", "id": 1}\n',
        b'{"op": "request", "actor": "", "message": 1}\n',
        b'{"op": "request", "actor": "a", "message": 1, "timeout": -1}\n',
        b'{"op": "send", "actor": "a"}\n',
        b'{"op": "events", "actor": "a", "follow": "yes"}\n',
        b"\xff\xfe\n",
        b'{"op": "ping", "id": "p-1"}\n',
    )
    errors = [r["error"] for r in responses[:-1]]
    assert all(r["ok"] is False for r in responses[:-1])
    assert {e["type"] for e in errors} == {"BadRequest"}
    assert "not JSON" in errors[0]["message"]
    assert "expected a JSON object" in errors[1]["message"]
    assert "'op'" in errors[2]["message"]
    assert responses[2]["id"] == 1
    assert "'actor'" in errors[3]["message"]
    assert "'timeout'" in errors[4]["message"]
    assert "'message'" in errors[5]["message"]
    assert "'follow'" in errors[6]["message"]
    assert responses[-1] == {"ok": True, "result": responses[-1]["result"], "id": "p-1"}


def test_a_line_too_long_closes_that_connection_only(runtime: Runtime, home: Path) -> None:
    with ControlServer(runtime, home, max_line=64) as srv:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(os.fspath(srv.path))
            sock.sendall(b'{"op": "ping", "pad": "' + b"x" * 100 + b'"}\n')
            with sock.makefile("rb") as reader:
                response = json.loads(reader.readline())
                assert reader.readline() == b""  # closed by the server
        assert response["error"]["type"] == "BadRequest"
        assert "longer than 64 bytes" in response["error"]["message"]
        assert raw_exchange(srv.path, b'{"op": "ping"}\n')[0]["ok"] is True


# -- events -----------------------------------------------------------------------------


@pytest.mark.usefixtures("server")
def test_events_stream_the_whole_chain_and_it_verifies(
    runtime: Runtime, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    handle = runtime.start_actor(make_manifest("Echo"))
    handle.request_json({"q": "é"})
    with client.events("echo") as stream:
        events = list(stream)
    assert [e["event_type"] for e in events] == ["actor-start", "init", "request", "response"]
    assert events == [event.to_json() for event in handle.events()]
    assert verify_events(events).ok
    assert stream.summary == {"count": 4, "ended": "complete"}


@pytest.mark.usefixtures("server")
def test_events_of_an_unknown_actor_is_an_error(client: ControlClient) -> None:
    with client.events("ghost") as stream, pytest.raises(RemoteError) as caught:
        list(stream)
    assert caught.value.type == "ActorNotFound"


@pytest.mark.usefixtures("server")
def test_follow_streams_new_events_until_the_actor_stops(
    runtime: Runtime, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    runtime.start_actor(make_manifest("Echo"))
    with client.events("echo", follow=True, read_timeout=10) as stream:
        events = iter(stream)
        assert [next(events)["event_type"] for _ in range(2)] == ["actor-start", "init"]
        client.request("echo", "later")
        assert [next(events)["event_type"] for _ in range(2)] == ["request", "response"]
        client.stop("echo")
        rest = list(events)
    assert [e["event_type"] for e in rest] == ["actor-stop"]
    assert stream.summary == {"count": 5, "ended": "actor stopped"}


def test_a_follow_ends_when_its_client_leaves(
    runtime: Runtime, home: Path, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    srv = ControlServer(runtime, home)
    srv.start()
    runtime.start_actor(make_manifest("Echo"))
    stream = client.events("echo", follow=True, read_timeout=10)
    read_events(stream, 2)
    stream.close()
    assert srv.close(timeout=10)  # the follow noticed and its thread ended


def test_a_follow_ends_when_the_server_stops(
    runtime: Runtime, home: Path, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    srv = ControlServer(runtime, home)
    srv.start()
    runtime.start_actor(make_manifest("Echo"))
    with client.events("echo", follow=True, read_timeout=10) as stream:
        read_events(stream, 2)
        srv.stop()
        assert list(stream) == []
    assert stream.summary == {"count": 2, "ended": "server stopping"}
    assert srv.close(timeout=10)


def test_another_request_on_the_connection_cancels_a_follow(
    server: ControlServer, runtime: Runtime, make_manifest: ManifestFactory
) -> None:
    runtime.start_actor(make_manifest("Echo"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(os.fspath(server.path))
        sock.sendall(b'{"op": "events", "actor": "echo", "follow": true, "id": 1}\n')
        with sock.makefile("rb") as reader:
            first = [json.loads(reader.readline()) for _ in range(2)]
            sock.sendall(b'{"op": "ping", "id": 2}\n')
            end = json.loads(reader.readline())
            ping = json.loads(reader.readline())
    assert [line["event"]["event_type"] for line in first] == ["actor-start", "init"]
    assert end == {"ok": True, "result": {"count": 2, "ended": "cancelled"}, "id": 1}
    assert ping["ok"] is True
    assert ping["id"] == 2


# -- shutting down ------------------------------------------------------------------------


@pytest.mark.usefixtures("shared")
def test_stop_lets_a_request_in_flight_get_its_reply(
    runtime: Runtime, home: Path, client: ControlClient, make_manifest: ManifestFactory
) -> None:
    release = gate("in-flight")
    runtime.start_actor(make_manifest("Worker"))
    srv = ControlServer(runtime, home)
    srv.start()
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        client.events("worker", follow=True, read_timeout=10) as stream,
    ):
        reply = pool.submit(client.request, "worker", {"gate": "in-flight"}, 10)
        # The actor records the request before it handles it: then it is in flight.
        for event in stream:
            if event["event_type"] == "request":
                break
        srv.stop()
        with pytest.raises(NoServerRunning):
            client.ping()
        release.set()
        assert reply.result(10)["message"] == {"gate": "in-flight"}
    assert srv.close(timeout=10)


def test_list_and_status_show_a_saved_chain_that_cannot_write(
    home: Path, make_manifest: ManifestFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_chain_writes import FULL, failing_disk
    from theater_py.cli import main

    with Runtime(home=home) as runtime, ControlServer(runtime, home):
        client = ControlClient(home, timeout=10)
        handle = runtime.start_actor(make_manifest("Echo", save_chain=True))
        assert client.list_actors()[0]["chain"] == {"saved": True, "lost": 0, "error": None}
        disk = failing_disk(runtime.event_database)
        disk.full = True
        for n in range(30):
            client.request("echo", n)
        handle.events()  # waits for the writer
        [info] = client.list_actors()
        assert info["chain"]["error"] == FULL
        assert info["chain"]["lost"] > 0
        writing = client.ping()["event_database"]
        assert writing == {"lost": info["chain"]["lost"], "error": FULL}
        assert main(["--home", str(home), "status"]) == 0
        assert main(["--home", str(home), "list"]) == 0
        out = capsys.readouterr().out
        assert f"event database: cannot write ({FULL}); {info['chain']['lost']} events lost" in out
        assert out.splitlines()[-1].split()[-1] == "failing"

        disk.full = False
        client.request("echo", "again")
        handle.events()
        chain = client.list_actors()[0]["chain"]
        assert (chain["error"], chain["lost"]) == (None, info["chain"]["lost"])
        assert main(["--home", str(home), "list"]) == 0
        assert capsys.readouterr().out.splitlines()[-1].split()[-2:] == [
            "lost",
            str(chain["lost"]),
        ]


def test_a_silent_connection_is_closed_after_the_idle_timeout(runtime: Runtime, home: Path) -> None:
    with ControlServer(runtime, home, idle_timeout=0.2) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(os.fspath(server.path))
            assert sock.recv(1) == b""  # closed by the server, long before our 10 s
        # A client that talks is served as before.
        assert ControlClient(home, timeout=10).ping()["pid"] == os.getpid()


def test_connections_beyond_the_limit_are_refused_with_busy(runtime: Runtime, home: Path) -> None:
    client = ControlClient(home, timeout=10)
    with ControlServer(runtime, home, max_connections=2) as server:
        held = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
        try:
            for sock in held:
                sock.settimeout(10)
                sock.connect(os.fspath(server.path))
            # Both are served: each answers a ping on its own connection.
            for sock in held:
                sock.sendall(b'{"op": "ping"}\n')
                assert json.loads(sock.makefile("rb").readline())["ok"] is True
            with pytest.raises(RemoteError, match="serves 2 connections at once") as refused:
                client.ping()
            assert refused.value.type == "Busy"
        finally:
            for sock in held:
                sock.close()
        # Once a connection ends, a new one is served (its thread may take a moment).
        for _ in range(200):
            try:
                assert client.ping()["pid"] == os.getpid()
                break
            except RemoteError:
                threading.Event().wait(0.05)
        else:
            raise AssertionError("the server never served again")


def test_the_limits_must_be_positive(runtime: Runtime, home: Path) -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ControlServer(runtime, home, max_connections=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        ControlServer(runtime, home, idle_timeout=0)
