"""The retry policy: which failures are retried, how long to wait, what Retry-After means."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from actors.openai_proxy.config import RetryConfig
from actors.openai_proxy.retry import parse_retry_after, retry_delay, should_retry

NOW = 1_800_000_000.0


def headers(**values: str) -> CaseInsensitiveDict[str]:
    """Build response headers as requests gives them (underscores become dashes)."""
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in values.items()})


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
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
        ("server_error", 501),
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
