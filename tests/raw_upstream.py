"""A hostile loopback upstream that writes exactly the bytes a test scripts.

The simulator speaks well-formed HTTP; this server sends what a test gives it: a reply
cut into pieces at odd bytes, a body that never ends, a stream that stalls. Each request
is read whole (headers and a ``Content-Length`` body) and recorded; then the script runs
on the connection.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["RawServer", "client_closed", "event_stream_head", "sse", "stall"]

Script = Callable[[socket.socket, "RawServer"], None]


def event_stream_head(extra: str = "") -> bytes:
    """A 200 reply's head for an event stream whose end is the connection's close."""
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n{extra}\r\n"
    ).encode()


def sse(chunks: Iterable[Any], eol: bytes = b"\n", done: bool = True) -> bytes:
    """The event stream of ``chunks`` (JSON values), ``[DONE]`` last unless ``done`` is
    false."""
    body = b"".join(b"data: " + json.dumps(chunk).encode() + eol + eol for chunk in chunks)
    return body + (b"data: [DONE]" + eol + eol if done else b"")


def client_closed(connection: socket.socket) -> bool:
    """Whether the client has closed its end of ``connection``, without waiting.

    The client sends nothing more once its request is read, so readable means closed.
    """
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        connection.setblocking(True)


def stall(connection: socket.socket, server: RawServer, seconds: float = 30) -> None:
    """Send nothing more; set ``server.hung_up`` as soon as the client closes its end."""
    for _ in range(int(seconds / 0.01)):
        if client_closed(connection):
            server.hung_up.set()
            return
        if server.stopping.wait(0.01):
            return


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        owner = self.server.owner
        connection: socket.socket = self.request
        connection.settimeout(10)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                return
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                return
            body += chunk
        with owner.lock:
            owner.bodies.append(json.loads(body) if body else None)
        try:
            owner.script(connection, owner)
        except OSError:
            owner.hung_up.set()  # the client closed its end


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: RawServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class RawServer:
    """Runs ``script(connection, server)`` for each request; a context manager.

    Attributes:
        bodies: the JSON bodies of the requests received, in order.
        hung_up: set when a script's write failed because the client hung up.
        stopping: set when the server stops (a script waits on it, never sleeps).
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.bodies: list[Any] = []
        self.lock = threading.Lock()
        self.hung_up = threading.Event()
        self.stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the proxy."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
