"""The control socket's server: a runtime's actors, served to other processes.

One thread accepts connections and one thread serves each of them, a request at a
time. The socket is created with mode 0600, so only its owner can connect. A server
holds an ``flock`` on the home folder's lock file from :meth:`ControlServer.claim` to
:meth:`ControlServer.close`, so a second server on the same home is refused, and a
socket file left behind by a killed server (nothing accepts on it) is replaced.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import logging
import os
import re
import selectors
import socket
import stat
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import attrs

from theater_py import _protocol
from theater_py._cell import Envelope, Kind
from theater_py._protocol import (
    ControlError,
    ProtocolError,
    ServerAlreadyRunning,
    error_response,
    ok_response,
)
from theater_py.channel import _END, _NOTHING
from theater_py.errors import MessageDecodeError, TheaterError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from theater_py._cell import ActorCell
    from theater_py.chain import ChainStatus
    from theater_py.runtime import Runtime
    from theater_py.supervisor import ChildSpec, Supervisor

__all__ = ["ControlServer"]

logger = logging.getLogger("theater_py.control")

FOLLOW_POLL: Final = 0.05
"""Seconds between two looks at a followed actor's chain (it has no change signal)."""

_STOP_TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 64
"""How many connections a server serves at once by default; more are refused."""
IDLE_TIMEOUT: Final = 300.0
"""Seconds a connection may take to send its next whole request line before the server
closes it: silent or trickling a byte at a time, it frees its slot after that."""
MAX_STOPPED: Final = 256
"""How many actors stopped through a server it remembers (newest first) for ``restart``
and ``events``; the oldest is forgotten past that."""


class ControlServer:
    """Serves a runtime's actors on the control socket of a home folder.

    Use it in three steps: :meth:`claim` the home (before starting actors, so a second
    server is refused before it does anything), :meth:`start` listening (once the
    actors are up, so a client never finds the socket before them), and :meth:`close`.
    To drain gracefully, call :meth:`stop` first, then shut the runtime down, then
    :meth:`close`: requests in flight then get their replies or an ``ActorStopped``.
    """

    def __init__(
        self,
        runtime: Runtime,
        home: Path | None = None,
        *,
        max_line: int = _protocol.MAX_LINE,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        max_stopped: int = MAX_STOPPED,
    ) -> None:
        """Prepare a server; nothing is created until :meth:`claim` or :meth:`start`.

        Args:
            runtime: the runtime whose actors are served.
            home: the home folder of the socket and the lock file; the runtime's home
                by default.
            max_line: the longest request line read, in bytes.
            max_connections: how many connections are served at once (a thread each);
                one more is answered with a ``Busy`` error and closed.
            idle_timeout: seconds a connection may take to send its next whole
                request line (however it trickles in), or the server's reply may wait
                for the client to read, before it is closed. A followed event stream is
                not idle.
            max_stopped: how many actors stopped through this server it remembers, to
                ``restart`` them and read their ``events``; the oldest are forgotten.
        """
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout}")
        if max_stopped < 0:
            raise ValueError(f"max_stopped must be at least 0, not {max_stopped}")
        self.runtime = runtime
        self.home = runtime.home if home is None else home
        self.path = _protocol.socket_path(self.home)
        """The control socket."""
        self.max_line = max_line
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.max_stopped = max_stopped
        self._lock_fd: int | None = None
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._stopping = threading.Event()
        self._guard = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self._ping,
            "list": self._list,
            "send": self._send,
            "stop": self._stop_actor,
            "start": self._start_actor,
            "restart": self._restart_actor,
        }
        self._stopped: dict[str, tuple[Supervisor, ChildSpec, ActorCell]] = {}
        """Each actor stopped through this server, by name, oldest first (at most
        ``max_stopped``): its supervisor and spec, to start it again, and its cell, whose
        chain ``events`` still reads."""

    # -- life cycle ---------------------------------------------------------------------

    def claim(self) -> None:
        """Take the home folder: lock it and clear a stale socket.

        Raises:
            ServerAlreadyRunning: another server holds the lock, or accepts on the socket.
            ControlError: the socket's path holds something that is not a socket.
            OSError: the home folder or the lock file cannot be created.
        """
        if self._lock_fd is not None:
            return
        from theater_py._home import ensure_home

        ensure_home(self.home)
        lock = _protocol.lock_path(self.home)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ServerAlreadyRunning(
                f"a theater-py server already runs in {self.home} (pid {pid});"
                " stop it, or set THEATER_PY_HOME to another folder"
            ) from None
        try:
            _clear_stale_socket(self.path)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def start(self) -> None:
        """Claim the home if not done yet, create the socket (mode 0600) and accept.

        Raises:
            ServerAlreadyRunning: another server serves this home.
            ControlError: the socket cannot be created (its path may be too long).
        """
        self.claim()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The umask makes the socket private from the moment it exists; chmod makes
        # sure of the mode whatever the platform does with a socket's umask.
        previous = os.umask(0o177)
        try:
            listener.bind(os.fspath(self.path))
        except OSError as exc:
            listener.close()
            raise ControlError(
                f"cannot create the control socket {self.path}: {exc.strerror or exc}"
                " (a socket path is limited to about 100 bytes: try a shorter THEATER_PY_HOME)"
            ) from None
        finally:
            os.umask(previous)
        os.chmod(self.path, 0o600)
        listener.listen(64)
        self._listener = listener
        self._wake = socket.socketpair()
        self._accepter = threading.Thread(
            target=self._accept_loop,
            args=(listener, self._wake[0]),
            name="theater-py-control",
            daemon=True,
        )
        self._accepter.start()
        logger.info("control socket: %s", self.path)

    def stop(self) -> None:
        """Stop accepting and remove the socket; connections may finish their request.

        Waiting connections read end-of-file and close; ``events --follow`` streams end.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._wake is not None:
            self._wake[1].send(b"x")
        if self._accepter is not None:
            self._accepter.join(_STOP_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
            self.path.unlink(missing_ok=True)
        with self._guard:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)  # wakes a blocked read; the reply can still go

    def close(self, timeout: float | None = _STOP_TIMEOUT) -> bool:
        """Stop, wait for the connections' threads, then release the home's lock.

        Args:
            timeout: seconds to wait for the threads, in all.

        Returns:
            Whether every connection's thread finished in time (the others are cut off).
        """
        self.stop()
        with self._guard:
            threads = list(self._connections.items())
        finished = True
        for conn, thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                finished = False
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._lock_fd is not None:
            # The file stays: unlinking a lock file lets two servers lock two inodes.
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._wake is not None:
            for end in self._wake:
                end.close()
        return finished

    def __enter__(self) -> ControlServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ControlServer {self.path}>"

    # -- connections --------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _events in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        conn, _address = listener.accept()
                    except OSError:
                        continue  # the client gave up before we accepted
                    self._spawn(conn)

    def _spawn(self, conn: socket.socket) -> None:
        thread = threading.Thread(
            target=self._serve, args=(conn,), name="theater-py-control-conn", daemon=True
        )
        with self._guard:
            if self._stopping.is_set():
                conn.close()
                return
            busy = len(self._connections) >= self.max_connections
            if not busy:
                self._connections[conn] = thread
        if busy:
            _refuse(conn, self.max_connections)
            return
        # Every blocking read and write of the connection is bounded by the idle timeout.
        conn.settimeout(self.idle_timeout)
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        lines = _LineReader(conn, self.max_line, self.idle_timeout)
        try:
            with conn:
                while True:
                    try:
                        line = lines.next()
                    except _LineTooLong:
                        message = f"request line longer than {self.max_line} bytes"
                        _write(conn, error_response("BadRequest", message))
                        return  # no way to find the next line's start cheaply
                    if line is None:
                        return
                    if line.strip() and not self._handle_line(conn, line):
                        return
        except OSError:
            pass  # the client went away, or took longer than the idle timeout
        finally:
            with self._guard:
                self._connections.pop(conn, None)

    def _handle_line(self, conn: socket.socket, line: bytes) -> bool:
        """Answer one request line and log it; return whether the connection is usable."""
        began = time.monotonic()
        outcome = "ok"
        request: dict[str, Any] = {}
        request_id = None
        usable = True
        response: dict[str, Any] | None = None
        try:
            request = _protocol.decode(line)
            request_id = request.get("id")
            op = request.get("op")
            if op == "events":
                usable = self._events(conn, request, request_id)
            elif op == "request" and _protocol.optional_flag(request, "stream"):
                usable = self._stream(conn, request, request_id)
            elif op == "request":
                response = ok_response(self._request(conn, request), request_id)
            else:
                handler = self._ops.get(op) if isinstance(op, str) else None
                if handler is None:
                    known = ", ".join(sorted(_protocol.OPS))
                    raise ProtocolError(f"field 'op': expected one of {known}, got {op!r}")
                response = ok_response(handler(request), request_id)
        except ProtocolError as exc:
            response = error_response("BadRequest", str(exc), request_id)
        except MessageDecodeError as exc:
            response = error_response(type(exc).__name__, str(exc), request_id, exc.path)
        except TheaterError as exc:
            response = error_response(type(exc).__name__, str(exc), request_id)
        except _ClientLeft:
            usable = False  # nobody to answer; its request was abandoned
            outcome = "client left"
        except ConnectionError:
            raise  # the client went away mid-stream: nobody to answer
        except Exception as exc:
            logger.exception("control request failed")
            response = error_response("InternalError", f"{type(exc).__name__}: {exc}", request_id)
        if response is not None:
            _write(conn, response)
            outcome = "ok" if response["ok"] else response["error"]["type"]
        # Who, what and how it went: never a message, a reply or init data (secrets).
        logger.info(
            "%s: %s in %.3f s", _describe_request(request), outcome, time.monotonic() - began
        )
        return usable

    # -- operations ---------------------------------------------------------------------

    def _ping(self, _request: dict[str, Any]) -> Any:
        from theater_py import __version__

        # Only a database the runtime opened (reading the property would create one).
        database = self.runtime.__dict__.get("event_database")
        return {
            "pid": os.getpid(),
            "home": os.fspath(self.home),
            "version": __version__,
            "event_database": None if database is None else _writing(database.status()),
        }

    def _list(self, _request: dict[str, Any]) -> Any:
        listed = []
        for info in self.runtime.actors():
            cell = self.runtime.find_cell(info.name)
            chain = None if cell is None else attrs.asdict(cell.chain.status())
            listed.append(
                {
                    "name": info.name,
                    "id": info.id,
                    "status": info.status,
                    "restarts": info.restarts,
                    "uptime_s": info.uptime_s,
                    "queued": info.queued,
                    "chain": chain,
                }
            )
        return listed

    def _request(self, conn: socket.socket, request: dict[str, Any]) -> Any:
        """Ask an actor and wait for its reply, watching the client meanwhile.

        A client that hangs up (Ctrl-C) abandons the request as a caller's timeout
        does: a deferred reply's future is cancelled, so the actor can drop the work.

        Raises:
            _ClientLeft: the client closed the connection before the reply.
        """
        name = _protocol.required_actor(request)
        message = _protocol.required_message(request)
        timeout = _timeout(request, _protocol.DEFAULT_REQUEST_TIMEOUT)
        wait = _protocol.DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout
        cell = self.runtime.find_cell(name)
        if cell is None:
            from theater_py.errors import ActorNotFound

            raise ActorNotFound(f"no actor named {name!r} is running")
        reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
        envelope = Envelope(Kind.REQUEST, message, True, reply)
        cell.deliver(envelope)
        deadline = time.monotonic() + wait
        with selectors.DefaultSelector() as selector:
            selector.register(conn, selectors.EVENT_READ)
            watching = True
            while True:
                # The reply ends the wait at once; the socket is looked at between polls.
                left = deadline - time.monotonic()
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    return reply.result(max(0.0, min(FOLLOW_POLL, left)))
                if watching and selector.select(0):
                    try:
                        # A server stopping shuts reading down: the reply is still
                        # wanted. A client that sent its next request still waits.
                        waits = self._stopping.is_set() or bool(conn.recv(1, socket.MSG_PEEK))
                    except OSError:
                        waits = False  # the connection broke: nobody waits either
                    if not waits:
                        envelope.give_up()
                        raise _ClientLeft
                    selector.unregister(conn)
                    watching = False
                if left <= 0 and envelope.give_up():
                    from theater_py.errors import RequestTimeout

                    raise RequestTimeout(f"actor {name!r} did not reply within {wait} s")

    def _stream(self, conn: socket.socket, request: dict[str, Any], request_id: Any) -> bool:
        """Open a channel on an actor and stream its messages until it closes it.

        Each message goes as a ``{"message": ...}`` line as it comes; a final response
        counts them. The client hanging up, or sending its next request, closes the
        channel. ``timeout`` bounds the wait for the open and for each next message.

        Returns:
            Whether the connection is still usable.
        """
        name = _protocol.required_actor(request)
        message = _protocol.required_message(request)
        timeout = _protocol.optional_timeout(request, _protocol.DEFAULT_REQUEST_TIMEOUT)
        wait = _protocol.DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout
        channel = self.runtime.handle(name).open_channel_json(message, wait)
        sent = 0
        ended = "closed"
        # The channel is polled so that the client leaving is seen while the actor is quiet.
        with channel, selectors.DefaultSelector() as selector:
            selector.register(conn, selectors.EVENT_READ)
            deadline = time.monotonic() + wait
            while True:
                if self._stopping.is_set():
                    ended = "server stopping"
                    break
                item = channel._poll(FOLLOW_POLL)
                if item is _END:
                    break
                if item is not _NOTHING:
                    conn.sendall(_protocol.encode({"message": item}))
                    sent += 1
                    deadline = time.monotonic() + wait
                    continue
                if selector.select(0) and not self._stopping.is_set():
                    if not conn.recv(1, socket.MSG_PEEK):
                        return False  # the client hung up
                    ended = "cancelled"  # it sent its next request
                    break
                if time.monotonic() >= deadline:
                    from theater_py.errors import RequestTimeout

                    raise RequestTimeout(
                        f"actor {name!r} sent nothing on the channel within {wait} s"
                    )
        _write(conn, ok_response({"count": sent, "ended": ended}, request_id))
        return True

    def _send(self, request: dict[str, Any]) -> Any:
        name = _protocol.required_actor(request)
        message = _protocol.required_message(request)
        self.runtime.handle(name).send_json(message)
        return None

    def _stop_actor(self, request: dict[str, Any]) -> Any:
        name = _protocol.required_actor(request)
        timeout = _timeout(request, _STOP_TIMEOUT)
        return {"finished": self._stop(name, timeout)}

    def _stop(self, name: str, timeout: float | None) -> bool:
        """Stop a running actor for good; remember how to start it again, and its chain."""
        cell = self.runtime.find_cell(name)
        if cell is None:
            from theater_py.errors import ActorNotFound

            raise ActorNotFound(f"no actor named {name!r} is running")
        owner = cell.owner or self.runtime.root
        spec = owner.get_childspec(name)
        finished = self.runtime.stop_actor(name, timeout)
        self._remember_stopped(name, (owner, spec, cell))
        logger.info("stopped actor %s%s", name, "" if finished else " (it did not finish in time)")
        return finished

    def _remember_stopped(self, name: str, origin: tuple[Supervisor, ChildSpec, ActorCell]) -> None:
        """Remember a stopped actor, forgetting the oldest beyond ``max_stopped``."""
        with self._guard:
            stopped = self._stopped
            stopped.pop(name, None)  # re-inserted: it is now the newest
            stopped[name] = origin
            while len(stopped) > self.max_stopped:
                del stopped[next(iter(stopped))]

    def _start_actor(self, request: dict[str, Any]) -> Any:
        manifest = request.get("manifest")
        if not isinstance(manifest, str) or not manifest:
            raise ProtocolError(f"field 'manifest': expected a non-empty string, got {manifest!r}")
        name = request.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise ProtocolError(f"field 'name': expected a non-empty string, got {name!r}")
        handle = self.runtime.start_actor(manifest, request.get("init"), name=name)
        with self._guard:
            self._stopped.pop(handle.name, None)
        logger.info("started actor %s (%s) from %s", handle.name, handle.id, manifest)
        return {"name": handle.name, "id": handle.id}

    def _restart_actor(self, request: dict[str, Any]) -> Any:
        name = _protocol.required_actor(request)
        timeout = _timeout(request, _STOP_TIMEOUT)
        if self.runtime.find_cell(name) is not None:
            self._stop(name, timeout)
        with self._guard:
            origin = self._stopped.pop(name, None)
        if origin is None:
            from theater_py.errors import ActorNotFound

            raise ActorNotFound(f"no actor named {name!r} runs or was stopped on this server")
        owner, spec, _cell = origin
        try:
            target = owner.start_child(spec)
        except TheaterError:
            self._remember_stopped(name, origin)  # it may be mended and retried
            raise
        if target is None:  # its init returned IGNORE: OTP keeps the spec, with no process
            logger.info("restarted actor %s: its init chose to be ignored", name)
            return {"name": name, "id": None}
        logger.info("restarted actor %s (%s) under supervisor %s", name, target.id, owner.name)
        return {"name": name, "id": target.id}

    def _events(self, conn: socket.socket, request: dict[str, Any], request_id: Any) -> bool:
        """Stream an actor's events; with ``follow``, until it stops or the client leaves.

        With ``verify``, the final response carries the chain's :meth:`verify
        <theater_py.chain.EventChain.verify>` result as ``verification``.

        Returns:
            Whether the connection is still usable.
        """
        name = _protocol.required_actor(request)
        follow = _protocol.optional_flag(request, "follow")
        verify = _protocol.optional_flag(request, "verify")
        cell = self.runtime.find_cell(name)
        if cell is None:
            with self._guard:
                stopped = self._stopped.get(name)
            if stopped is None:
                from theater_py.errors import ActorNotFound

                raise ActorNotFound(f"no actor named {name!r} is running")
            cell = stopped[2]  # its chain outlives it: a stopped actor's events still read
        sent = _Sent()
        _send_new_events(conn, cell, sent)
        ended = "complete"
        if follow:
            # A selector, not select(): a busy server's descriptors may pass FD_SETSIZE.
            with selectors.DefaultSelector() as selector:
                selector.register(conn, selectors.EVENT_READ)
                while True:
                    alive = cell.is_alive()
                    if self._stopping.is_set():
                        ended = "server stopping"
                        break
                    if selector.select(FOLLOW_POLL):
                        if self._stopping.is_set():
                            continue
                        if not conn.recv(1, socket.MSG_PEEK):
                            return False  # the client hung up
                        ended = "cancelled"  # it sent its next request
                        break
                    _send_new_events(conn, cell, sent)
                    if not alive:
                        ended = "actor stopped"  # its last events were recorded a poll ago
                        break
        _send_new_events(conn, cell, sent)
        summary: dict[str, Any] = {"count": sent.count, "ended": ended}
        if verify:
            # The chain's own check: a saved chain's numbers show a recorded loss as the
            # run it lost, where a check of the streamed list sees a broken link.
            summary["verification"] = attrs.asdict(cell.chain.verify())
        _write(conn, ok_response(summary, request_id))
        return True


class _ClientLeft(Exception):
    """The client closed its connection while the server waited on its behalf."""


class _LineTooLong(Exception):
    """A request line is longer than the server reads."""


class _LineReader:
    """Reads a connection's request lines, each whole line within a time limit.

    A socket's timeout bounds each read, which a client trickling a byte per read never
    meets: the time left for the whole line is set before each read instead.
    """

    def __init__(self, conn: socket.socket, max_line: int, timeout: float) -> None:
        self._conn = conn
        self._max_line = max_line
        self._timeout = timeout
        self._buffer = bytearray()

    def next(self) -> bytes | None:
        """Return the next line with its newline (the last one may have none), or
        ``None`` at the end of the connection.

        Raises:
            _LineTooLong: the line is longer than ``max_line`` bytes.
            TimeoutError: the whole line did not arrive within the timeout.
            OSError: the connection broke.
        """
        buffer = self._buffer
        deadline = time.monotonic() + self._timeout
        searched = 0
        try:
            while True:
                end = buffer.find(b"\n", searched)
                if end >= 0 or len(buffer) > self._max_line:
                    if end < 0 or end >= self._max_line:
                        raise _LineTooLong
                    line = bytes(buffer[: end + 1])
                    del buffer[: end + 1]
                    return line
                searched = len(buffer)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the request line took too long")
                self._conn.settimeout(left)
                chunk = self._conn.recv(65536)
                if not chunk:
                    line = bytes(buffer)
                    buffer.clear()
                    return line or None
                buffer += chunk
        finally:
            self._conn.settimeout(self._timeout)  # writes and peeks keep their own bound


_TAG: Final = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")


def _describe_request(request: dict[str, Any]) -> str:
    """Name a request for the log: its op, its actor, its message's variant if it has one.

    ``request openai-proxy GenerateCompletion``; a message is named only by a serde tag
    (``"ListModels"``, ``{"GenerateCompletion": ...}``), never by its content.
    """
    op = request.get("op")
    words = [op if isinstance(op, str) and op in _protocol.OPS else "?"]
    actor = request.get("actor")
    if isinstance(actor, str) and actor:
        words.append(actor[:100])
    message = request.get("message")
    if isinstance(message, dict) and len(message) == 1:
        message = next(iter(message))
    if isinstance(message, str) and _TAG.fullmatch(message):
        words.append(message)
    return " ".join(words)


def _timeout(request: dict[str, Any], default: float | None) -> float | None:
    """A request's ``timeout`` field, at most what a thread can wait (about 292 years)."""
    timeout = _protocol.optional_timeout(request, default)
    if timeout is not None and timeout > threading.TIMEOUT_MAX:
        # A longer wait raises OverflowError deep in the op, after it has begun (a stop).
        raise ProtocolError(
            f"field 'timeout': expected at most {threading.TIMEOUT_MAX:.0f} seconds,"
            f" got {timeout!r}"
        )
    return timeout


def _writing(status: ChainStatus) -> dict[str, Any]:
    return {"lost": status.lost, "error": status.error}


@attrs.define
class _Sent:
    """How far an event stream got: how many events it sent, and the last one's hash."""

    count: int = 0
    last_hash: str | None = None


def _send_new_events(conn: socket.socket, cell: ActorCell, sent: _Sent) -> None:
    # Found by the last hash sent, not by index: a chain in memory keeps only its newest
    # events, so an index into what it keeps names a different event once it drops some.
    chain = cell.chain
    if chain.last_hash == sent.last_hash:
        return
    events = chain.events()
    start = 0
    for index in range(len(events) - 1, -1, -1):
        if events[index].hash == sent.last_hash:
            start = index + 1
            break
    new = events[start:]
    if not new:
        return
    conn.sendall(b"".join(_protocol.encode({"event": event.to_json()}) for event in new))
    sent.count += len(new)
    sent.last_hash = new[-1].hash


def _refuse(conn: socket.socket, limit: int) -> None:
    """Tell a connection past the limit why it is closed, without waiting on it."""
    message = f"the server serves {limit} connections at once; try again later"
    with contextlib.suppress(OSError), conn:
        conn.setblocking(False)
        conn.send(_protocol.encode(error_response("Busy", message)))
    logger.warning("control socket: refused a connection (%d already served)", limit)


def _write(conn: socket.socket, response: dict[str, Any]) -> None:
    try:
        data = _protocol.encode(response)
    except (TypeError, ValueError) as exc:
        message = f"the reply is not JSON: {exc}"
        data = _protocol.encode(error_response("InvalidReply", message, response.get("id")))
    conn.sendall(data)


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket file nothing accepts on; refuse one a server still accepts on."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket: remove it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
            logger.warning("removed the stale control socket %s", path)
            return
        except TimeoutError:
            pass  # a server too busy to accept is still a server
        except OSError as exc:
            raise ControlError(f"cannot check the socket {path}: {exc.strerror or exc}") from None
    raise ServerAlreadyRunning(f"a theater-py server already listens on {path}")
