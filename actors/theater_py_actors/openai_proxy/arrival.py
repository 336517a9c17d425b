"""Whether the next read of a stream's socket would wait for the provider.

A stream gathers the text it reads and hands it to the caller when a read would wait: one
channel message (a thread wake-up) each time the proxy catches up with the provider, not
one per read. The check must never say "no wait" for a read that does wait, or the
gathered text would sit with the proxy until the provider sends more.

Plain TCP: any byte in the socket is a read that returns at once (``poll`` with no
timeout). TLS: a read returns a whole record's plaintext, so what the socket holds counts
only if it is a whole record, read from its 5-byte header (its length in bytes 3-4) with
``MSG_PEEK`` below the TLS layer, beside what the kernel has buffered (``FIONREAD``);
plaintext the TLS layer already decrypted always counts. Where ``FIONREAD`` is missing,
only that plaintext counts. One case is not seen: a whole record that carries no data (a
TLS 1.3 key update, which servers send after gigabytes, if ever; session tickets come
before the response) is read and the read goes on waiting, with the text gathered before
it held until the provider's next record.
"""

from __future__ import annotations

import array
import select
import socket
import ssl
import sys
from collections.abc import Callable

__all__ = ["arrival_check"]

_RECORD_HEADER = 5
"""A TLS record's header: type, version (2 bytes), length (2 bytes)."""

if sys.platform != "win32":
    import fcntl
    import termios

    def _bytes_waiting(fd: int) -> int:
        count = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, count)
        return count[0]

else:  # pragma: no cover -- the tests run on Linux

    def _bytes_waiting(fd: int) -> int:
        raise OSError("FIONREAD is not available")


def arrival_check(sock: object) -> Callable[[], bool]:
    """A check, for ``sock``, of whether the next read would return without waiting."""
    if isinstance(sock, ssl.SSLSocket):
        return _tls_check(sock)
    if not isinstance(sock, socket.socket) or not hasattr(select, "poll"):
        return _never
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
    except (OSError, ValueError):  # closed already: the read says how
        return _never

    def arrived() -> bool:
        try:
            return any(events & select.POLLIN for _fd, events in poller.poll(0))
        except (OSError, ValueError):
            return False

    return arrived


def _tls_check(sock: ssl.SSLSocket) -> Callable[[], bool]:
    pending = sock.pending
    peek = socket.socket.recv  # the raw bytes, below the TLS layer

    def arrived() -> bool:
        try:
            if pending() > 0:
                return True
            waiting = _bytes_waiting(sock.fileno())
            if waiting < _RECORD_HEADER:
                return False
            header = peek(sock, _RECORD_HEADER, socket.MSG_PEEK)
        except (OSError, ValueError):
            return False
        if len(header) < _RECORD_HEADER:
            return False
        return waiting >= _RECORD_HEADER + int.from_bytes(header[3:5], "big")

    return arrived


def _never() -> bool:
    return False
