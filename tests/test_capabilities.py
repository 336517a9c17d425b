"""The context grants only what the manifest's handlers say, and records every use."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import ManifestFactory
from theater_py import Runtime
from theater_py.chain import EventDatabase

ENV = """
[[handler]]
type = "environment"
allowed_vars = ["GREETING", "SECRET_TOKEN"]
denied_vars = ["SECRET_TOKEN"]
"""


def event_types(handle) -> list[str]:
    return [e.event_type for e in handle.events()]


def test_an_allowed_variable_is_read_and_only_its_name_recorded(
    runtime: Runtime, make_manifest: ManifestFactory, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GREETING", "value-that-must-not-be-recorded")
    actor = runtime.start_actor(make_manifest("Capable", handlers=ENV))
    secret = "value-that-must-not-be-recorded"
    assert actor.request({"use": "env", "var": "GREETING"}) == {"length": len(secret)}
    reads = [e for e in actor.events() if e.event_type == "environment-read"]
    assert reads[0].data == {"var": "GREETING", "found": True}
    chain_text = json.dumps([e.to_json() for e in actor.events()])
    assert secret not in chain_text


@pytest.mark.parametrize("var", ["SECRET_TOKEN", "PATH"])
def test_a_variable_outside_the_rule_is_denied_and_recorded(
    runtime: Runtime, make_manifest: ManifestFactory, var: str
):
    actor = runtime.start_actor(make_manifest("Capable", handlers=ENV))
    reply = actor.request({"use": "env", "var": var})
    assert reply["denied"] == "environment"
    assert var in reply["error"]
    denied = [e for e in actor.events() if e.event_type == "permission-denied"]
    assert denied[0].data == {"capability": "environment", "var": var}


@pytest.mark.parametrize(
    ("use", "capability"),
    [("env", "environment"), ("http", "http-client"), ("store", "store"), ("time", "timing")],
)
def test_a_capability_without_its_handler_is_denied(
    runtime: Runtime, make_manifest: ManifestFactory, use: str, capability: str
):
    actor = runtime.start_actor(make_manifest("Capable"))
    message = {"use": use, "var": "HOME", "url": "http://127.0.0.1:9/", "text": "x"}
    reply = actor.request(message)
    assert reply["denied"] == capability
    assert capability in reply["error"]
    assert "permission-denied" in event_types(actor)


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(204 if "empty" in self.path else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_http_requests_are_recorded_without_their_query_string(
    runtime: Runtime, make_manifest: ManifestFactory, local_server: str
):
    actor = runtime.start_actor(
        make_manifest("Capable", handlers='[[handler]]\ntype = "http-client"\n')
    )
    assert actor.request({"use": "http", "url": f"{local_server}/path?key=sk-hidden"}) == 200
    http_events = [e for e in actor.events() if e.event_type.startswith("http-")]
    assert [e.event_type for e in http_events] == ["http-request", "http-response"]
    assert http_events[1].data == {"method": "GET", "url": f"{local_server}/path", "status": 200}
    assert "sk-hidden" not in json.dumps([e.to_json() for e in http_events])


def test_store_writes_are_recorded_and_readable(runtime: Runtime, make_manifest: ManifestFactory):
    actor = runtime.start_actor(make_manifest("Capable", handlers='[[handler]]\ntype = "store"\n'))
    reply = actor.request({"use": "store", "text": "hello"})
    store = runtime.content_store
    assert store.get_by_label(reply["store_id"], "greeting").hash == reply["hash"]
    writes = [e for e in actor.events() if e.event_type == "store-write"]
    assert writes[0].data["hash"] == reply["hash"]
    assert writes[0].data["size"] == 5


def test_timing_gives_the_clock(runtime: Runtime, make_manifest: ManifestFactory):
    actor = runtime.start_actor(make_manifest("Capable", handlers='[[handler]]\ntype = "timing"\n'))
    assert isinstance(actor.request({"use": "time"}), int)


def test_every_request_is_recorded_and_the_chain_verifies(
    runtime: Runtime, make_manifest: ManifestFactory
):
    actor = runtime.start_actor(make_manifest("Echo"))
    actor.request({"n": 1})
    actor.send("note")
    actor.request("sends")
    types = event_types(actor)
    assert types[:2] == ["actor-start", "init"]
    assert types[2:] == ["request", "response", "send", "request", "response"]
    assert actor.events()[2].data == {"n": 1}
    assert actor.events()[3].data == {"echo": {"n": 1}}
    assert actor.verify().ok


def test_a_saved_chain_survives_the_runtime_and_edits_are_caught(
    make_manifest: ManifestFactory, theater_home
):
    with Runtime() as rt:
        actor = rt.start_actor(make_manifest("Echo", save_chain=True))
        actor.request("persist me")
        actor_id = actor.id
        recorded = len(actor.events())
    with EventDatabase(theater_home / "events.sqlite3") as db:
        chain = db.chain(actor_id, persist=True)
        assert len(chain) == recorded + 1
        assert chain.events()[-1].event_type == "actor-stop"
        assert chain.verify().ok
    import sqlite3

    with sqlite3.connect(theater_home / "events.sqlite3") as raw:
        tables = [r[0] for r in raw.execute("select name from sqlite_master where type='table'")]
        assert tables
    with EventDatabase(theater_home / "events.sqlite3") as db:
        events = db.chain(actor_id, persist=True).events()
        tampered = [e.to_json() for e in events]
        tampered[3]["data"] = "edited"
        from theater_py.chain import verify_events

        result = verify_events(tampered)
        assert not result.ok
        assert result.first_broken == 3


def test_a_spawned_child_stops_before_its_parent(runtime: Runtime, make_manifest: ManifestFactory):
    child_manifest = make_manifest("Echo", name="kid")
    parent = runtime.start_actor(
        make_manifest("Capable", handlers='[[handler]]\ntype = "supervisor"\n'),
    )
    reply = parent.request({"use": "spawn", "manifest": str(child_manifest), "name": "kid-1"})
    assert reply == {"spawned": "kid-1"}
    assert runtime.handle("kid-1").request("hi") == {"echo": "hi"}
    parent.stop()
    assert runtime.find_cell("kid-1") is None


def test_spawning_needs_the_supervisor_handler(runtime: Runtime, make_manifest: ManifestFactory):
    parent = runtime.start_actor(make_manifest("Capable"))
    reply = parent.request({"use": "spawn", "manifest": "unused.toml", "name": "x"})
    assert reply["denied"] == "supervisor"


def test_the_http_capability_reads_proxy_settings_once_per_host(
    local_server: str, monkeypatch: pytest.MonkeyPatch
):
    import requests.sessions

    from theater_py._http import RecordingSession
    from theater_py.chain import EventChain

    reads: list[str] = []
    real = requests.sessions.get_environ_proxies

    def counting(url: str, no_proxy: object = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counting)
    with RecordingSession(EventChain()) as session:
        for path in ("/a", "/b?x=1", "/c"):
            assert session.get(local_server + path, timeout=5).status_code == 200
    assert len(reads) == 1


def test_a_chain_in_memory_keeps_its_newest_events_and_still_verifies(
    make_manifest: ManifestFactory,
):
    with Runtime(in_memory=True, max_memory_events=10) as rt:
        actor = rt.start_actor(make_manifest("Echo"))
        for n in range(20):
            actor.request(n)
        events = actor.events()
        assert len(events) == 10
        assert events[-1].data == {"echo": 19}
        assert events[0].parent_hash is not None  # a window, not the chain's start
        assert actor.verify().ok


STORE_OPERATIONS = {
    # writes, each recorded
    "new_store",
    "store",
    "store_at_label",
    "replace_content_at_label",
    "label",
    "replace_at_label",
    "remove_label",
    # reads
    "get",
    "exists",
    "get_by_label",
    "list_labels",
    "list_all_content",
    "calculate_total_size",
}


def test_the_store_capability_offers_theaters_operations_only_and_records_every_write():
    from theater_py.capabilities import StoreAccess
    from theater_py.chain import EventChain
    from theater_py.store import ContentStore

    with ContentStore.in_memory() as store:
        chain = EventChain()
        access = StoreAccess(store, chain)
        assert {name for name in dir(access) if not name.startswith("_")} == STORE_OPERATIONS
        for name in ("close", "open", "path", "in_memory", "_cursor"):
            with pytest.raises(AttributeError):
                getattr(access, name)
        store_id = access.new_store()
        ref = access.replace_content_at_label(store_id, "a", b"one")
        access.replace_at_label(store_id, "b", ref)
        access.store(store_id, b"two")
        access.label(store_id, "c", ref)
        access.remove_label(store_id, "c")
        assert access.get(store_id, ref) == b"one"
        assert access.list_labels(store_id) == ["a", "b"]
        assert [(e.event_type, e.data.get("label")) for e in chain.events()] == [
            ("store-new", None),
            ("store-write", "a"),
            ("store-label", "b"),
            ("store-write", None),
            ("store-label", "c"),
            ("store-remove-label", "c"),
        ]


def test_an_actor_cannot_close_the_store_other_actors_share(
    runtime: Runtime, make_manifest: ManifestFactory
):
    handlers = '[[handler]]\ntype = "store"\n'
    first = runtime.start_actor(make_manifest("Capable", name="first", handlers=handlers))
    second = runtime.start_actor(make_manifest("Capable", name="second", handlers=handlers))

    assert first.request({"use": "store-call", "method": "close"}) == {"missing": "close"}
    store_id = first.request({"use": "store-call", "method": "new_store"})
    replace = {"method": "replace_content_at_label", "args": [store_id, "l"], "content": "x"}
    digest = first.request({"use": "store-call", **replace})
    assert second.request({"use": "store", "text": "still open"})["hash"]
    write = [e for e in first.events() if e.event_type == "store-write"]
    assert write[0].data == {"store_id": store_id, "label": "l", "hash": digest, "size": 1}
