"""The chat client: error classification, retries on a fake clock, and a real loopback server."""

from __future__ import annotations

import concurrent.futures
import email.utils
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import requests_mock as rm
import urllib3
from requests.adapters import HTTPAdapter

from theater_py._http import RecordingSession
from theater_py_actors.openai_proxy.client import ChatClient, ChatResult
from theater_py_actors.openai_proxy.config import RetryConfig
from theater_py_actors.openai_proxy.errors import ERROR_KINDS, ProviderError, classify_response
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

KEY = "sk-test-0123456789abcdef"
BASE = "https://llm.test/v1"
URL = f"{BASE}/chat/completions"
NOW = 1_800_000_000.0
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
OK = {
    "id": "chatcmpl-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}}],
}


def openai_error(message: str, type_: str | None, code: str | None = None) -> bytes:
    """Build an error body in OpenAI's shape."""
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    ).encode()


# --- classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            401,
            openai_error("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
            "authentication",
            "invalid_api_key",
        ),
        (
            403,
            openai_error(
                "Country not supported",
                "invalid_request_error",
                "unsupported_country_region_territory",
            ),
            "permission",
            "unsupported_country_region_territory",
        ),
        (
            404,
            openai_error(
                "The model 'gpt-9' does not exist", "invalid_request_error", "model_not_found"
            ),
            "not_found",
            "model_not_found",
        ),
        (
            400,
            openai_error(
                "Unsupported parameter: 'max_tokens'",
                "invalid_request_error",
                "unsupported_parameter",
            ),
            "bad_request",
            "unsupported_parameter",
        ),
        (
            409,
            openai_error("Conflict", "invalid_request_error"),
            "bad_request",
            "invalid_request_error",
        ),
        (
            422,
            openai_error("Unprocessable", "invalid_request_error"),
            "bad_request",
            "invalid_request_error",
        ),
        (
            400,
            openai_error("too long", "invalid_request_error", "context_length_exceeded"),
            "context_window_exceeded",
            "context_length_exceeded",
        ),
        (
            400,
            openai_error(
                "This model's maximum context length is 128000 tokens.", "invalid_request_error"
            ),
            "context_window_exceeded",
            "invalid_request_error",
        ),
        (
            400,
            json.dumps(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid request: Your request exceeded model token limit: 8192",
                    }
                }
            ).encode(),
            "context_window_exceeded",
            "invalid_request_error",
        ),
        (
            400,
            openai_error(
                "Your request was rejected by our safety system",
                "invalid_request_error",
                "content_policy_violation",
            ),
            "content_policy",
            "content_policy_violation",
        ),
        (400, openai_error("filtered", "content_filter"), "content_policy", "content_filter"),
        (
            429,
            openai_error("Rate limit reached for gpt-4o", "requests", "rate_limit_exceeded"),
            "rate_limit",
            "rate_limit_exceeded",
        ),
        (
            429,
            openai_error(
                "You exceeded your current quota", "insufficient_quota", "insufficient_quota"
            ),
            "quota_exhausted",
            "insufficient_quota",
        ),
        (
            429,
            openai_error("You exceeded your current quota", "insufficient_quota"),
            "quota_exhausted",
            "insufficient_quota",
        ),
        (
            429,
            openai_error("quota", "invalid_request_error", "insufficient_quota"),
            "quota_exhausted",
            "insufficient_quota",
        ),
        (
            429,
            json.dumps(
                {
                    "error": {
                        "type": "exceeded_current_quota_error",
                        "message": "Your account is suspended",
                    }
                }
            ).encode(),
            "quota_exhausted",
            "exceeded_current_quota_error",
        ),
        (
            429,
            json.dumps(
                {
                    "error": {
                        "type": "engine_overloaded_error",
                        "message": "The engine is overloaded",
                    }
                }
            ).encode(),
            "overloaded",
            "engine_overloaded_error",
        ),
        (
            429,
            json.dumps(
                {"error": {"type": "rate_limit_reached_error", "message": "Slow down"}}
            ).encode(),
            "rate_limit",
            "rate_limit_reached_error",
        ),
        (
            402,
            json.dumps(
                {"error": {"message": "Insufficient Balance", "type": "unknown_error"}}
            ).encode(),
            "quota_exhausted",
            "unknown_error",
        ),
        (408, b"", "timeout", None),
        (
            500,
            openai_error("The server had an error", "server_error"),
            "server_error",
            "server_error",
        ),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "server_error", None),
        (
            503,
            openai_error("The engine is currently overloaded", "server_error", "overloaded"),
            "overloaded",
            "overloaded",
        ),
        (529, b"", "overloaded", None),
        (504, b"", "server_error", None),
        (418, b"", "bad_request", None),
        (302, b"", "invalid_response", None),
    ],
)
def test_classify_response(status: int, body: bytes, kind: str, code: str | None):
    error = classify_response(status, {}, body)
    assert error.kind == kind
    assert error.kind in ERROR_KINDS
    assert error.status == status
    assert error.provider_code == code
    assert error.attempts == 1


def test_the_provider_s_message_is_kept():
    body = openai_error(
        "Rate limit reached for gpt-4o in organization org-1", "requests", "rate_limit_exceeded"
    )
    error = classify_response(429, {}, body)
    assert error.message == "Rate limit reached for gpt-4o in organization org-1"
    assert (
        str(error) == "rate_limit: Rate limit reached for gpt-4o in organization org-1 (HTTP 429)"
    )


def test_a_non_json_body_is_summarised():
    error = classify_response(502, {}, b"<html>\n  <body>bad   gateway</body>\n</html>")
    assert error.message == "HTTP 502 Bad Gateway: <html> <body>bad gateway</body> </html>"


def test_an_empty_body_names_the_status():
    assert classify_response(504, {}, b"").message == "HTTP 504 Gateway Timeout"
    assert classify_response(599, {}, b"").message == "HTTP 599 unknown status"


def test_a_huge_body_is_cut_short():
    error = classify_response(500, {}, b"x" * 100_000)
    assert len(error.message) < 600


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": "model overloaded"}', "model overloaded"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"message": "no such route"}', "no such route"),
        (b"[1, 2]", "HTTP 400 Bad Request: [1, 2]"),
        (b"\xff\xfe not utf-8", "HTTP 400 Bad Request: \ufffd\ufffd not utf-8"),
    ],
)
def test_other_error_shapes(body: bytes, message: str):
    assert classify_response(400, {}, body).message == message


def test_headers_give_the_request_id_and_the_wait_in_any_case():
    error = classify_response(
        429, {"X-Request-Id": "req_abc", "Retry-After": "2"}, openai_error("slow", "requests")
    )
    assert error.request_id == "req_abc"
    assert error.retry_after_ms == 2000


def test_retry_after_ms_wins():
    error = classify_response(503, {"retry-after-ms": "1500", "retry-after": "9"}, b"")
    assert error.retry_after_ms == 1500


def test_an_http_date_retry_after_is_read_against_now():
    date = email.utils.formatdate(NOW + 12, usegmt=True)
    assert classify_response(429, {"retry-after": date}, b"", now=NOW).retry_after_ms == 12000


def test_an_echoed_key_is_scrubbed():
    body = openai_error(f"Incorrect API key provided: {KEY}.", "invalid_request_error", KEY)
    error = classify_response(401, {}, body, secret=KEY)
    assert KEY not in error.message
    assert KEY not in repr(error)
    assert error.message == "Incorrect API key provided: [redacted]."
    assert error.provider_code == "[redacted]"


def test_an_empty_secret_changes_nothing():
    assert classify_response(400, {}, openai_error("bad", None), secret="").message == "bad"


def test_provider_errors_are_exceptions_with_fields():
    error = ProviderError("timeout", "no response", attempts=3)
    assert isinstance(error, Exception)
    assert (error.status, error.retry_after_ms, error.request_id, error.provider_code) == (
        None,
    ) * 4
    assert str(error) == "timeout: no response (3 attempts)"


# --- the client, on requests-mock and a fake clock -----------------------------------------


class FakeTime:
    """A clock that only moves when the client sleeps (or a test moves it)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


ClientFactory = Callable[..., ChatClient]


_OPENED: list[ChatClient] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close every client a test built, ending its deadline watchdog's thread."""
    yield
    while _OPENED:
        _OPENED.pop().close()


@pytest.fixture
def make_client(session: requests.Session, fake: FakeTime) -> ClientFactory:
    def make(
        *,
        retry: RetryConfig | None = None,
        timeout_ms: int = 30000,
        random: Callable[[], float] = lambda: 0.0,
        **overrides: Any,
    ) -> ChatClient:
        options: dict[str, Any] = {
            "base_url": BASE,
            "api_key": KEY,
            "timeout_ms": timeout_ms,
            "retry": retry or RetryConfig(),
            "max_connections": 8,
            "clock": fake.clock,
            "sleep": fake.sleep,
            "random": random,
            "wall_clock": lambda: NOW,
        }
        options.update(overrides)
        client = ChatClient(session, **options)
        _OPENED.append(client)
        return client

    return make


def fail(client: ChatClient, body: Any = BODY) -> ProviderError:
    """Call the client, which must fail, and return its error."""
    with pytest.raises(ProviderError) as info:
        client.complete(body)
    return info.value


def test_a_completion_is_posted_with_the_key_and_json(
    requests_mock: rm.Mocker, make_client: ClientFactory
):
    requests_mock.post(URL, json=OK, headers={"x-request-id": "req_1"})
    result = make_client().complete(BODY)
    assert result == ChatResult(OK, attempts=1, request_id="req_1", status=200)
    sent = requests_mock.last_request
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == BODY
    assert sent.timeout == 30.0


def test_a_trailing_slash_in_the_base_url_is_ignored(
    requests_mock: rm.Mocker, make_client: ClientFactory
):
    requests_mock.post(URL, json=OK)
    assert make_client(base_url=BASE + "/").complete(BODY).body == OK


def test_transient_failures_are_retried_with_the_exact_backoff(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(
        URL, [{"status_code": 500}, {"status_code": 503}, {"status_code": 502}, {"json": OK}]
    )
    result = make_client(random=lambda: 0.5).complete(BODY)
    assert result.attempts == 4
    assert fake.sleeps == [0.875, 1.75, 3.5]
    assert requests_mock.call_count == 4


def test_retry_after_ms_is_honoured(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(
        URL, [{"status_code": 429, "headers": {"retry-after-ms": "250"}}, {"json": OK}]
    )
    assert make_client(random=lambda: 0.9).complete(BODY).attempts == 2
    assert fake.sleeps == [0.25]


def test_a_fractional_retry_after_is_honoured(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(URL, [{"status_code": 503, "headers": {"Retry-After": "1.5"}}, {"json": OK}])
    make_client().complete(BODY)
    assert fake.sleeps == [1.5]


def test_an_http_date_retry_after_is_honoured(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    date = email.utils.formatdate(NOW + 4, usegmt=True)
    requests_mock.post(URL, [{"status_code": 429, "headers": {"Retry-After": date}}, {"json": OK}])
    make_client().complete(BODY)
    assert fake.sleeps == [4.0]


def test_retries_stop_at_max_retries(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(
        URL, status_code=500, json={"error": {"message": "boom", "type": "server_error"}}
    )
    error = fail(make_client(retry=RetryConfig(max_retries=2)))
    assert error.kind == "server_error"
    assert error.attempts == 3
    assert requests_mock.call_count == 3
    assert fake.sleeps == [1.0, 2.0]
    assert str(error) == "server_error: boom (HTTP 500, 3 attempts)"


def test_no_retries_when_max_retries_is_zero(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(URL, status_code=503)
    assert fail(make_client(retry=RetryConfig(max_retries=0))).attempts == 1
    assert fake.sleeps == []


def test_an_exhausted_quota_is_not_retried(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(
        URL,
        status_code=429,
        content=openai_error("quota", "insufficient_quota", "insufficient_quota"),
    )
    error = fail(make_client())
    assert (error.kind, error.attempts, requests_mock.call_count) == ("quota_exhausted", 1, 1)
    assert fake.sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(
    requests_mock: rm.Mocker, make_client: ClientFactory, status: int
):
    requests_mock.post(URL, status_code=status)
    assert fail(make_client()).attempts == 1


def test_x_should_retry_overrides_the_status(requests_mock: rm.Mocker, make_client: ClientFactory):
    requests_mock.post(
        URL,
        [
            {"status_code": 400, "headers": {"x-should-retry": "true"}},
            {"status_code": 500, "headers": {"x-should-retry": "false"}},
        ],
    )
    error = fail(make_client())
    assert (error.status, error.attempts) == (500, 2)


def test_a_server_wait_past_the_deadline_fails_at_once(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(
        URL,
        status_code=429,
        headers={"retry-after": "20", "x-request-id": "req_9"},
        content=openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
    )
    error = fail(make_client(retry=RetryConfig(max_total_timeout_ms=10000)))
    assert error.kind == "rate_limit"
    assert error.retry_after_ms == 20000
    assert error.request_id == "req_9"
    assert error.attempts == 1
    assert fake.sleeps == []


def test_an_overloaded_server_s_long_wait_fails_at_once_too(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(URL, status_code=503, headers={"retry-after-ms": "200000"})
    error = fail(make_client())
    assert (error.kind, error.retry_after_ms, error.attempts) == ("overloaded", 200000, 1)
    assert fake.sleeps == []


def test_a_backoff_past_the_deadline_is_not_slept(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    requests_mock.post(URL, status_code=500)
    error = fail(make_client(retry=RetryConfig(max_total_timeout_ms=2500)))
    # 1 s fits in the 2.5 s budget; the next 2 s do not fit in the 1.5 s left.
    assert fake.sleeps == [1.0]
    assert error.attempts == 2


def test_each_attempt_gets_at_most_the_time_left(
    requests_mock: rm.Mocker, make_client: ClientFactory, fake: FakeTime
):
    def slow_failure(request: Any, context: Any) -> bytes:
        fake.now += 4.0  # the attempt took 4 s
        context.status_code = 500
        return b""

    requests_mock.post(URL, [{"content": slow_failure}, {"json": OK}])
    make_client(timeout_ms=30000, retry=RetryConfig(max_total_timeout_ms=10000)).complete(BODY)
    assert [request.timeout for request in requests_mock.request_history] == [10.0, 5.0]


def test_the_timeout_is_the_attempt_timeout_when_it_is_shorter(
    requests_mock: rm.Mocker, make_client: ClientFactory
):
    requests_mock.post(URL, json=OK)
    make_client(timeout_ms=2500).complete(BODY)
    assert requests_mock.last_request.timeout == 2.5


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (requests.exceptions.ConnectionError("connection refused"), "connection"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "timeout"),
        (requests.exceptions.ReadTimeout("read timed out"), "timeout"),
        (
            requests.exceptions.ConnectionError(
                urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out")
            ),  # type: ignore[arg-type]
            "timeout",
        ),
        (requests.exceptions.ChunkedEncodingError("connection broken"), "connection"),
    ],
)
def test_transport_failures_are_classified_and_retried(
    requests_mock: rm.Mocker, make_client: ClientFactory, exc: Exception, kind: str
):
    requests_mock.post(URL, [{"exc": exc}, {"exc": exc}])
    error = fail(make_client(retry=RetryConfig(max_retries=1)))
    assert (error.kind, error.status, error.attempts) == (kind, None, 2)


def test_a_connection_error_then_success(requests_mock: rm.Mocker, make_client: ClientFactory):
    requests_mock.post(URL, [{"exc": requests.exceptions.ConnectionError("reset")}, {"json": OK}])
    assert make_client().complete(BODY).attempts == 2


def test_an_invalid_header_is_a_configuration_error_that_hides_the_key(
    requests_mock: rm.Mocker, make_client: ClientFactory
):
    requests_mock.post(
        URL, exc=requests.exceptions.InvalidHeader(f"bad header value: 'Bearer {KEY}'")
    )
    error = fail(make_client())
    assert (error.kind, error.attempts) == ("configuration", 1)
    assert KEY not in str(error)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>oops</html>", "response body is not JSON (HTTP 200)"),
        (b'{"id": "x", "choi', "response body is not JSON (HTTP 200)"),
        (b'{"id": "x"}', "response has no 'choices' list (HTTP 200)"),
        (b"[]", "response has no 'choices' list (HTTP 200)"),
    ],
)
def test_a_broken_success_is_an_invalid_response(
    requests_mock: rm.Mocker, make_client: ClientFactory, content: bytes, message: str
):
    requests_mock.post(URL, content=content)
    error = fail(make_client())
    assert (error.kind, error.message, error.status, error.attempts) == (
        "invalid_response",
        message,
        200,
        1,
    )


def test_a_redirect_is_not_followed(requests_mock: rm.Mocker, make_client: ClientFactory):
    requests_mock.post(URL, status_code=301, headers={"Location": "https://elsewhere.test/"})
    error = fail(make_client())
    assert (error.kind, error.status) == ("invalid_response", 301)
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("body", [{"x": float("nan")}, {"x": object()}])
def test_a_body_that_is_not_json_is_refused_before_sending(
    requests_mock: rm.Mocker, make_client: ClientFactory, body: Any
):
    requests_mock.post(URL, json=OK)
    error = fail(make_client(), body)
    assert (error.kind, error.attempts) == ("invalid_request", 0)
    assert requests_mock.call_count == 0


def test_retries_are_logged_without_the_key(
    requests_mock: rm.Mocker, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
):
    requests_mock.post(
        URL,
        [
            {"status_code": 429, "content": openai_error(f"key {KEY} is rate limited", "requests")},
            {"exc": requests.exceptions.ConnectionError(f"failed with Bearer {KEY}")},
            {
                "status_code": 401,
                "content": openai_error(
                    f"Incorrect API key provided: {KEY}", "invalid_request_error"
                ),
            },
        ],
    )
    client = make_client()
    with caplog.at_level(logging.DEBUG):
        error = fail(client)
    retries = [r for r in caplog.records if r.name == "theater_py_actors.openai_proxy.client"]
    # WARNING: Python's last-resort handler shows it where logging is not configured.
    assert [r.levelno for r in retries] == [logging.WARNING, logging.WARNING]
    assert retries[0].getMessage() == "retrying in 1 s: 429 rate limit (attempt 2 of 5)"
    assert (
        retries[1]
        .getMessage()
        .startswith("retrying in 2 s: connection: could not reach the provider: ConnectionError: ")
    )
    assert retries[1].getMessage().endswith(" (attempt 3 of 5)")
    assert error.kind == "authentication"
    for text in (caplog.text, str(error), repr(error), repr(client)):
        assert KEY not in text


def test_the_adapter_is_sized_and_never_retries_by_itself(
    session: requests.Session, make_client: ClientFactory
):
    make_client(max_connections=48)
    adapter = session.get_adapter(URL)
    assert isinstance(adapter, HTTPAdapter)
    assert adapter is session.adapters[BASE + "/"]
    assert adapter.max_retries.total == 0
    assert adapter._pool_maxsize == 48  # type: ignore[attr-defined]
    assert adapter._pool_block is False  # type: ignore[attr-defined]
    assert session.get_adapter("https://other.test/v1") is not adapter


def test_a_closed_client_fails_at_once(requests_mock: rm.Mocker, make_client: ClientFactory):
    requests_mock.post(URL, json=OK)
    client = make_client()
    client.close()
    error = fail(client)
    assert (error.kind, error.message, error.attempts) == ("connection", "client closed", 0)
    assert requests_mock.call_count == 0
    assert client.closed


def test_close_wakes_a_retry_backoff(requests_mock: rm.Mocker, session: requests.Session):
    asked = threading.Event()

    def rate_limited(request: Any, context: Any) -> bytes:
        context.status_code = 429
        context.headers["retry-after"] = "60"
        asked.set()
        return b""

    requests_mock.post(URL, content=rate_limited)
    # The default sleep: a real wait on the client's closing event.
    client = ChatClient(
        session, base_url=BASE, api_key=KEY, timeout_ms=1000, retry=RetryConfig(), max_connections=2
    )
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.complete(BODY)
        except ProviderError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    assert asked.wait(5)
    client.close()
    worker.join(5)
    assert not worker.is_alive()
    [error] = outcome
    assert isinstance(error, ProviderError)
    assert (error.kind, error.message, error.attempts) == ("connection", "client closed", 1)
    assert requests_mock.call_count == 1


# --- the client against the simulator, over real loopback sockets --------------------------


@pytest.fixture
def simulator() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(api_key=KEY) as sim:
        yield sim


def loopback_client(
    session: requests.Session,
    simulator: OpenAISimulator,
    sleeps: list[float] | None = None,
    **options: Any,
) -> ChatClient:
    """Build a client for the simulator; sleeps are recorded, not slept, when a list is given."""
    settings: dict[str, Any] = {
        "base_url": simulator.base_url,
        "api_key": KEY,
        "timeout_ms": 5000,
        "retry": RetryConfig(),
        "max_connections": 8,
        "random": lambda: 0.0,
    }
    if sleeps is not None:
        settings["sleep"] = sleeps.append
    settings.update(options)
    client = ChatClient(session, **settings)
    _OPENED.append(client)
    return client


def test_loopback_success(session: requests.Session, simulator: OpenAISimulator):
    result = loopback_client(session, simulator).complete(BODY)
    assert result.body["choices"][0]["message"]["content"] == "You said: hi"
    assert result.request_id == "req_sim1"
    assert simulator.last_body == BODY


def test_loopback_connection_reset_is_retried(
    session: requests.Session, simulator: OpenAISimulator
):
    simulator.fail_next(fault="reset")
    sleeps: list[float] = []
    result = loopback_client(session, simulator, sleeps).complete(BODY)
    assert result.attempts == 2
    assert sleeps == [1.0]
    assert simulator.requests_seen == 2


def test_loopback_stalled_response_times_out(session: requests.Session, simulator: OpenAISimulator):
    simulator.fail_next(fault="stall")
    client = loopback_client(session, simulator, timeout_ms=200, retry=RetryConfig(max_retries=0))
    error = fail(client)
    assert (error.kind, error.attempts) == ("timeout", 1)


def test_loopback_stalled_body_times_out(session: requests.Session, simulator: OpenAISimulator):
    simulator.fail_next(fault="stall_body")
    client = loopback_client(session, simulator, timeout_ms=200, retry=RetryConfig(max_retries=0))
    assert fail(client).kind == "timeout"


def test_a_200_whose_body_stalled_is_not_retried(
    session: requests.Session, simulator: OpenAISimulator
):
    """The provider generated the answer (and bills it): another attempt would be billed
    again. The error carries the 200 it came with."""
    simulator.fail_next(fault="stall_body=3000", times=4)
    client = loopback_client(session, simulator, [], timeout_ms=200)
    error = fail(client)
    assert (error.kind, error.status, error.attempts) == ("timeout", 200, 1)
    assert simulator.requests_seen == 1


def test_loopback_retry_after_is_honoured(session: requests.Session, simulator: OpenAISimulator):
    simulator.fail_next(status=429, retry_after="0.05")
    sleeps: list[float] = []
    result = loopback_client(session, simulator, sleeps).complete(BODY)
    assert (result.attempts, sleeps) == (2, [0.05])


def test_loopback_retry_then_success(session: requests.Session, simulator: OpenAISimulator):
    simulator.fail_next(status=503, times=2)
    sleeps: list[float] = []
    result = loopback_client(session, simulator, sleeps).complete(BODY)
    assert (result.attempts, sleeps) == (3, [1.0, 2.0])


def test_loopback_quota_is_final(session: requests.Session, simulator: OpenAISimulator):
    simulator.fail_next(fault="quota", times=3)
    sleeps: list[float] = []
    error = fail(loopback_client(session, simulator, sleeps))
    assert (error.kind, error.attempts, sleeps) == ("quota_exhausted", 1, [])


def test_loopback_deadline_bounds_a_stalled_attempt(
    session: requests.Session, simulator: OpenAISimulator
):
    simulator.fail_next(fault="stall", times=5)
    retry = RetryConfig(max_total_timeout_ms=300, initial_delay_ms=0)
    sleeps: list[float] = []
    error = fail(loopback_client(session, simulator, sleeps, timeout_ms=5000, retry=retry))
    assert error.kind == "timeout"
    assert simulator.requests_seen == error.attempts


def test_loopback_server_wait_past_the_deadline(
    session: requests.Session, simulator: OpenAISimulator
):
    simulator.fail_next(status=429, retry_after="30")
    sleeps: list[float] = []
    retry = RetryConfig(max_total_timeout_ms=10000)
    error = fail(loopback_client(session, simulator, sleeps, retry=retry))
    assert (error.kind, error.retry_after_ms, error.attempts, sleeps) == (
        "rate_limit",
        30000,
        1,
        [],
    )


def test_loopback_malformed_body(session: requests.Session, simulator: OpenAISimulator):
    simulator.fail_next(fault="malformed")
    assert fail(loopback_client(session, simulator)).kind == "invalid_response"


def test_loopback_wrong_key(session: requests.Session, simulator: OpenAISimulator):
    error = fail(loopback_client(session, simulator, api_key="sk-wrong-key"))
    assert (error.kind, error.provider_code, error.attempts) == (
        "authentication",
        "invalid_api_key",
        1,
    )
    assert "sk-wrong-key" not in str(error)


def test_loopback_concurrent_requests_overlap_over_keep_alive(session: requests.Session):
    with OpenAISimulator(latency_ms=300) as simulator:
        client = loopback_client(session, simulator, max_connections=64)
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            first = list(pool.map(lambda _: client.complete(BODY), range(32)))
            second = list(pool.map(lambda _: client.complete(BODY), range(32)))
        assert all(result.attempts == 1 for result in first + second)
        assert simulator.requests_seen == 64
        # Sequential requests would never overlap; these ran (mostly) side by side.
        assert simulator.max_in_flight >= 16
        # The second batch reused the first batch's connections.
        assert simulator.connections_opened <= 32


def test_loopback_through_the_recording_session(simulator: OpenAISimulator):
    class Chain:
        def __init__(self) -> None:
            self.events: list[tuple[str, Any, str]] = []

        def record(self, event_type: str, data: Any = None, description: str = "") -> object:
            self.events.append((event_type, data, description))
            return None

    chain = Chain()
    with RecordingSession(chain) as recording:
        simulator.fail_next(status=500)
        sleeps: list[float] = []
        assert loopback_client(recording, simulator, sleeps).complete(BODY).attempts == 2
    kinds = [event[0] for event in chain.events]
    assert kinds == ["http-request", "http-response", "http-request", "http-response"]
    assert [event[1].get("status") for event in chain.events[1::2]] == [500, 200]
    assert KEY not in repr(chain.events)
