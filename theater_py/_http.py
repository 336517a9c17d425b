"""The ``http-client`` capability: a requests session that records what it sends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests

if TYPE_CHECKING:
    from theater_py.capabilities import Recorder

__all__ = ["RecordingSession"]


def _url_without_query(url: str) -> str:
    # Query strings and userinfo can carry keys (some providers take ?key=): keep them out.
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
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

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send the request, recording it and its response or error."""
        method = request.method or ""
        url = _url_without_query(request.url or "")
        self._chain.record("http-request", {"method": method, "url": url}, f"{method} {url}")
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException as exc:
            self._chain.record(
                "http-error",
                {"method": method, "url": url, "error": type(exc).__name__},
                f"{method} {url} failed: {type(exc).__name__}",
            )
            raise
        self._chain.record(
            "http-response",
            {"method": method, "url": url, "status": response.status_code},
            f"{method} {url} -> {response.status_code}",
        )
        return response
