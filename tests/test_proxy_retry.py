"""The retry policy: which failures are retried, how long to wait, what Retry-After means.

The decision, the classification it reads, and the client applying both on loopback."""

from __future__ import annotations

import email.utils
import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from theater_py_actors.openai_proxy.client import ChatClient
from theater_py_actors.openai_proxy.config import RetryConfig
from theater_py_actors.openai_proxy.errors import ProviderError, classify_response
from theater_py_actors.openai_proxy.retry import parse_retry_after, retry_delay, should_retry
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

NOW = 1_800_000_000.0


def headers(**values: str) -> CaseInsensitiveDict[str]:
    """Build response headers as requests gives them (underscores become dashes)."""
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize(
    "status", [408, 409, 429, 500, 501, 502, 503, 504, 505, 520, 522, 524, 529, 530, 599]
)
def test_transient_statuses_are_retried(status: int):
    assert should_retry("server_error", status) is True


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("bad_request", 400),
        ("authentication", 401),
        ("permission", 403),
        ("not_found", 404),
        ("bad_request", 422),
        ("context_window_exceeded", 400),
        ("invalid_response", 200),
    ],
)
def test_permanent_failures_are_not_retried(kind: str, status: int):
    assert should_retry(kind, status) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["connection", "timeout"])
def test_transport_failures_are_retried(kind: str):
    assert should_retry(kind, None) is True  # type: ignore[arg-type]


def test_an_exhausted_quota_is_never_retried_even_when_the_server_says_so():
    assert should_retry("quota_exhausted", 429) is False
    assert should_retry("quota_exhausted", 429, headers(x_should_retry="true")) is False


def test_x_should_retry_overrides_the_status():
    assert should_retry("bad_request", 400, headers(x_should_retry="true")) is True
    assert should_retry("rate_limit", 429, headers(x_should_retry="false")) is False
    assert should_retry("server_error", 500, headers(x_should_retry=" FALSE ")) is False


def test_an_unreadable_x_should_retry_is_ignored():
    assert should_retry("rate_limit", 429, headers(x_should_retry="maybe")) is True
    assert should_retry("bad_request", 400, headers(x_should_retry="1")) is False


def test_requests_that_cannot_be_sent_are_not_retried():
    assert should_retry("configuration", None) is False
    assert should_retry("invalid_request", None) is False


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"retry_after_ms": "250"}, 250),
        ({"retry_after_ms": "0.4"}, 1),  # rounded up: never retry before the server allows
        ({"retry_after": "2"}, 2000),
        ({"retry_after": "0.5"}, 500),  # urllib3 rejects this one
        ({"retry_after": " 1.25 "}, 1250),
        ({"retry_after": "0"}, 0),
        ({"retry_after_ms": "100", "retry_after": "9"}, 100),
        ({"retry_after_ms": "soon", "retry_after": "3"}, 3000),
        ({"retry_after_ms": "-5", "retry_after": "3"}, 3000),
        ({"retry_after": "-1"}, None),
        ({"retry_after": "nan"}, None),
        ({"retry_after": "inf"}, None),
        ({"retry_after": "tomorrow"}, None),
        ({"retry_after": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(values: dict[str, str], expected: int | None):
    assert parse_retry_after(headers(**values), NOW) == expected


def test_parse_retry_after_reads_an_http_date():
    when = email.utils.formatdate(NOW + 7, usegmt=True)
    assert parse_retry_after(headers(retry_after=when), NOW) == 7000


def test_parse_retry_after_reads_a_minus_zero_zone_date_as_utc():
    when = email.utils.formatdate(NOW + 3).replace("+0000", "-0000")
    assert parse_retry_after(headers(retry_after=when), NOW) == 3000


def test_a_date_in_the_past_means_no_wait():
    when = email.utils.formatdate(NOW - 60, usegmt=True)
    assert parse_retry_after(headers(retry_after=when), NOW) == 0


def test_parse_retry_after_accepts_any_header_case():
    assert parse_retry_after(headers(Retry_After_Ms="42"), NOW) == 42


CONFIG = RetryConfig(
    max_retries=10,
    initial_delay_ms=1000,
    max_delay_ms=30000,
    backoff_multiplier=2.0,
    max_total_timeout_ms=120000,
)


@pytest.mark.parametrize(
    ("retry", "seconds"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)]
)
def test_backoff_grows_and_is_capped(retry: int, seconds: float):
    assert retry_delay(retry, CONFIG) == seconds


def test_jitter_takes_off_up_to_a_quarter():
    assert retry_delay(1, CONFIG, random_value=0.5) == pytest.approx(1.75)
    assert retry_delay(5, CONFIG, random_value=0.999) == pytest.approx(30 * (1 - 0.25 * 0.999))


def test_the_server_s_wait_wins_without_jitter_or_cap():
    assert retry_delay(0, CONFIG, retry_after_ms=45000, random_value=0.9) == 45.0


def test_a_zero_server_wait_falls_back_to_the_backoff():
    assert retry_delay(2, CONFIG, retry_after_ms=0) == 4.0


def test_a_huge_retry_count_does_not_overflow():
    config = RetryConfig(max_retries=5000, backoff_multiplier=10.0)
    assert retry_delay(4000, config) == 30.0


@given(
    retry=st.integers(min_value=0, max_value=2000),
    initial=st.integers(min_value=0, max_value=60_000),
    extra=st.integers(min_value=0, max_value=60_000),
    multiplier=st.floats(min_value=1.0, max_value=10.0),
    jitter=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_the_backoff_stays_between_three_quarters_of_its_base_and_the_cap(
    retry: int, initial: int, extra: int, multiplier: float, jitter: float
):
    config = RetryConfig(
        initial_delay_ms=initial, max_delay_ms=initial + extra, backoff_multiplier=multiplier
    )
    delay = retry_delay(retry, config, random_value=jitter)
    assert 0 <= delay <= config.max_delay_ms / 1000
    assert delay >= 0.75 * min(initial / 1000, config.max_delay_ms / 1000) - 1e-9


@pytest.mark.parametrize("kind", ["bad_request", "context_window_exceeded", "content_policy"])
def test_a_5xx_that_blames_the_request_is_retried_once(kind: str):
    assert should_retry(kind, 500, attempt=1) is True  # type: ignore[arg-type]
    assert should_retry(kind, 500, attempt=2) is False  # type: ignore[arg-type]
    assert should_retry(kind, 500, headers(x_should_retry="true"), attempt=2) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "retried"),
    [
        ("rate_limit", True),
        ("overloaded", True),
        ("server_error", True),
        ("timeout", True),
        ("bad_request", False),
        ("authentication", False),
        ("invalid_response", False),
    ],
)
def test_an_error_inside_a_2xx_is_retried_by_its_kind(kind: str, retried: bool):
    assert should_retry(kind, 200) is retried  # type: ignore[arg-type]


# --- classification that the retry decision reads ------------------------------------------


def error_body(message: str, type_: str | None = None, code: Any = None) -> bytes:
    """Build an error body in OpenAI's shape."""
    return json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        # llama-cpp-python answers what pydantic or the chat template rejects with 500.
        (
            500,
            error_body(
                "1 validation error for CreateChatCompletionRequest\ntemperature\n"
                "  Input should be less than or equal to 2",
                "internal_server_error",
            ),
            "bad_request",
        ),
        (500, error_body("TemplateError: Conversation roles must alternate"), "bad_request"),
        (500, error_body("bad stop", "invalid_request_error"), "bad_request"),
        (
            500,
            error_body("This model's maximum context length is 2048 tokens"),
            "context_window_exceeded",
        ),
        (500, error_body("CUDA out of memory", "internal_server_error"), "server_error"),
        (501, error_body("Not Implemented"), "server_error"),
        (520, b"<html>Web server is returning an unknown error</html>", "server_error"),
        (529, error_body("Overloaded", "overloaded_error"), "overloaded"),
    ],
)
def test_5xx_classification(status: int, body: bytes, kind: str):
    assert classify_response(status, {}, body).kind == kind


@pytest.mark.parametrize(
    ("body", "kind", "status"),
    [
        (error_body("Rate limit reached", "requests", 429), "rate_limit", 429),
        (error_body("Provider returned error", None, 502), "server_error", 502),
        ({"error": {"message": "busy", "status": "503"}}, "overloaded", 503),
        ({"error": "upstream down", "status": 500}, "server_error", 500),
        (
            error_body("You exceeded your current quota", "insufficient_quota"),
            "quota_exhausted",
            200,
        ),
        (error_body("maximum context length is 8192 tokens"), "context_window_exceeded", 200),
        (
            error_body("Incorrect API key", "invalid_request_error", "invalid_api_key"),
            "authentication",
            200,
        ),
        (error_body("upstream failed", "server_error"), "server_error", 200),
        (error_body("no idea"), "server_error", 200),
    ],
)
def test_an_error_inside_a_200_is_classified_like_the_same_error(body: Any, kind: str, status: int):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    error = classify_response(200, {}, raw)
    assert (error.kind, error.status) == (kind, status)
    assert "inside a 2xx response" in error.message


# --- the client on loopback: what is retried, how often -----------------------------------

KEY = "sk-retry-0123456789abcdef"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def simulator() -> Iterator[OpenAISimulator]:
    with OpenAISimulator(api_key=KEY) as sim:
        yield sim


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def client_for(session: requests.Session, base_url: str, sleeps: list[float]) -> ChatClient:
    """A client whose backoffs are recorded, not slept."""
    return ChatClient(
        session,
        base_url=base_url,
        api_key=KEY,
        timeout_ms=5000,
        retry=RetryConfig(max_retries=4),
        max_connections=2,
        sleep=sleeps.append,
        random=lambda: 0.0,
    )


@pytest.mark.parametrize("status", [501, 505, 520, 530])
def test_every_5xx_is_retried(session: requests.Session, simulator: OpenAISimulator, status: int):
    simulator.fail_next(status=status, times=2)
    sleeps: list[float] = []
    result = client_for(session, simulator.base_url, sleeps).complete(BODY)
    assert (result.attempts, simulator.requests_seen) == (3, 3)


def test_a_500_that_blames_the_request_is_tried_twice_at_most(
    session: requests.Session, simulator: OpenAISimulator
):
    invalid = error_body(
        "1 validation error for CreateChatCompletionRequest\n  Input should be 'auto' or 'none'",
        "internal_server_error",
    )
    simulator.fail_next(status=500, body=invalid, times=5)
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        client_for(session, simulator.base_url, sleeps).complete(BODY)
    assert (info.value.kind, info.value.status, info.value.attempts) == ("bad_request", 500, 2)
    assert simulator.requests_seen == 2


def test_an_error_inside_a_200_is_retried_like_its_status(
    session: requests.Session, simulator: OpenAISimulator
):
    simulator.fail_next(status=200, body=error_body("Rate limit reached", "requests", 429))
    sleeps: list[float] = []
    result = client_for(session, simulator.base_url, sleeps).complete(BODY)
    assert (result.attempts, len(sleeps)) == (2, 1)


def test_an_error_inside_a_200_that_is_final_is_not_retried(
    session: requests.Session, simulator: OpenAISimulator
):
    simulator.fail_next(
        status=200, body=error_body("You exceeded your quota", "insufficient_quota"), times=3
    )
    with pytest.raises(ProviderError) as info:
        client_for(session, simulator.base_url, []).complete(BODY)
    assert (info.value.kind, info.value.attempts) == ("quota_exhausted", 1)


@pytest.fixture
def untrusted_tls_server(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on loopback whose self-signed certificate no client trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_certificate_failure_is_never_retried(
    session: requests.Session, untrusted_tls_server: str
):
    sleeps: list[float] = []
    with pytest.raises(ProviderError) as info:
        client_for(session, untrusted_tls_server, sleeps).complete(BODY)
    assert (info.value.kind, info.value.attempts, sleeps) == ("configuration", 1, [])
    assert "certificate" in info.value.message
