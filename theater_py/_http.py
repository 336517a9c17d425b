"""The ``http-client`` capability: a requests session that records what it sends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests

if TYPE_CHECKING:
    from requests.sessions import _Settings

    from theater_py.capabilities import Recorder

__all__ = ["RecordingSession", "url_without_secrets"]


def url_without_secrets(url: str) -> str:
    """Return ``url`` without its userinfo and query string, fit for events and logs.

    Both can carry credentials (``https://user:token@host/``, ``?key=``).
    """
    parts = urlsplit(url)
    # The host and port as written: an IPv6 host keeps its brackets.
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RecordingSession(requests.Session):
    """A :class:`requests.Session` that records each request and its outcome.

    It is the ``http-client`` capability: an actor uses it as any session (mount
    adapters, set headers). Events carry the method, the URL without its query
    string, and the status or the error's type; never headers or bodies.
    """

    def __init__(self, chain: Recorder) -> None:
        super().__init__()
        self._chain = chain
        self._environment: dict[tuple[Any, ...], _Settings] = {}

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        """Merge the environment's proxy and CA settings, read once per host.

        requests walks ``os.environ`` two or three times per call to find proxies and
        CA bundles, which costs a proxy actor 150-200 us a request; an actor reads its
        environment once (as it reads its API key), so changes to those variables after
        the first request to a host do not apply to it.
        """
        if not self.trust_env or proxies:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        text = url.decode() if isinstance(url, bytes) else url or ""
        parts = urlsplit(text)
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        settings = self._environment.get(key)
        if settings is None:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment[key] = settings
        fresh = settings.copy()
        fresh["proxies"] = dict(settings["proxies"])  # requests may add to it per call
        return fresh

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send the request, recording it and its response or error."""
        method = request.method or ""
        url = self.record_request(method, request.url or "")
        try:
            response = super().send(request, **kwargs)
        except Exception as exc:  # not only requests': http.client raises ValueError too
            self.record_error(method, url, exc)
            raise
        self.record_response(method, url, response.status_code)
        return response

    def record_request(self, method: str, url: str) -> str:
        """Record a request going out; return its URL as recorded (without secrets).

        :meth:`send` calls it; so does a sender that goes below the session's layers for
        speed (the OpenAI proxy's client), which must record what :meth:`send` would.
        """
        url = url_without_secrets(url)
        self._chain.record("http-request", {"method": method, "url": url}, f"{method} {url}")
        return url

    def record_response(self, method: str, url: str, status: int) -> None:
        """Record the response to a request :meth:`record_request` recorded."""
        self._chain.record(
            "http-response",
            {"method": method, "url": url, "status": status},
            f"{method} {url} -> {status}",
        )

    def record_error(self, method: str, url: str, error: BaseException) -> None:
        """Record that a request :meth:`record_request` recorded failed (its type only)."""
        name = type(error).__name__
        self._chain.record(
            "http-error",
            {"method": method, "url": url, "error": name},
            f"{method} {url} failed: {name}",
        )
