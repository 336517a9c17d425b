"""The client's requests sent straight to its adapter's urllib3 pool, when the session
would add nothing to them.

``requests.Session.request`` costs about three times what the same exchange costs on the
urllib3 pool underneath (650 against 210 us of CPU per completion on the bench's machine):
it prepares the request (URL parsing and checks, header merging, cookies, hooks), merges
the environment, and wraps the answer. For the proxy's requests, always the same few URLs
with the same headers, that work gives the same result every time, so
:class:`DirectSender` does it once and sends through the pool of the very adapter the
session would have used, with the arguments ``HTTPAdapter.send`` would pass it.

The session stays the seam: the direct path is taken only while the session would do
nothing more than that. Its class is ``requests.Session`` or the ``http-client``
capability (whose events are recorded the same way here), whose ``request`` and ``send``
are requests' own (a test double such as ``requests-mock`` patches ``send``: the usual
way is taken while it is in place); it would pick the client's own adapter for the URL
(another adapter mounted there is used the usual way); it has no response hooks and no
default query parameters; and no proxy applies to the URL. Session headers, cookies
(sent and stored), ``verify`` and ``cert`` are honoured as the session would; urllib3's
exceptions become the ``requests`` exceptions ``HTTPAdapter.send`` raises for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import requests
from requests.cookies import extract_cookies_to_jar, get_cookie_header
from requests.exceptions import (
    ConnectionError,
    ConnectTimeout,
    InvalidHeader,
    InvalidURL,
    ProxyError,
    ReadTimeout,
    RetryError,
    SSLError,
)
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_encoding_from_headers, select_proxy
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    ResponseError,
)
from urllib3.exceptions import InvalidHeader as _InvalidHeader
from urllib3.exceptions import ProxyError as _ProxyError
from urllib3.exceptions import SSLError as _SSLError
from urllib3.util import Timeout, parse_url

from theater_py._http import RecordingSession

if TYPE_CHECKING:
    from collections.abc import Mapping

    from theater_py_actors.openai_proxy.upstream_call import AbandonableAdapter

__all__ = ["DirectSender"]

_PLAIN_SESSIONS = (requests.Session, RecordingSession)
"""Session classes whose ``request`` is known to add nothing more than is done here."""

_SESSION_METHODS = (requests.Session.request, requests.Session.send)
"""requests' own: a test double that patches them (``requests-mock`` patches ``send``)
turns the direct path off while it is in place."""


_ADAPTER_SEND = requests.adapters.HTTPAdapter.send
"""requests' own: ``responses`` patches it, which turns the direct path off too."""

_OVERRIDABLE = ("request", "send", "get_adapter", "merge_environment_settings", "prepare_request")
"""Session methods a test double may replace on one instance (``mock.patch.object``)."""

_SET_HERE = frozenset({"authorization", "content-length"})
"""Headers the sender sets itself: a session's own, in any spelling, gives way to them as
the auth hook and ``prepare_body`` make it give way, never goes beside them."""


def _plain(session: requests.Session, adapter: requests.adapters.HTTPAdapter) -> bool:
    """Whether ``session.request`` would add nothing to what :class:`DirectSender` does
    (and no test double sits on the session or the adapter)."""
    overridden = vars(session)
    return (
        type(session) in _PLAIN_SESSIONS
        and (requests.Session.request, requests.Session.send) == _SESSION_METHODS
        and requests.adapters.HTTPAdapter.send is _ADAPTER_SEND
        and type(adapter).send is _ADAPTER_SEND
        and "send" not in vars(adapter)
        and not session.hooks["response"]
        and not session.params
        and not any(name in overridden for name in _OVERRIDABLE)
    )


class DirectSender:
    """Sends a client's requests through ``adapter``'s pool when ``session`` allows it.

    Args:
        session: the client's session.
        adapter: the adapter the client mounted on it for its base URL.
        params: the query parameters of every request (Azure's ``api-version``).
    """

    def __init__(
        self,
        session: requests.Session,
        adapter: AbandonableAdapter,
        params: Mapping[str, str] | None,
    ) -> None:
        self._session = session
        self._adapter = adapter
        self._params = dict(params or {})
        self._recorder = session if isinstance(session, RecordingSession) else None
        self._targets: dict[str, tuple[requests.PreparedRequest, str]] = {}
        self._pools: dict[tuple[str, Any, Any], Any] = {}  # urllib3 pools
        self._headers: dict[tuple[Any, ...], dict[str, str]] = {}
        self._timeouts: dict[float, Timeout] = {}

    def send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        authorization: str,
        timeout: float,
    ) -> requests.Response | None:
        """Send a request as ``session.request`` would (``stream=True``, no redirects,
        ``authorization`` set by an auth hook, so unchecked: ``http.client`` refuses a bad
        one as it would); ``None`` when the session must send it itself.

        Raises:
            requests.RequestException: as ``HTTPAdapter.send`` raises it.
            ValueError: ``http.client`` refused a header.
        """
        session = self._session
        if not _plain(session, self._adapter):
            return None
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = self._target(url)
        request, path = target
        full_url = request.url or url
        if session.get_adapter(full_url) is not self._adapter:
            return None
        settings = session.merge_environment_settings(full_url, {}, True, None, None)
        if settings["proxies"] and select_proxy(full_url, settings["proxies"]):
            return None
        verify, cert = settings["verify"], settings["cert"]
        wire = self._merged(headers, body)
        wire["Authorization"] = authorization
        if session.cookies:
            request = self._stand_in(request, wire)
            cookie = get_cookie_header(session.cookies, request)  # type: ignore[no-untyped-call]
            if cookie is not None and not any(name.lower() == "cookie" for name in wire):
                wire["Cookie"] = cookie
        recorder = self._recorder
        recorded = full_url if recorder is None else recorder.record_request(method, full_url)
        try:
            pool = self._pool(request, verify, cert)
            raw = pool.urlopen(
                method=method,
                url=path,
                body=body,
                headers=wire,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self._adapter.max_retries,
                timeout=self._timeout(timeout),
                chunked=False,
            )
        except Exception as exc:
            error = _translated(exc, request)
            if recorder is not None:
                recorder.record_error(method, recorded, error)
            if error is exc:
                raise
            raise error from None
        response = requests.Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = raw.reason
        response.url = full_url
        response.connection = self._adapter
        if "set-cookie" in raw.headers:
            # What build_response and Session.send do: the reply's and the session's jar.
            request = self._stand_in(request, wire)
            extract_cookies_to_jar(response.cookies, request, raw)  # type: ignore[no-untyped-call]
            extract_cookies_to_jar(session.cookies, request, raw)  # type: ignore[no-untyped-call]
        if recorder is not None:
            recorder.record_response(method, recorded, raw.status)
        return response

    def _target(self, url: str) -> tuple[requests.PreparedRequest, str]:
        """The prepared URL (query included) and its path, as the session makes them."""
        request = requests.PreparedRequest()
        request.prepare_url(url, self._params)
        return request, parse_url(request.url or url).request_uri

    @staticmethod
    def _stand_in(
        request: requests.PreparedRequest, wire: dict[str, str]
    ) -> requests.PreparedRequest:
        """A prepared request with the headers sent, for the cookie jar to read."""
        stand_in = requests.PreparedRequest()
        stand_in.method = request.method
        stand_in.url = request.url
        stand_in.headers = CaseInsensitiveDict(wire)
        return stand_in

    def _merged(self, headers: Mapping[str, str], body: bytes | None) -> dict[str, str]:
        """The session's headers and ``headers`` merged and checked as requests does,
        with the body's length."""
        session_headers = self._session.headers
        key = (*headers.items(), None, *session_headers.items())
        merged = self._headers.get(key)
        if merged is None:
            combined: CaseInsensitiveDict[Any] = CaseInsensitiveDict(dict(session_headers))
            combined.update(headers)
            merged = {
                name: value
                for name, value in combined.items()
                if value is not None and name.lower() not in _SET_HERE
            }
            for header in merged.items():
                check_header_validity(header)
            if len(self._headers) >= 16:
                self._headers.clear()  # the session's headers keep changing: stay bounded
            self._headers[key] = merged
        wire = dict(merged)
        if body is not None:
            wire["Content-Length"] = str(len(body))
        return wire

    def _pool(self, request: requests.PreparedRequest, verify: Any, cert: Any) -> Any:
        key = (request.url or "", verify if isinstance(verify, str | bool) else repr(verify), cert)
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # new, or closed with the adapter
            adapter = self._adapter
            try:
                pool = adapter.get_connection_with_tls_context(request, verify, cert=cert)
            except LocationValueError as exc:
                raise InvalidURL(exc, request=request) from None
            adapter.cert_verify(pool, request.url or "", verify, cert)  # type: ignore[no-untyped-call]
            self._pools[key] = pool
        return pool

    def _timeout(self, seconds: float) -> Timeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) >= 16:
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = Timeout(connect=seconds, read=seconds)
        return timeout


_Pairs = tuple[tuple[type[BaseException], type[requests.RequestException]], ...]

_BY_REASON: _Pairs = ((ResponseError, RetryError), (_ProxyError, ProxyError), (_SSLError, SSLError))
"""What ``HTTPAdapter.send`` raises for a ``MaxRetryError`` by its reason, in its order."""

_AS_IS: _Pairs = (
    (ClosedPoolError, ConnectionError),
    (_ProxyError, ProxyError),
    (_SSLError, SSLError),
    (ReadTimeoutError, ReadTimeout),
    (_InvalidHeader, InvalidHeader),
    (LocationValueError, InvalidURL),
)
"""What it raises for the other urllib3 errors, in its order."""


def _translated(exc: BaseException, request: requests.PreparedRequest) -> BaseException:
    """The exception ``HTTPAdapter.send`` raises for ``exc``, raised by ``urlopen``."""
    if isinstance(exc, requests.RequestException):
        return exc
    if isinstance(exc, ProtocolError | OSError):
        return ConnectionError(exc, request=request)
    pairs = _AS_IS
    cause: BaseException | None = exc
    if isinstance(exc, MaxRetryError):
        cause = exc.reason
        if isinstance(cause, ConnectTimeoutError) and not isinstance(cause, NewConnectionError):
            return ConnectTimeout(exc, request=request)
        pairs = (*_BY_REASON, (BaseException, ConnectionError))
    for kind, error in pairs:
        if isinstance(cause, kind):
            return error(exc, request=request)
    return exc  # as HTTPAdapter.send: the rest (ValueError from http.client) as they are
