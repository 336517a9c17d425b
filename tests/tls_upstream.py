"""An HTTPS loopback upstream that writes TLS records as a test says, and its certificate.

:class:`TLSRecords` encrypts through a memory BIO, so a test can leave part of a record in
the client's socket, as a network stall mid-record does (a real server's writes cannot).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from typing import Any

import pytest

__all__ = ["HeldBack", "TLSRecords", "loopback_certificate"]


@pytest.fixture(scope="module")
def loopback_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


class HeldBack:
    """A step of :class:`TLSRecords`: write ``data`` as TLS records, send their first
    ``part`` bytes only, and the rest once ``release`` is set (or after 15 s)."""

    def __init__(self, data: bytes, part: int, release: threading.Event) -> None:
        self.data, self.part, self.release = data, part, release


class TLSRecords:
    """A one-connection HTTPS loopback server that writes each step of its reply as TLS
    records of its own (a provider's write), through a memory BIO: so a test can leave
    part of a record in the client's socket, as a network stall mid-record does."""

    def __init__(self, cert: tuple[str, str], steps: list[bytes | HeldBack]) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*cert)
        self.steps = steps
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.listener.getsockname()[1]}/v1"

    def __enter__(self) -> TLSRecords:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stopping.set()
        for step in self.steps:
            if isinstance(step, HeldBack):
                step.release.set()
        self.thread.join(10)
        self.listener.close()

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(10)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError, ssl.SSLError):
                self._answer(connection)
            self.stopping.wait(1)  # let the client read the end before the close

    def _answer(self, connection: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.context.wrap_bio(incoming, outgoing, server_side=True)

        def pump() -> bool:
            if outgoing.pending:
                connection.sendall(outgoing.read())
            data = connection.recv(65536)
            incoming.write(data)
            return bool(data)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not pump():
                    return
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < int(
            received.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or 0
        ):
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                if not pump():
                    return
        if outgoing.pending:
            connection.sendall(outgoing.read())
        for step in self.steps:
            if isinstance(step, bytes):
                tls.write(step)
                connection.sendall(outgoing.read())
                continue
            tls.write(step.data)
            records = outgoing.read()
            connection.sendall(records[: step.part])
            step.release.wait(15)
            connection.sendall(records[step.part :])
