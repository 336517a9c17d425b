"""The fake provider every client is measured against, in a process of its own.

Run in a separate process, the server's CPU time never counts as a client's and it does
not compete with the clients for the GIL. Two servers are available:

- ``lean`` (the default): an asyncio HTTP/1.1 keep-alive server that answers every
  ``POST .../chat/completions`` with the same pre-encoded ``chat.completion`` (made once
  by the simulator's :func:`~theater_py_actors.openai_proxy.simulator.chat_completion`, so the shape
  is the simulator's). It parses no body and checks nothing, so its own cost per request
  stays far below any client's; latency is an ``asyncio.sleep``, so 50 connections
  waiting 100 ms each cost it nothing.
  A request whose body asks ``"stream": true`` gets instead a pre-encoded event stream
  (chunked, as OpenAI sends it) of :data:`STREAM_CHUNKS` text chunks: a role chunk, the
  text chunks, a finish chunk, a usage chunk and ``[DONE]``, each event one HTTP chunk,
  all written at once (the stream's rate is the client's, not the server's).
- ``simulator``: :class:`~theater_py_actors.openai_proxy.simulator.OpenAISimulator` itself (a
  thread per connection, full request parsing and validation).

``python -m bench.upstream --latency-ms 100`` prints its base URL on one line once it
listens, and serves until stdin closes or it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["MODEL", "PROMPT", "STREAM_CHUNKS", "STREAM_TEXT", "Upstream", "main"]

MODEL = "gpt-4o"
"""The model every benchmark request names."""

PROMPT = "Hello there"
"""The user text of every benchmark request."""

STREAM_CHUNKS = 200
"""How many text chunks a streamed answer has."""

STREAM_TEXT = " ".join(f"tok{n}" for n in range(STREAM_CHUNKS))
"""The text of a streamed answer: one word per chunk."""

_REPO = Path(__file__).resolve().parent.parent
_STREAMING = re.compile(rb'"stream"\s*:\s*true')


def _canned_response() -> bytes:
    from theater_py_actors.openai_proxy.simulator import chat_completion

    request = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    status, body = chat_completion(request)
    assert status == 200
    payload = json.dumps(body).encode()
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "x-request-id: req_bench\r\n"
        "\r\n"
    )
    return head.encode() + payload


def _canned_stream() -> bytes:
    from theater_py_actors.openai_proxy.simulator import Fault, chat_completion, stream_chunks

    request = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    status, reply = chat_completion(request)
    assert status == 200
    reply["choices"][0]["message"]["content"] = STREAM_TEXT
    chunks = stream_chunks(reply, {"stream_options": {"include_usage": True}}, Fault())
    events = [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks]
    events.append(b"data: [DONE]\n\n")
    head = (
        "HTTP/1.1 200 OK\r\n"
        "Content-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n"
        "Transfer-Encoding: chunked\r\n"
        "x-request-id: req_bench\r\n"
        "\r\n"
    )
    body = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)
    return head.encode() + body + b"0\r\n\r\n"


_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


async def _serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    answer: bytes,
    stream: bytes,
    latency: float,
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if latency:
                await asyncio.sleep(latency)
            if b"/chat/completions" not in head[:200]:
                writer.write(_NOT_FOUND)
            else:
                writer.write(stream if _STREAMING.search(body) else answer)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass  # the client left, or the server is exiting: nobody waits for this connection
    finally:
        writer.close()


async def _serve_lean(port: int, latency: float) -> None:
    answer, stream = _canned_response(), _canned_stream()
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(r, w, answer, stream, latency),
        "127.0.0.1",
        port,
        backlog=256,
    )
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"http://{host}:{bound}/v1", flush=True)
    stdin_closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    async with server:
        await stdin_closed


def _serve_simulator(port: int, latency_ms: int) -> None:
    from theater_py_actors.openai_proxy.simulator import OpenAISimulator

    with OpenAISimulator(port=port, latency_ms=latency_ms) as simulator:
        print(simulator.base_url, flush=True)
        sys.stdin.read()


class Upstream:
    """Run the fake provider in a subprocess; a context manager.

    Args:
        latency_ms: how long it waits before each answer.
        kind: ``lean`` or ``simulator`` (see the module's docstring).
    """

    def __init__(self, latency_ms: int = 0, kind: str = "lean") -> None:
        self.latency_ms = latency_ms
        self.kind = kind
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> Upstream:
        command = [sys.executable, "-m", "bench.upstream", "--latency-ms", str(self.latency_ms)]
        command += ["--kind", self.kind]
        self._process = subprocess.Popen(
            command,
            cwd=_REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(_REPO)},
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the fake provider did not start (it said {line!r})")
        self.base_url = line
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(OSError):
            process.stdin.close()  # the server's signal to stop
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stdin closes; print the base URL first."""
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--kind", choices=("lean", "simulator"), default="lean")
    args = parser.parse_args(argv)
    if args.kind == "simulator":
        _serve_simulator(args.port, args.latency_ms)
    else:
        asyncio.run(_serve_lean(args.port, args.latency_ms / 1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
