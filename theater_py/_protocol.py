"""The control socket's wire protocol: one JSON object per line, in each direction.

A client writes a request object and reads response objects, one per line, UTF-8, each
ending in ``"\\n"``. Every request has an ``op``; an ``id`` it may carry is echoed in
the response. A response is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
{"type": ..., "message": ...}}``; the ``events`` op first sends ``{"event": {...}}``
lines, then its final response; a ``request`` with ``"stream": true`` first sends
``{"message": ...}`` lines, the messages of the channel it opens. See ``docs/cli.md`` for every op.

This module holds what the server and the client share, and imports nothing heavy: the
CLI's client commands load it without the runtime.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Final

from theater_py.errors import TheaterError

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "LOCK_NAME",
    "MAX_LINE",
    "OPS",
    "SOCKET_NAME",
    "ControlError",
    "NoServerRunning",
    "ProtocolError",
    "RemoteError",
    "ServerAlreadyRunning",
    "decode",
    "encode",
    "error_response",
    "lock_path",
    "ok_response",
    "optional_flag",
    "optional_timeout",
    "required_actor",
    "required_message",
    "socket_path",
]

SOCKET_NAME: Final = "control.sock"
"""The control socket's file name in the home folder."""

LOCK_NAME: Final = "control.lock"
"""The lock file a running server holds (``flock``) and writes its pid into."""

MAX_LINE: Final = 32 * 1024 * 1024
"""The longest request line a server reads, in bytes (requests may carry images)."""

DEFAULT_REQUEST_TIMEOUT: Final = 60.0
"""Seconds a ``request`` op waits for the actor's reply when it names no ``timeout``."""

OPS: Final = frozenset({"ping", "list", "request", "send", "stop", "start", "restart", "events"})
"""The operations a server knows."""


class ControlError(TheaterError):
    """The control socket could not be used: no server, a refused start, a broken reply."""


class NoServerRunning(ControlError):
    """No server listens on the home folder's control socket."""


class ServerAlreadyRunning(ControlError):
    """Another server already serves this home folder."""


class ProtocolError(ControlError, ValueError):
    """A line is not a valid protocol message; the message names the field at fault."""


class RemoteError(ControlError):
    """The server answered a request with an error.

    Attributes:
        type: what kind of error: the runtime's exception name (``ActorNotFound``,
            ``ActorFailed``, ``RequestTimeout``...), ``BadRequest`` or ``InternalError``.
        message: the server's one-line description.
        path: where a message failed to decode (``MessageDecodeError`` only).
    """

    def __init__(self, type: str, message: str, path: str | None = None) -> None:
        self.type = type
        self.message = message
        self.path = path
        super().__init__(message)


def socket_path(home: Path) -> Path:
    """Return where the control socket of a home folder lives."""
    return home / SOCKET_NAME


def lock_path(home: Path) -> Path:
    """Return where the lock file of a home folder's server lives."""
    return home / LOCK_NAME


def encode(message: dict[str, Any]) -> bytes:
    """Encode one protocol message as a line.

    Raises:
        TypeError: a value is not JSON.
        ValueError: a number is NaN or infinite.
    """
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Decode one line into a protocol message (a JSON object).

    Raises:
        ProtocolError: the line is not a JSON object.
    """
    try:
        message = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bad UTF-8
        raise ProtocolError(f"the line is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"expected a JSON object, got {type(message).__name__}")
    return message


def ok_response(result: Any, request_id: Any = None) -> dict[str, Any]:
    """Build a success response."""
    response = {"ok": True, "result": result}
    if request_id is not None:
        response["id"] = request_id
    return response


def error_response(
    type: str,
    message: str,
    request_id: Any = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Build an error response."""
    error = {"type": type, "message": message}
    if path is not None:
        error["path"] = path
    response: dict[str, Any] = {"ok": False, "error": error}
    if request_id is not None:
        response["id"] = request_id
    return response


def required_actor(request: dict[str, Any]) -> str:
    """Return a request's ``actor`` field.

    Raises:
        ProtocolError: it is missing or not a non-empty string.
    """
    actor = request.get("actor")
    if not isinstance(actor, str) or not actor:
        raise ProtocolError(f"field 'actor': expected a non-empty string, got {actor!r}")
    return actor


def required_message(request: dict[str, Any]) -> Any:
    """Return a request's ``message`` field (any JSON value, ``null`` included).

    Raises:
        ProtocolError: it is missing.
    """
    try:
        return request["message"]
    except KeyError:
        raise ProtocolError("field 'message': missing") from None


def optional_flag(request: dict[str, Any], name: str) -> bool:
    """Return a request's boolean field ``name``; ``False`` when absent.

    Raises:
        ProtocolError: it is not ``true`` or ``false``.
    """
    flag = request.get(name, False)
    if not isinstance(flag, bool):
        raise ProtocolError(f"field {name!r}: expected true or false, got {flag!r}")
    return flag


def optional_timeout(request: dict[str, Any], default: float | None) -> float | None:
    """Return a request's ``timeout`` field (seconds), or ``default`` when absent or null.

    Raises:
        ProtocolError: it is not a positive, finite number.
    """
    timeout = request.get("timeout")
    if timeout is None:
        return default
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ProtocolError(f"field 'timeout': expected a positive number, got {timeout!r}")
    return float(timeout)
