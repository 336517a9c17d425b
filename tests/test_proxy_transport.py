"""The client's direct path under requests' Session (transport.py) sends what the session
would: same headers, query, cookies, proxies, events; and steps aside when it must."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from theater_py._http import RecordingSession
from theater_py.chain import EventChain
from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import RetryConfig

KEY = "sk-transport-test-0123456789abcdef"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
OK = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}


class _Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict[str, Any]] = []
        self.set_cookie: str | None = None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Recorder
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(
            {"path": self.path, "headers": dict(self.headers.items()), "body": json.loads(body)}
        )
        reply = json.dumps(OK).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        if self.server.set_cookie:
            self.send_header("Set-Cookie", self.server.set_cookie)
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _client(session: requests.Session, base_url: str) -> ChatClient:
    return ChatClient(
        session,
        base_url=base_url,
        api_key=KEY,
        timeout_ms=5000,
        retry=RetryConfig(max_retries=0),
        max_connections=2,
        headers={"OpenAI-Organization": "org-1"},
        query={"api-version": "2024-10-21"},
    )


def _base(server: _Recorder) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/v1"


def _through_the_session(session: requests.Session) -> None:
    # A response hook is something only the session does: the direct path steps aside.
    session.hooks["response"].append(lambda response, *_args, **_kwargs: response)


@pytest.mark.parametrize("direct", [True, False])
def test_a_request_carries_what_the_session_would_send(recorder: _Recorder, direct: bool):
    with requests.Session() as session:
        session.headers["X-Team"] = "blue"
        if not direct:
            _through_the_session(session)
        client = _client(session, _base(recorder))
        try:
            assert client.complete(BODY).body == OK
        finally:
            client.close()
    (seen,) = recorder.seen
    assert seen["path"] == "/v1/chat/completions?api-version=2024-10-21"
    assert seen["body"] == BODY
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert headers["authorization"] == f"Bearer {KEY}"
    assert headers["x-team"] == "blue"
    assert headers["openai-organization"] == "org-1"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("python-requests/")
    assert headers["content-length"] == str(len(json.dumps(BODY)))


def test_both_paths_send_the_same_headers(recorder: _Recorder):
    sent = []
    for direct in (True, False):
        with requests.Session() as session:
            if not direct:
                _through_the_session(session)
            client = _client(session, _base(recorder))
            try:
                client.complete(BODY)
            finally:
                client.close()
        sent.append({name.lower(): value for name, value in recorder.seen[-1]["headers"].items()})
    assert sent[0] == sent[1]


def test_the_direct_path_skips_requests_preparation(
    recorder: _Recorder, monkeypatch: pytest.MonkeyPatch
):
    prepared: list[object] = []
    original = requests.Session.prepare_request

    def counting(self: requests.Session, request: requests.Request) -> requests.PreparedRequest:
        prepared.append(request)
        return original(self, request)

    monkeypatch.setattr(requests.Session, "prepare_request", counting)
    with requests.Session() as session:
        client = _client(session, _base(recorder))
        try:
            client.complete(BODY)
            assert prepared == []
            _through_the_session(session)
            client.complete(BODY)
            assert len(prepared) == 1
        finally:
            client.close()
    assert len(recorder.seen) == 2


@pytest.mark.parametrize("direct", [True, False])
def test_cookies_are_kept_and_sent_back_as_the_session_does(recorder: _Recorder, direct: bool):
    recorder.set_cookie = "__cf_bm=abc; Path=/"
    with requests.Session() as session:
        if not direct:
            _through_the_session(session)
        client = _client(session, _base(recorder))
        try:
            client.complete(BODY)
            recorder.set_cookie = None
            client.complete(BODY)
        finally:
            client.close()
        assert session.cookies.get("__cf_bm") == "abc"
    first, second = ({k.lower(): v for k, v in s["headers"].items()} for s in recorder.seen)
    assert "cookie" not in first
    assert second["cookie"] == "__cf_bm=abc"


def test_a_proxy_from_the_environment_is_used(recorder: _Recorder, monkeypatch: pytest.MonkeyPatch):
    # The recorder plays the HTTP proxy: it sees the absolute URL of the provider.
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", _base(recorder).removesuffix("/v1"))
    with requests.Session() as session:
        client = _client(session, "http://llm.test/v1")
        try:
            client.complete(BODY)
        finally:
            client.close()
    assert recorder.seen[0]["path"] == "http://llm.test/v1/chat/completions?api-version=2024-10-21"


def test_the_capability_records_the_direct_path_as_the_session_path(recorder: _Recorder):
    recorded = []
    for direct in (True, False):
        chain = EventChain()
        with RecordingSession(chain) as session:
            if not direct:
                _through_the_session(session)
            client = _client(session, _base(recorder))
            try:
                client.complete(BODY)
            finally:
                client.close()
        recorded.append(
            [(e.event_type, e.data) for e in chain.events() if e.event_type.startswith("http")]
        )
    assert recorded[0] == recorded[1]
    assert [kind for kind, _ in recorded[0]] == ["http-request", "http-response"]
    assert "api-version" not in json.dumps(recorded[0])  # the query is not recorded
