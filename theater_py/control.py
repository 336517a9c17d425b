"""Reach a running theater-py process through its control socket.

``theater-py start`` and ``theater-py run`` serve their runtime on ``control.sock`` in
the home folder (``THEATER_PY_HOME``, else ``~/.theater-py``) with a
:class:`ControlServer`; a :class:`ControlClient` talks to it from anywhere on the same
machine, as the same user::

    from theater_py.control import ControlClient

    client = ControlClient()
    print(client.list_actors())
    print(client.request("echo", {"hello": "world"}))

The protocol (one JSON object per line) is described in :mod:`theater_py._protocol`
and ``docs/cli.md``. Every client call opens its own connection.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from theater_py import _protocol
from theater_py._control_server import ControlServer
from theater_py._protocol import (
    ControlError,
    NoServerRunning,
    ProtocolError,
    RemoteError,
    ServerAlreadyRunning,
)
from theater_py.errors import RequestTimeout

if TYPE_CHECKING:
    from collections.abc import Iterator
    from io import BufferedReader
    from typing import Self

__all__ = [
    "ControlClient",
    "ControlError",
    "ControlServer",
    "EventStream",
    "MessageStream",
    "NoServerRunning",
    "ProtocolError",
    "RemoteError",
    "ServerAlreadyRunning",
]

READ_MARGIN: Final = 5.0
"""Seconds a client waits for a reply beyond the timeout it gave the server."""


class ControlClient:
    """Calls a running server's operations; cheap to create, safe to share between threads.

    Errors the server reports raise :class:`RemoteError`, whose ``type`` names the
    runtime's exception (``ActorNotFound``, ``ActorFailed``, ``RequestTimeout``...).
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
    ) -> None:
        """Point a client at a home folder's control socket.

        Args:
            home: the home folder; ``THEATER_PY_HOME`` (else ``~/.theater-py``) if omitted.
            connect_timeout: seconds to wait for the server to accept.
            timeout: seconds to wait for a reply to operations that do not wait on an
                actor (``ping``, ``list``, ``send``; a non-following ``events``).
        """
        if home is None:
            from theater_py._home import theater_home

            home = theater_home()
        self.path = _protocol.socket_path(Path(home))
        """The control socket."""
        self.connect_timeout = connect_timeout
        self.timeout = timeout

    def ping(self) -> dict[str, Any]:
        """Return the server's ``pid``, ``home`` and ``version``.

        Raises:
            NoServerRunning: no server listens on the socket.
        """
        result: dict[str, Any] = self.call("ping")
        return result

    def list_actors(self) -> list[dict[str, Any]]:
        """Describe the running actors: ``name``, ``id``, ``status``, ``restarts``,
        ``uptime_s`` and ``queued``, in start order."""
        result: list[dict[str, Any]] = self.call("list")
        return result

    def request(self, actor: str, message: Any, timeout: float | None = None) -> Any:
        """Send a JSON request to an actor and return its JSON reply.

        Args:
            actor: the actor's name.
            message: the request, a JSON value.
            timeout: seconds the server waits for the reply (its default is 60).

        Raises:
            RemoteError: the server answered with an error (no such actor, the actor
                failed, the message does not decode, the reply timed out).
            RequestTimeout: the server itself did not answer in time.
        """
        wait = _protocol.DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout
        return self.call(
            "request", actor=actor, message=message, timeout=wait, read_timeout=wait + READ_MARGIN
        )

    def send(self, actor: str, message: Any) -> None:
        """Queue a JSON message for an actor without waiting for it to be handled."""
        self.call("send", actor=actor, message=message)

    def stop(self, actor: str, timeout: float | None = None) -> bool:
        """Stop an actor for good; return whether it finished within the timeout.

        Args:
            actor: the actor's name.
            timeout: seconds the server waits for it (its default is 10).
        """
        wait = 10.0 if timeout is None else timeout
        result = self.call("stop", actor=actor, timeout=wait, read_timeout=wait + READ_MARGIN)
        return bool(result["finished"])

    def events(
        self,
        actor: str,
        *,
        follow: bool = False,
        verify: bool = False,
        read_timeout: float | None = None,
    ) -> EventStream:
        """Open a stream of an actor's events (Theater's six keys each), oldest first.

        Args:
            actor: the actor's name.
            follow: keep streaming new events until the actor stops or the stream is
                closed.
            verify: have the server check the chain once the stream ends; its
                :class:`~theater_py.chain.ChainVerification` fields are then in
                ``summary["verification"]`` (what ``handle.verify()`` says, a saved
                chain's recorded losses included).
            read_timeout: seconds to wait for each line; by default the client's
                ``timeout``, or no limit when following (an idle actor sends nothing).

        Raises:
            NoServerRunning: no server listens on the socket.
        """
        if read_timeout is None and not follow:
            read_timeout = self.timeout
        request = {"op": "events", "actor": actor, "follow": follow, "verify": verify}
        return EventStream(self._open_stream(request, read_timeout), read_timeout)

    def stream(self, actor: str, message: Any, timeout: float | None = None) -> MessageStream:
        """Open a channel on an actor and stream its messages (JSON values) as they come.

        Iterating the stream ends when the actor closes the channel; closing the stream
        closes the channel.

        Args:
            actor: the actor's name.
            message: the channel's open message, a JSON value.
            timeout: seconds the server waits for the actor to accept, then for each next
                message (its default is 60).

        Raises:
            NoServerRunning: no server listens on the socket.
        """
        wait = _protocol.DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout
        request = {
            "op": "request",
            "actor": actor,
            "message": message,
            "timeout": wait,
            "stream": True,
        }
        read_timeout = wait + READ_MARGIN
        return MessageStream(self._open_stream(request, read_timeout), read_timeout)

    def _open_stream(self, request: dict[str, Any], read_timeout: float | None) -> socket.socket:
        """Connect and send a request whose answer is a stream of lines."""
        sock = self._connect(read_timeout)
        try:
            sock.sendall(_protocol.encode(request))
        except OSError as exc:
            with sock, sock.makefile("rb") as reader:
                refusal = _answer_before_close(reader)
            if refusal is None:
                raise ControlError(f"the connection to {self.path} broke: {exc}") from None
            _result(refusal)  # raises the server's error (Busy)
            raise ProtocolError("the server answered a stream with a result") from None
        return sock

    def call(self, op: str, /, *, read_timeout: float | None = None, **fields: Any) -> Any:
        """Perform one operation and return its ``result``.

        Args:
            op: the operation (see :data:`theater_py._protocol.OPS`).
            read_timeout: seconds to wait for the reply; the client's ``timeout`` if omitted.
            **fields: the request's other fields.

        Raises:
            NoServerRunning: no server listens on the socket.
            RemoteError: the server answered with an error.
            RequestTimeout: no reply within ``read_timeout``.
            ControlError: the connection broke, or the reply is not the protocol's.
        """
        wait = self.timeout if read_timeout is None else read_timeout
        with self._connect(wait) as sock, sock.makefile("rb") as reader:
            try:
                sock.sendall(_protocol.encode({"op": op, **fields}))
            except OSError as exc:
                # A server at its connection limit answers Busy and closes before reading.
                refusal = _answer_before_close(reader)
                if refusal is None:
                    raise ControlError(f"the connection to {self.path} broke: {exc}") from None
                return _result(refusal)
            return _result(_read_line(reader, wait))

    def _connect(self, read_timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(os.fspath(self.path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            where = (
                f"no control socket at {self.path}"
                if isinstance(exc, FileNotFoundError)
                else f"nothing accepts on {self.path}"
            )
            raise NoServerRunning(
                f"no theater-py server is running ({where});"
                " start one with `theater-py start` or `theater-py run`"
            ) from None
        except TimeoutError:
            sock.close()
            raise ControlError(
                f"the server at {self.path} did not accept within {self.connect_timeout} s"
            ) from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        sock.settimeout(read_timeout)
        return sock

    def __repr__(self) -> str:
        return f"<ControlClient {self.path}>"


class _LineStream:
    """Items the server streams as ``{KEY: item}`` lines, then a final response."""

    _key = ""

    def __init__(self, sock: socket.socket, read_timeout: float | None) -> None:
        self._sock = sock
        self._reader: BufferedReader = sock.makefile("rb")
        self._read_timeout = read_timeout
        self.summary: dict[str, Any] | None = None
        """The server's final word once the stream ended: ``count`` (items sent) and
        ``ended`` (why it ended)."""

    def __iter__(self) -> Iterator[Any]:
        """Yield each item as it arrives.

        Raises:
            RemoteError: the server refused the stream (no such actor), or it failed.
            RequestTimeout: no line arrived within the read timeout.
            ControlError: the connection broke before the stream's end.
        """
        key = self._key
        while True:
            message = _read_line(self._reader, self._read_timeout)
            if key in message:
                yield message[key]
                continue
            self.summary = _result(message)
            return

    def close(self) -> None:
        """Close the connection, which ends the stream on the server."""
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class EventStream(_LineStream):
    """An actor's events as the server streams them; iterate once, then close.

    Each item is an event object with Theater's six keys (``hash``, ``parent_hash``,
    ``event_type``, ``data``, ``timestamp``, ``description``), so
    :func:`theater_py.chain.verify_events` checks what arrived. ``summary["ended"]`` is
    ``complete``, ``actor stopped``, ``server stopping`` or ``cancelled``; with
    ``verify``, ``summary["verification"]`` holds the server's check of the chain.
    """

    _key = "event"


class MessageStream(_LineStream):
    """A channel's messages (JSON values) as the server streams them; iterate once, then close.

    The actor crashing or stopping raises :class:`RemoteError` (``ActorFailed``,
    ``ActorStopped``) once the messages it sent before have been read. Closing the stream
    closes the channel. ``summary["ended"]`` is ``closed`` (by the actor), ``server
    stopping`` or ``cancelled``.
    """

    _key = "message"


def _answer_before_close(reader: BufferedReader) -> dict[str, Any] | None:
    """Return what a server sent before it closed the connection, if anything."""
    try:
        line = reader.readline()
    except OSError:
        return None
    return _protocol.decode(line) if line else None


def _read_line(reader: BufferedReader, timeout: float | None) -> dict[str, Any]:
    try:
        line = reader.readline()
    except TimeoutError:
        raise RequestTimeout(f"the server did not answer within {timeout} s") from None
    except OSError as exc:
        raise ControlError(f"the connection to the server broke: {exc}") from None
    if not line:
        raise ControlError("the server closed the connection without answering")
    return _protocol.decode(line)


def _result(response: dict[str, Any]) -> Any:
    if response.get("ok") is True:
        return response.get("result")
    error = response.get("error")
    if response.get("ok") is False and isinstance(error, dict):
        path = error.get("path")
        raise RemoteError(
            str(error.get("type", "Error")),
            str(error.get("message", "")),
            path if isinstance(path, str) else None,
        )
    raise ProtocolError(f"unexpected response from the server: {sorted(response)}")
