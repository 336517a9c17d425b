"""A hostile upstream for deadline tests: it answers 200, then trickles the reply.

The simulator stalls or answers; this server does what it never does: it sends a valid
chat completion one byte at a time, a byte every ``interval`` seconds, so each socket read
succeeds and no per-read timeout ever fires. With ``where="headers"`` it trickles the
status line and headers too.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from typing import Any, Literal

__all__ = ["TrickleServer"]

_REPLY = json.dumps(
    {
        "id": "chatcmpl-trickle",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "slowly " * 20},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 20, "total_tokens": 21},
    }
).encode()


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
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(_REPLY)}\r\n\r\n".encode()
        )
        owner.started.set()
        if owner.where == "body":
            connection.sendall(head)
            payload = _REPLY
        else:
            payload = head + _REPLY
        for index in range(len(payload)):
            if owner.stopping.wait(owner.interval):
                return
            try:
                connection.sendall(payload[index : index + 1])
            except OSError:
                break  # the client hung up
            owner.sent = index + 1
            if _hung_up(connection):
                break
        owner.hung_up.set()


def _hung_up(connection: socket.socket) -> bool:
    # The client sends nothing more: readable now means it closed its end.
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        connection.setblocking(True)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: TrickleServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)


class TrickleServer:
    """A loopback server that trickles a 200 reply; use it as a context manager.

    Attributes:
        started: set when it begins to trickle.
        hung_up: set when the client closed the connection before the end.
        sent: how many bytes it has trickled.
        total: how many bytes the whole trickle is.
    """

    def __init__(self, interval: float = 0.25, where: Literal["body", "headers"] = "body") -> None:
        self.interval = interval
        self.where = where
        self.started = threading.Event()
        self.hung_up = threading.Event()
        self.stopping = threading.Event()
        self.sent = 0
        self.total = len(_REPLY) + (0 if where == "body" else 100)
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the proxy."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> TrickleServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
