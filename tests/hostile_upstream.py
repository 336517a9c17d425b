"""A hostile upstream for deadline tests: it answers 200, then trickles the reply.

The simulator stalls or answers; this server does what it never does: it sends a valid
chat completion one byte at a time, a byte every ``interval`` seconds, so each socket read
succeeds and no per-read timeout ever fires. With ``where="headers"`` it trickles the
status line and headers too.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Literal

from tests.raw_upstream import RawServer, client_closed

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
        self.sent = 0
        self.total = len(_REPLY) + (0 if where == "body" else 100)
        self._server = RawServer(self._trickle)
        self.hung_up = self._server.hung_up

    def _trickle(self, connection: socket.socket, server: RawServer) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(_REPLY)}\r\n\r\n".encode()
        )
        self.started.set()
        if self.where == "body":
            connection.sendall(head)
            payload = _REPLY
        else:
            payload = head + _REPLY
        for index in range(len(payload)):
            if server.stopping.wait(self.interval):
                return
            try:
                connection.sendall(payload[index : index + 1])
            except OSError:
                break  # the client hung up
            self.sent = index + 1
            if client_closed(connection):
                break
        server.hung_up.set()

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give the proxy."""
        return self._server.base_url

    def __enter__(self) -> TrickleServer:
        self._server.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.__exit__(*exc_info)
