"""One upstream request's lifetime: its wall-clock deadline, and abandoning it from any thread.

A socket timeout bounds each read, not a whole exchange: a server that trickles a byte
every quarter second keeps a read busy for ever. So the deadline is enforced from outside:
each request is an :class:`UpstreamCall`; a :class:`Watchdog` thread abandons it when its
deadline passes, and a caller that stops waiting abandons it too. Abandoning a call wakes
its retry backoff, and shuts down the socket its running attempt uses, which ends any
blocked read at once.

To find that socket, the connection classes that :class:`AbandonableAdapter` installs
register with the call running on their thread when they send a request. A connection
goes back to the pool after its exchange and may serve another call; it is shut down only
while it still belongs to the call being abandoned.

A connection being opened is the call's too, from before ``connect()`` blocks: the
socket is registered first (urllib3's ``create_connection``, with that one step added),
so abandoning the call shuts it down and ends a connect to a host that never answers at
once (Linux aborts a pending connect on ``shutdown``), not at the attempt's timeout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any, Literal

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from theater_py._http import url_without_secrets

__all__ = ["AbandonableAdapter", "Reason", "UpstreamCall", "Watchdog", "running"]

Reason = Literal["timeout", "cancelled", "closed"]
"""Why a call was abandoned: its deadline passed, its caller left, or the client closed."""

logger = logging.getLogger(__name__)

# Guards which call owns which connection, across the calls' and the watchdog's threads.
_owners_lock = threading.Lock()
_Socket = socket.socket  # UpstreamCall's own ``socket`` property hides the module there
_IDLE_WAIT = 60.0
_local = threading.local()


class UpstreamCall:
    """One request to the provider, from the moment it is accepted.

    Args:
        deadline: when it must be over, on the client's monotonic clock.
        on_abandon: called with the call, on the abandoning thread, when it is abandoned
            (not when it ends normally); ``reason`` says why.

    Attributes:
        deadline: as given.
        attempts: how many HTTP attempts have started.
    """

    __slots__ = (
        "_connecting",
        "_connection",
        "_on_abandon",
        "_reason",
        "_socket",
        "_wake",
        "attempts",
        "deadline",
        "ended",
    )

    def __init__(
        self, deadline: float, on_abandon: Callable[[UpstreamCall], object] | None = None
    ) -> None:
        self.deadline = deadline
        self.attempts = 0
        self.ended = False
        self._reason: Reason | None = None
        self._wake: threading.Event | None = None  # made by wait(), rarely needed
        self._connection: HTTPConnection | None = None
        # The socket its request went out on: a reply that closes the connection takes
        # it from the connection (http.client drops it there and reads on through it).
        self._socket: socket.socket | None = None
        # A socket being connected for it, before any connection holds it.
        self._connecting: socket.socket | None = None
        self._on_abandon = on_abandon

    @property
    def reason(self) -> Reason | None:
        """Why the call was abandoned, or ``None`` while it is not."""
        return self._reason

    def abandon(self, reason: Reason) -> None:
        """Abandon the call: no attempt starts after this, and the running one's connection
        is shut down. Only the first reason counts; a call that has ended is left alone."""
        with _owners_lock:
            if self._reason is not None or self.ended:
                return
            self._reason = reason
            connection = self._connection
            if connection is not None and getattr(connection, "_upstream_call", None) is self:
                _hang_up(connection.sock or self._socket)
            _hang_up(self._connecting)
            wake = self._wake
        if wake is not None:
            wake.set()
        if self._on_abandon is not None:
            try:
                self._on_abandon(self)
            except Exception as exc:  # noqa: BLE001 -- it runs on the watchdog's thread too
                # The type only: the text of an unexpected error could quote anything.
                logger.error("abandoning an upstream call failed: %s", type(exc).__name__)

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return early, with ``True``, if the call is abandoned."""
        with _owners_lock:
            if self._reason is not None:
                return True
            if self._wake is None:
                self._wake = threading.Event()
            wake = self._wake
        return wake.wait(seconds)

    @property
    def socket(self) -> socket.socket | None:
        """The socket of the running attempt, once its request is sent."""
        return self._socket

    def end(self) -> None:
        """Mark the call over: abandoning it no longer does anything."""
        with _owners_lock:
            self.ended = True
            self._connection = None
            self._socket = None
            self._forget_connecting()

    def _connect_on(self, sock: _Socket) -> None:
        """``sock`` is about to connect for the call: shut it down if the call is
        abandoned meanwhile (or already is, which fails the connect at once)."""
        with _owners_lock:
            if self._reason is None and not self.ended:
                self._forget_connecting()
                # A duplicate: TLS wraps ``sock`` by detaching it, and a shutdown through the
                # duplicate still reaches the one socket both name, even mid-handshake.
                self._connecting = sock.dup()
                return
        raise ConnectionAbortedError("the upstream call was abandoned")

    def _forget_connecting(self) -> None:
        # Under _owners_lock. Closing the duplicate leaves the connection's own socket open.
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.close()

    def _sent_on(self, connection: HTTPConnection) -> None:
        with _owners_lock:
            self._forget_connecting()  # the connection holds its socket now
            if getattr(connection, "_upstream_call", None) is self:
                self._socket = connection.sock
        if self._reason is not None:
            _hang_up(connection.sock)

    def _attach(self, connection: HTTPConnection) -> None:
        with _owners_lock:
            connection._upstream_call = self  # type: ignore[attr-defined]
            self._connection = connection


class _HeaderParsingFilter(logging.Filter):
    """Keep urllib3's "Failed to parse headers" warning, without the headers it quotes.

    A malformed header line of a reply is logged with its text ("unparsed data") and a
    traceback repeating it: a hostile upstream that echoes the key there would put it in
    the log. Only records made while a call runs on the thread are changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_local, "call", None) is not None and str(record.msg).startswith(
            "Failed to parse headers"
        ):
            args = record.args if isinstance(record.args, tuple) else ()
            url = url_without_secrets(str(args[0])) if args else "?"
            error = type(args[1]).__name__ if len(args) > 1 else "error"
            record.msg = "Failed to parse the headers of a reply from %s: %s"
            record.args = (url, error)
            record.exc_info = None
            record.exc_text = None
        return True


# urllib3 2 logs it from its connection module, urllib3 1.26 from its pool's.
for _name in ("urllib3.connection", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_HeaderParsingFilter())


class running:  # noqa: N801 -- used as a context manager, like a function
    """Make ``call`` the call whose connections register on this thread, for a ``with`` block."""

    __slots__ = ("_call",)

    def __init__(self, call: UpstreamCall) -> None:
        self._call = call

    def __enter__(self) -> None:
        _local.call = self._call

    def __exit__(self, *exc_info: object) -> None:
        _local.call = None


def _hang_up(sock: object) -> None:
    if isinstance(sock, socket.socket):
        # shutdown, not close: it wakes a read blocked on another thread. The base class's
        # method, so that an SSL socket keeps its state for that thread. OSError: closed.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _register(connection: HTTPConnection) -> UpstreamCall | None:
    call: UpstreamCall | None = getattr(_local, "call", None)
    if call is not None:
        call._attach(connection)
    return call


def _after_send(connection: HTTPConnection, call: UpstreamCall | None) -> None:
    # Abandoned while connecting, when there was no socket to shut down yet.
    if call is not None:
        call._sent_on(connection)


def _create_connection(connection: HTTPConnection, call: UpstreamCall) -> socket.socket:
    """urllib3's ``create_connection`` for ``connection``, with each socket given to
    ``call`` before its ``connect()`` (which may block until the connect timeout)."""
    host, port = connection._dns_host, connection.port  # as urllib3's own
    if host.startswith("["):
        host = host.strip("[]")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    error: OSError | None = None
    for family, kind, proto, _name, address in socket.getaddrinfo(
        host, port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            for option in connection.socket_options or ():
                sock.setsockopt(*option)
            timeout: Any = connection.timeout  # urllib3's sentinel when none was given
            if timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if connection.source_address:
                sock.bind(connection.source_address)
            call._connect_on(sock)
            sock.connect(address)
            return sock
        except OSError as failed:
            error = failed
            if sock is not None:
                sock.close()
            if call.reason is not None:
                break  # abandoned: no other address is tried
    raise error if error is not None else OSError("getaddrinfo returns an empty list")


def _new_conn(connection: HTTPConnection) -> socket.socket:
    """urllib3's ``HTTPConnection._new_conn``, the socket registered with the running call."""
    call: UpstreamCall | None = getattr(_local, "call", None)
    assert call is not None
    try:
        sock = _create_connection(connection, call)
    except socket.gaierror as exc:
        raise NameResolutionError(connection.host, connection, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(
            connection,
            f"Connection to {connection.host} timed out. (connect timeout={connection.timeout})",
        ) from exc
    except OSError as exc:
        raise NewConnectionError(
            connection, f"Failed to establish a new connection: {exc}"
        ) from exc
    sys.audit("http.client.connect", connection, connection.host, connection.port)
    return sock


class _Connection(HTTPConnection):
    """A connection whose socket and request are registered with the running call."""

    def _new_conn(self) -> socket.socket:
        if getattr(_local, "call", None) is None:
            return super()._new_conn()
        return _new_conn(self)

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any
    ) -> None:
        call = _register(self)
        super().request(method, url, body, headers, **options)
        _after_send(self, call)


class _TLSConnection(_Connection, HTTPSConnection):
    """:class:`_Connection` over TLS (HTTPSConnection's handshake runs after ``_new_conn``)."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _Pool, "https": _TLSPool}


class AbandonableAdapter(HTTPAdapter):
    """An :class:`HTTPAdapter` whose connections an :class:`UpstreamCall` can shut down.

    Direct connections and connections through an HTTP(S) proxy register; through a
    SOCKS proxy they do not, and only the per-read timeout bounds an exchange.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Make the pool manager build pools of registering connections."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Likewise for an HTTP(S) proxy's pool manager."""
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:
            manager.pool_classes_by_scheme = _POOLS
        return manager


class Watchdog:
    """Abandons each watched call when its deadline passes, from one thread.

    The thread starts with the first call watched and ends at :meth:`close`.

    Args:
        clock: the monotonic clock the deadlines are read on.
        name: the thread's name.
    """

    def __init__(self, clock: Callable[[], float], name: str) -> None:
        self._clock = clock
        self._name = name
        self._heap: list[tuple[float, int, UpstreamCall]] = []
        self._order = itertools.count()
        self._changed = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._closed = False
        self._compact_at = 1024

    def watch(self, call: UpstreamCall) -> None:
        """Abandon ``call`` with reason ``timeout`` at its deadline, unless it ends first.

        A closed watchdog abandons it at once, with reason ``closed``. A call whose
        ``deadline`` moved later is abandoned at the new one (``math.inf``: never); one
        whose deadline moved sooner must be watched again.
        """
        with self._changed:
            if not self._closed:
                heap = self._heap
                if len(heap) >= self._compact_at:
                    # Ended calls stay in the heap until their deadline: drop them now and
                    # then, so a steady stream of requests keeps it small.
                    heap[:] = [entry for entry in heap if not entry[2].ended]
                    heapq.heapify(heap)
                    self._compact_at = max(1024, 2 * len(heap))
                sooner = not heap or call.deadline < heap[0][0]
                heapq.heappush(heap, (call.deadline, next(self._order), call))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
                elif sooner:
                    self._changed.notify()
                return
        call.abandon("closed")

    def close(self, timeout: float = 5.0) -> None:
        """Abandon every call still running, with reason ``closed``, and end the thread."""
        with self._changed:
            self._closed = True
            calls = [entry[2] for entry in self._heap]
            self._heap.clear()
            self._changed.notify()
            thread = self._thread
        for call in calls:
            call.abandon("closed")
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        heap = self._heap
        while True:
            expired: list[UpstreamCall] = []
            with self._changed:
                if self._closed:
                    return
                now = self._clock()
                while heap and heap[0][0] <= now:
                    call = heapq.heappop(heap)[2]
                    # A deadline moved later (a stream that started to flow) is kept, or
                    # dropped if it is none; a sooner one was watched again meanwhile.
                    if call.deadline > now:
                        if call.deadline != math.inf and not call.ended:
                            heapq.heappush(heap, (call.deadline, next(self._order), call))
                        continue
                    expired.append(call)
                if not expired:
                    # Bounded even when idle: the loop re-reads the heap at least this often.
                    self._changed.wait(min(heap[0][0] - now, _IDLE_WAIT) if heap else _IDLE_WAIT)
                    continue
            for call in expired:
                call.abandon("timeout")
