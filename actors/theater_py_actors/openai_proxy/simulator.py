"""An offline OpenAI-compatible server, for tests, demos and benchmarks.

:class:`OpenAISimulator` serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on a
loopback port with deterministic replies, and injects the failures a real provider has:
latency, error statuses, exhausted quotas, reset connections, stalls and broken bodies.
It uses the standard library only, so ``theater-py mock-openai`` runs anywhere.

Replies, for a request whose last user text is ``T``:

- ``"You said: T"`` (long texts are cut to their first 30 words);
- a tool call, when tools are offered and ``T`` names one of them or says "use a tool"
  (or ``tool_choice`` demands one); its arguments fill the schema's required properties;
- after a ``tool`` message, a text that quotes the tool's result;
- with ``response_format`` ``json_object`` or ``json_schema``, a JSON object;
- ``finish_reason`` ``length`` when the reply exceeds the token limit (1 token per word).

Faults, by request header ``X-Mock-Fault`` or queued with :meth:`OpenAISimulator.fail_next`,
are ``;``- or ``,``-separated items: ``latency=<ms>``, ``status=<code>`` (with
``retry_after=<s>``, ``retry_after_ms=<ms>``, ``should_retry=true|false``), ``quota``,
``reset``, ``stall[=<ms>]``, ``stall_body[=<ms>]`` and ``malformed``.

A request with ``"stream": true`` is answered as Server-Sent Events, as OpenAI streams:
a chunk per word (a tool call's arguments in fragments), ``finish_reason`` on the last,
then with ``stream_options.include_usage`` a usage chunk with empty ``choices``, then
``data: [DONE]``, in chunked transfer encoding on a keep-alive connection. Stream
faults: ``token_ms=<ms>`` (slow tokens: a pause before each chunk),
``stream_stall[=<ms>]`` (silence after the first text), ``stream_error`` (an
``{"error": ...}`` event after the first text),
``split=<n>`` (events written in pieces of ``n`` bytes, cutting lines and UTF-8
characters), ``crlf`` (CRLF line endings), ``no_index`` (tool-call deltas without
``index``) and ``no_usage`` (no usage chunk even when asked).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import select
import selectors
import signal
import socket
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DEFAULT_MODELS",
    "Fault",
    "OpenAISimulator",
    "SeenRequest",
    "chat_completion",
    "main",
    "parse_fault",
    "stream_chunks",
]

logger = logging.getLogger(__name__)

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "moonshot-v1-8k",
)
"""The models ``GET /v1/models`` lists unless the simulator is given others."""

_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")  # but gpt-5-chat-* is a chat model
_O3_REJECTS = ("stop", "parallel_tool_calls")
_STALL_DEFAULT_MS = 300_000
_SUMMARY_WORDS = 30
_CREATED = 1_700_000_000
_ERROR_SHAPES: Mapping[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout_error", None),
    409: ("conflict_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
}


@dataclass(frozen=True)
class Fault:
    """What to do to one request instead of (or before) answering it normally.

    Attributes:
        latency_ms: wait this long before answering.
        status: answer with this error status, in OpenAI's error shape.
        retry_after: the ``Retry-After`` header to send with it.
        retry_after_ms: the ``retry-after-ms`` header to send with it.
        should_retry: the ``x-should-retry`` header to send with it.
        quota: answer 429 ``insufficient_quota``.
        reset: close the connection with a TCP reset, without answering.
        stall_ms: send nothing, and close after this long (sooner if the client leaves).
        stall_body_ms: send a 200's headers only, and close after this long.
        malformed: answer 200 with a truncated JSON body.
        token_ms, stream_stall_ms, stream_error, split, crlf, no_index, no_usage: what
            a streamed reply does (see the module's docstring).
        body: the error body to send, replacing the generated one.
        headers: more headers to send with an error.
    """

    latency_ms: int = 0
    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    should_retry: str | None = None
    quota: bool = False
    reset: bool = False
    stall_ms: int | None = None
    stall_body_ms: int | None = None
    malformed: bool = False
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    token_ms: int = 0
    stream_stall_ms: int | None = None
    stream_error: bool = False
    split: int = 0
    crlf: bool = False
    no_index: bool = False
    no_usage: bool = False


def _milliseconds(name: str, value: str | None, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    try:
        number = int(value or "")
    except ValueError:
        raise ValueError(f"{name}: expected milliseconds, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name}: expected milliseconds, got {value!r}")
    return number


def parse_fault(text: str) -> Fault:
    """Read a fault in the ``X-Mock-Fault`` header's syntax.

    Args:
        text: items separated by ``;`` or ``,``, such as ``status=429,retry_after=1``.

    Returns:
        The fault.

    Raises:
        ValueError: an item is unknown or its value invalid; the message names it.
    """
    fields: dict[str, Any] = {}
    for item in text.replace(";", ",").split(","):
        name, _, value = (part.strip() for part in item.partition("="))
        if not name:
            continue
        given = value if "=" in item else None
        if name == "latency":
            fields["latency_ms"] = _milliseconds(name, given)
        elif name == "status":
            fields["status"] = _milliseconds(name, given)
            if not 100 <= fields["status"] <= 599:
                raise ValueError(f"status: expected an HTTP status, got {given!r}")
        elif name in ("retry_after", "retry_after_ms", "should_retry") and given:
            fields[name] = given
        elif (
            name in ("quota", "reset", "malformed", "stream_error", "crlf", "no_index", "no_usage")
            and given is None
        ):
            fields[name] = True
        elif name in ("stall", "stall_body", "stream_stall"):
            fields[f"{name}_ms"] = _milliseconds(name, given, _STALL_DEFAULT_MS)
        elif name in ("token_ms", "split"):
            fields[name] = _milliseconds(name, given)
        else:
            raise ValueError(f"unknown fault item {item.strip()!r}")
    return Fault(**fields)


@dataclass(frozen=True)
class SeenRequest:
    """A request the simulator received.

    Attributes:
        method: the HTTP method.
        path: the request path.
        headers: the request headers, names lower-cased.
        body: the JSON body, or the raw bytes when it is not JSON.
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)
    body: Any


# --- replies -------------------------------------------------------------------------------


def _error(message: str, type_: str, param: str | None = None, code: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for part in content:
        if isinstance(part, Mapping):
            kind = part.get("type")
            if kind == "text":
                parts.append(str(part.get("text", "")))
            elif kind in ("image_url", "input_audio"):
                parts.append(f"[{'image' if kind == 'image_url' else 'audio'}]")
    return " ".join(parts)


def _words(text: str) -> int:
    return len(text.split())


def _example(schema: Any) -> Any:
    """Return a value of the JSON schema's type (its default or first enum value if any)."""
    if not isinstance(schema, Mapping):
        return "sample"
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _example(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(properties)
        return {name: _example(properties.get(name)) for name in names if isinstance(name, str)}
    examples: Mapping[Any, Any] = {
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "null": None,
    }
    return examples.get(kind, "sample")


def _pick_tool(request: Mapping[str, Any], text: str) -> Mapping[str, Any] | None:
    tools: list[Mapping[str, Any]] = [
        tool["function"]
        for tool in request.get("tools") or ()
        if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping)
    ]
    choice = request.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, Mapping):
        wanted = (choice.get("function") or {}).get("name")
        return next((tool for tool in tools if tool.get("name") == wanted), None)
    named = next((tool for tool in tools if str(tool.get("name", "\0")) in text), None)
    if named is not None:
        return named
    if choice == "required" or "use a tool" in text.lower():
        return tools[0]
    return None


def _reply_text(request: Mapping[str, Any], text: str) -> tuple[str, str]:
    words = text.split()
    summary = " ".join(words[:_SUMMARY_WORDS]) + (" ..." if len(words) > _SUMMARY_WORDS else "")
    reply = f"You said: {summary}" if words else "You said nothing."
    finish = "stop"
    stop = request.get("stop")
    for marker in [stop] if isinstance(stop, str) else stop or ():
        if isinstance(marker, str) and marker and marker in reply:
            reply = reply[: reply.index(marker)]
    limit = request.get("max_completion_tokens") or request.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < _words(reply):
        reply, finish = " ".join(reply.split()[:limit]), "length"
    return reply, finish


def _check_request(  # noqa: PLR0911 -- one return per check, in a provider's order
    request: Any, models: Sequence[str] | None
) -> tuple[int, Any] | None:
    """Return the error a real provider would give this request, if any."""
    if not isinstance(request, Mapping):
        return 400, _error(
            "We could not parse the JSON body of your request.", "invalid_request_error"
        )
    model = request.get("model")
    if not isinstance(model, str) or not model:
        return 400, _error("you must provide a model parameter", "invalid_request_error", "model")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return 400, _error(
            "'messages' must be a non-empty array", "invalid_request_error", "messages"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            return 400, _error(
                f"Invalid value for 'messages[{index}]': expected an object with a 'role'.",
                "invalid_request_error",
                f"messages[{index}]",
            )
    options = request.get("stream_options")
    if options is not None and request.get("stream") is not True:
        return 400, _error(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "invalid_request_error",
            "stream_options",
        )
    if models is not None and model not in models:
        return 404, _error(
            f"The model '{model}' does not exist or you do not have access to it.",
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    if model.startswith(_REASONING_PREFIXES) and not model.startswith("gpt-5-chat"):
        rejected = next((key for key in _O3_REJECTS if key in request), None)
        if rejected is not None and model.startswith(("o3", "o4")):
            return 400, _error(
                f"Unsupported parameter: '{rejected}' is not supported with this model.",
                "invalid_request_error",
                rejected,
                "unsupported_parameter",
            )
        if "max_tokens" in request:
            return 400, _error(
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                "invalid_request_error",
                "max_tokens",
                "unsupported_parameter",
            )
        temperature = request.get("temperature")
        if temperature is not None and temperature != 1:
            return 400, _error(
                f"Unsupported value: 'temperature' does not support {temperature} with this "
                "model. Only the default (1) value is supported.",
                "invalid_request_error",
                "temperature",
                "unsupported_value",
            )
    return None


def chat_completion(
    request: Any, number: int = 1, models: Sequence[str] | None = None
) -> tuple[int, Any]:
    """Answer a Chat Completions request as the simulator does.

    Args:
        request: the decoded JSON request body.
        number: the request's sequence number, used in the generated ids.
        models: the models to accept, or ``None`` to accept any.

    Returns:
        The HTTP status and the JSON body: a ``chat.completion`` or an OpenAI error.
    """
    problem = _check_request(request, models)
    if problem is not None:
        return problem
    messages = request["messages"]
    last = messages[-1]
    user_text = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    tool = None if last["role"] == "tool" else _pick_tool(request, user_text)
    if tool is not None:
        arguments = json.dumps(_example(tool.get("parameters") or {}))
        message["tool_calls"] = [
            {
                "id": f"call_sim{number}",
                "type": "function",
                "function": {"name": str(tool.get("name", "")), "arguments": arguments},
            }
        ]
        finish, completion_words = "tool_calls", _words(arguments.replace('"', " "))
    else:
        if last["role"] == "tool":
            text, finish = f"Tool result: {_text_of(last.get('content'))}", "stop"
        else:
            text, finish = _reply_text(request, user_text)
        response_format = request.get("response_format")
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind == "json_object":
            text = json.dumps({"reply": text})
        elif kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            text = json.dumps(_example(schema or {"type": "object"}))
        message["content"] = text
        completion_words = _words(text)
    prompt_words = sum(_words(_text_of(m.get("content"))) for m in messages)
    return 200, {
        "id": f"chatcmpl-sim{number}",
        "object": "chat.completion",
        "created": _CREATED + number,
        "model": request["model"],
        "system_fingerprint": "fp_simulator",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def stream_chunks(reply: Mapping[str, Any], request: Any, fault: Fault) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream ``reply``, as OpenAI sends them.

    Args:
        reply: a ``chat.completion``, as :func:`chat_completion` makes it.
        request: the request (its ``stream_options.include_usage`` asks for usage).
        fault: the stream's faults (``no_index``, ``no_usage``).
    """
    base = {
        "id": reply["id"],
        "object": "chat.completion.chunk",
        "created": reply["created"],
        "model": reply["model"],
        "system_fingerprint": reply.get("system_fingerprint"),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**base, "choices": [choice]}

    choice = reply["choices"][0]
    message = choice["message"]
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    text = message.get("content") or ""
    words = text.split(" ")
    chunks += [
        chunk({"content": word + (" " if n < len(words) - 1 else "")})
        for n, word in enumerate(words)
        if word or n < len(words) - 1
    ]
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        start: dict[str, Any] = {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        pieces = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
        entries = [start] + [{"function": {"arguments": piece}} for piece in pieces]
        if not fault.no_index:
            for entry in entries:
                entry["index"] = index
        chunks += [chunk({"tool_calls": [entry]}) for entry in entries]
    chunks.append(chunk({}, choice["finish_reason"]))
    options = request.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") and not fault.no_usage:
        chunks.append({**base, "choices": [], "usage": reply["usage"]})
    return chunks


def _fault_reply(fault: Fault) -> tuple[int, Any, list[tuple[str, str]]]:
    headers = list(fault.headers)
    for name, value in (
        ("Retry-After", fault.retry_after),
        ("retry-after-ms", fault.retry_after_ms),
        ("x-should-retry", fault.should_retry),
    ):
        if value is not None:
            headers.append((name, value))
    if fault.quota:
        body = _error(
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            None,
            "insufficient_quota",
        )
        return 429, body, headers
    status = fault.status or 500
    type_, code = _ERROR_SHAPES.get(status, ("server_error", None))
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return status, _error(f"Simulated {status} {phrase}", type_, None, code), headers


# --- the server ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OpenAISimulator/1"
    # Headers and body go out as two writes; with Nagle's algorithm on, the body waits
    # for the client's delayed ACK, about 40 ms a request.
    disable_nagle_algorithm = True
    server: _Server
    request_number = 0

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self.server.simulator._serve(self, self._read_body())

    def do_POST(self) -> None:
        self.server.simulator._serve(self, self._read_body())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Send a complete JSON reply, keeping the connection open."""
        self.send_bytes(status, json.dumps(body).encode(), headers)

    def send_bytes(
        self, status: int, payload: bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Send a complete reply with the given body."""
        self.send_head(status, len(payload), headers)
        self.wfile.write(payload)

    def send_head(self, status: int, length: int, headers: Iterable[tuple[str, str]] = ()) -> None:
        """Send the status line and the headers of a JSON reply."""
        extra = list(headers)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        if not any(name.lower() == "x-request-id" for name, _ in extra):
            self.send_header("x-request-id", f"req_sim{self.request_number}")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: OpenAISimulator) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.simulator = simulator
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._run_request,
            args=(request, client_address),
            name=f"openai-simulator-{client_address[1]}",
            daemon=True,
        )
        self.simulator._opened(request, thread)
        thread.start()

    def _run_request(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.simulator._closed(request)

    def shutdown_request(self, request: Any) -> None:
        if self.simulator._is_reset(request):
            # Skip the FIN of a graceful shutdown: the close must be a bare reset.
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up, or stop() closing the socket, is not a server error.
        logger.debug("connection from %s ended abruptly", client_address, exc_info=True)


class OpenAISimulator:
    """A loopback OpenAI-compatible server with fault injection.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Its counters are
    safe to read from any thread.

    Args:
        host: the address to listen on.
        port: the port, or 0 for any free one.
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
        latency_ms: a delay added to every request.
        models: the models ``GET /v1/models`` lists.
        reject_unknown_models: answer 404 ``model_not_found`` for a model not in ``models``.
        history: how many requests :attr:`requests` keeps.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        latency_ms: int = 0,
        *,
        models: Sequence[str] = DEFAULT_MODELS,
        reject_unknown_models: bool = False,
        history: int = 1000,
    ) -> None:
        self._address = (host, port)
        self._api_key = api_key
        self._latency = latency_ms / 1000
        self._models = tuple(models)
        self._reject_unknown = reject_unknown_models
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._faults: collections.deque[Fault] = collections.deque()
        self._requests: collections.deque[SeenRequest] = collections.deque(maxlen=history)
        self._connections: dict[Any, threading.Thread] = {}
        self._resets: set[Any] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._seen = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._opened_count = 0
        self._billed = 0

    def __repr__(self) -> str:
        return f"<OpenAISimulator {self.base_url if self._server else 'stopped'}>"

    def __enter__(self) -> OpenAISimulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- lifecycle

    def start(self) -> OpenAISimulator:
        """Bind, listen and serve in a background thread; return once listening.

        Raises:
            RuntimeError: the simulator was started before.
            OSError: the address cannot be bound.
        """
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("an OpenAISimulator starts once")
        self._server = _Server(self._address, self)
        self._wake = socket.socketpair()
        self._thread = threading.Thread(
            target=self._accept_loop,
            args=(self._server, self._wake[0]),
            name="openai-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def _accept_loop(self, server: _Server, wake: socket.socket) -> None:
        # serve_forever() polls for its shutdown flag; waiting on a wake-up socket as well
        # lets stop() return at once.
        with selectors.DefaultSelector() as selector:
            selector.register(server, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is server and not self._stopping.is_set():
                        server.handle_request()  # readable, so it accepts without blocking

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: wake stalled and delayed requests, close every socket, join threads.

        Calling it again does nothing.

        Args:
            timeout: how long to wait for each thread to end.
        """
        with self._lock:
            server, self._server = self._server, None
            self._stopping.set()
            self._changed.notify_all()
        if server is None:
            return
        if self._wake is not None:
            self._wake[1].send(b"\0")
        if self._thread is not None:
            self._thread.join(timeout)
        server.server_close()
        for end in self._wake or ():
            end.close()
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        for thread in connections.values():
            thread.join(timeout)

    @property
    def base_url(self) -> str:
        """The API root, ``http://127.0.0.1:<port>/v1``.

        Raises:
            RuntimeError: the simulator is not running.
        """
        server = self._server
        if server is None:
            raise RuntimeError("the simulator is not running")
        host, port = server.server_address[:2]
        name = str(host)
        return f"http://{f'[{name}]' if ':' in name else name}:{port}/v1"

    # --- faults

    def fail_next(
        self,
        status: int | None = None,
        *,
        retry_after: str | None = None,
        retry_after_ms: str | None = None,
        body: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue a fault for the next ``times`` requests that carry no ``X-Mock-Fault``.

        Args:
            status: the error status to answer with.
            retry_after: the ``Retry-After`` header.
            retry_after_ms: the ``retry-after-ms`` header.
            body: the error body (JSON data, text or bytes) replacing the generated one.
            headers: more response headers.
            fault: a fault in the header's syntax (``"reset"``, ``"stall=5000"``,
                ``"quota"``), combined with the arguments above.
            times: how many requests it applies to.

        Raises:
            ValueError: ``fault`` is invalid or nothing was asked for.
        """
        if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
            raise TypeError(f"status must be an HTTP status code (int), not {status!r}")
        base = parse_fault(fault) if fault else Fault()
        if isinstance(body, str):
            body = body.encode()
        elif body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        queued = replace(
            base,
            status=status if status is not None else base.status,
            retry_after=retry_after if retry_after is not None else base.retry_after,
            retry_after_ms=retry_after_ms if retry_after_ms is not None else base.retry_after_ms,
            body=body,
            headers=tuple((headers or {}).items()),
        )
        if queued == Fault():
            raise ValueError("fail_next needs a status or a fault")
        with self._lock:
            self._faults.extend([queued] * times)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._faults.clear()

    # --- counters

    @property
    def requests_seen(self) -> int:
        """How many requests arrived."""
        with self._lock:
            return self._seen

    @property
    def billed(self) -> int:
        """How many chat completions were answered ``200``: each was generated, so a real
        provider bills it, whether or not the client read it (a whole reply, a stream
        cut short, a malformed body, a body that stalled)."""
        with self._lock:
            return self._billed

    def _bill(self, handler: _Handler) -> None:
        if handler.path.split("?", 1)[0].rstrip("/") == "/v1/chat/completions":
            with self._lock:
                self._billed += 1

    @property
    def in_flight(self) -> int:
        """How many requests are being answered now."""
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests that were being answered at once."""
        with self._lock:
            return self._max_in_flight

    @property
    def connections_opened(self) -> int:
        """How many TCP connections clients opened (fewer than requests with keep-alive)."""
        with self._lock:
            return self._opened_count

    @property
    def requests(self) -> list[SeenRequest]:
        """The latest requests received, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def last_body(self) -> Any:
        """The body of the latest request, or ``None`` before any."""
        with self._lock:
            return self._requests[-1].body if self._requests else None

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` requests have arrived (or are being answered).

        Returns:
            Whether they arrived within ``timeout`` seconds.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._seen >= count, timeout)

    def wait_for_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered (stalled ones included).

        Returns:
            Whether that happened within ``timeout`` seconds.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._in_flight == 0, timeout)

    # --- request handling (called from the server's threads)

    def _opened(self, connection: Any, thread: threading.Thread) -> None:
        with self._lock:
            self._connections[connection] = thread
            self._opened_count += 1

    def _closed(self, connection: Any) -> None:
        with self._lock:
            self._connections.pop(connection, None)
            self._resets.discard(connection)

    def _is_reset(self, connection: Any) -> bool:
        with self._lock:
            return connection in self._resets

    def _serve(self, handler: _Handler, raw: bytes) -> None:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {name.lower(): value for name, value in handler.headers.items()}
        header_fault = headers.get("x-mock-fault")
        with self._lock:
            self._seen += 1
            number = self._seen
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._requests.append(SeenRequest(handler.command, handler.path, headers, body))
            queued = self._faults.popleft() if self._faults and header_fault is None else None
            self._changed.notify_all()
        handler.request_number = number
        try:
            try:
                fault = parse_fault(header_fault) if header_fault is not None else queued
            except ValueError as exc:
                handler.send_json(400, _error(f"X-Mock-Fault: {exc}", "invalid_request_error"))
                return
            self._answer(handler, number, body, fault or Fault())
        finally:
            with self._lock:
                self._in_flight -= 1
                self._changed.notify_all()

    def _answer(self, handler: _Handler, number: int, body: Any, fault: Fault) -> None:
        delay = self._latency + fault.latency_ms / 1000
        if delay > 0 and self._stopping.wait(delay):
            return
        if fault.reset:
            self._reset(handler)
        elif fault.stall_ms is not None:
            self._hang(handler, fault.stall_ms)
        elif fault.stall_body_ms is not None:
            self._bill(handler)
            handler.send_head(200, 1000)
            handler.wfile.flush()
            self._hang(handler, fault.stall_body_ms)
        elif fault.malformed:
            self._bill(handler)
            handler.send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mes')
        elif fault.status is not None or fault.quota:
            status, error, headers = _fault_reply(fault)
            payload = fault.body if fault.body is not None else json.dumps(error).encode()
            handler.send_bytes(status, payload, headers)
        else:
            self._route(handler, number, body, fault)

    def _route(self, handler: _Handler, number: int, body: Any, fault: Fault) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        if self._api_key is not None:
            expected = f"Bearer {self._api_key}"
            if handler.headers.get("Authorization") != expected:
                handler.send_json(
                    401,
                    _error(
                        "Incorrect API key provided.",
                        "invalid_request_error",
                        None,
                        "invalid_api_key",
                    ),
                )
                return
        if path == "/v1/chat/completions" and handler.command == "POST":
            models = self._models if self._reject_unknown else None
            status, reply = chat_completion(body, number, models)
            if status == 200:
                self._bill(handler)
            if status == 200 and body.get("stream") is True:
                self._stream(handler, stream_chunks(reply, body, fault), fault)
            else:
                handler.send_json(status, reply)
        elif path == "/v1/models" and handler.command == "GET":
            handler.send_json(200, {"object": "list", "data": list(self._model_cards())})
        elif path.startswith("/v1/models/") and handler.command == "GET":
            name = path.removeprefix("/v1/models/")
            card = next((card for card in self._model_cards() if card["id"] == name), None)
            if card is None:
                handler.send_json(
                    404,
                    _error(
                        f"The model '{name}' does not exist",
                        "invalid_request_error",
                        "model",
                        "model_not_found",
                    ),
                )
            else:
                handler.send_json(200, card)
        elif path in ("/v1/chat/completions", "/v1/models"):
            handler.send_json(
                405, _error(f"{handler.command} is not allowed here", "invalid_request_error")
            )
        else:
            handler.send_json(
                404,
                _error(f"Unknown request URL: {handler.command} {path}", "invalid_request_error"),
            )

    def _model_cards(self) -> Iterator[dict[str, Any]]:
        for name in self._models:
            yield {"id": name, "object": "model", "created": _CREATED, "owned_by": "simulator"}

    def _stream(self, handler: _Handler, chunks: list[Any], fault: Fault) -> None:
        """Send ``chunks`` as an event stream, with the stream's faults.

        In chunked transfer encoding on a keep-alive connection, as OpenAI streams; a
        fault that cuts the stream short closes the connection instead.
        """
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("x-request-id", f"req_sim{handler.request_number}")
        handler.end_headers()
        handler.wfile.flush()
        eol = b"\r\n" if fault.crlf else b"\n"
        texts = 0
        for chunk in [*chunks, "[DONE]"]:
            if fault.token_ms and self._stopping.wait(fault.token_ms / 1000):
                return
            data = chunk if isinstance(chunk, str) else json.dumps(chunk, ensure_ascii=False)
            event = b"data: " + data.encode() + eol + eol
            try:
                self._write(handler, event, fault.split)
            except OSError:
                handler.close_connection = True
                return  # the client left
            delta = (
                chunk["choices"][0]["delta"] if isinstance(chunk, dict) and chunk["choices"] else {}
            )
            texts += bool(delta.get("content") or delta.get("tool_calls"))
            if texts == 1:
                if fault.stream_error:
                    error = _error("Simulated error mid-stream", "server_error")
                    handler.close_connection = True
                    with contextlib.suppress(OSError):
                        self._write(handler, b"data: " + json.dumps(error).encode() + eol + eol, 0)
                    return
                if fault.stream_stall_ms is not None:
                    self._hang(handler, fault.stream_stall_ms)
                    return
        with contextlib.suppress(OSError):
            self._write(handler, b"", fault.split)  # the last chunk: the body's end

    @staticmethod
    def _write(handler: _Handler, data: bytes, split: int) -> None:
        """Write ``data`` as one chunk of a chunked body, in writes of ``split`` bytes."""
        data = b"%x\r\n%s\r\n" % (len(data), data)
        step = split or len(data)
        for start in range(0, len(data), step):
            handler.wfile.write(data[start : start + step])
            handler.wfile.flush()

    def _reset(self, handler: _Handler) -> None:
        # SO_LINGER with a zero timeout turns close() into a TCP reset.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.close_connection = True
        with self._lock:
            self._resets.add(handler.connection)

    def _hang(self, handler: _Handler, milliseconds: int) -> None:
        """Wait until the client leaves, the server stops or the time is up; then hang up."""
        handler.close_connection = True
        connection = handler.connection
        remaining = milliseconds / 1000
        step = 0.05
        while remaining > 0 and not self._stopping.is_set():
            readable, _, _ = select.select([connection], [], [], min(step, remaining))
            remaining -= step
            if readable:
                try:
                    if not connection.recv(1, socket.MSG_PEEK):
                        return  # the client closed its end
                except OSError:
                    return


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM (``theater-py mock-openai``).

    Prints the base URL on one line once listening.

    Args:
        argv: the command-line arguments, without the program name.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="theater-py mock-openai", description="Serve an offline OpenAI-compatible API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="require the bearer key held by this environment variable (kept out of `ps`)",
    )
    parser.add_argument("--latency-ms", type=int, default=0, help="delay added to every reply")
    args = parser.parse_args(argv)
    api_key = args.api_key
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            parser.error(f"--api-key-env: environment variable {args.api_key_env} is not set")
    done = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, lambda *_: done.set())
    try:
        with OpenAISimulator(args.host, args.port, api_key, args.latency_ms) as simulator:
            print(simulator.base_url, flush=True)
            done.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
