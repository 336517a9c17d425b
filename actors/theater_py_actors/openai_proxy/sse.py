"""An incremental reader of Server-Sent Events, fed the bytes of a response as they come.

Our own, small, rather than ``requests-sse`` or ``sseclient-py``: both read through
``requests``' line iterators or their own read loop, so neither lets the proxy bound each
read (the idle timeout), stop on a cancelled call, or see a transport error as an error
(``requests-sse`` ends the stream quietly on one, which would pass a cut answer off as a
complete one). A parser that is only fed bytes leaves the reading to the caller.

What it survives, each tested: LF, CRLF and CR line endings (a CR at the end of one read
waits for the next, which may start with its LF); events split across reads at any byte,
inside a UTF-8 character too (a line is decoded only once whole, and a line ends at an
ASCII byte); multi-line ``data:`` (joined by ``\\n``); comments (keep-alives); a BOM; a
last event whose blank line never came (kept if its lines were whole).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

import attrs

__all__ = ["SSEParser", "SSETooLarge", "ServerSentEvent"]

_LINE_END: Final = re.compile(rb"[\r\n]")
_BOM: Final = b"\xef\xbb\xbf"


@attrs.define
class ServerSentEvent:
    """One event: its ``event`` type (``message`` unless named) and its ``data`` lines
    joined by ``\\n``.

    Not frozen, to be made in a third of the time (a stream has an event per token);
    nothing changes one once parsed.
    """

    data: str
    event: str = "message"


def _data_events_end(buffer: bytes) -> int:
    """Where the whole events at the start of ``buffer`` end, if they are only events of
    one ``data: `` line each, LF-ended (the usual stream); else 0.

    Counted in C: every LF before the end is one of the two of a blank line followed by
    ``data: `` exactly when there are twice as many LFs as such blank lines.
    """
    end = buffer.rfind(b"\n\n")
    if end <= 0 or not buffer.startswith(b"data: ") or b"\r" in buffer:
        return 0
    events_after_first = buffer.count(b"\n\ndata: ", 0, end)
    return end if buffer.count(b"\n", 0, end) == 2 * events_after_first else 0


class SSETooLarge(ValueError):
    """A line grew past the parser's limit without ending (a hostile or broken server).

    ``events`` are the whole events the same read completed before it, in order: they
    were received, and go on before the error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.events: list[ServerSentEvent] = []


class SSEParser:
    """Turn the bytes of an ``text/event-stream`` body into events, however they are split.

    Args:
        max_line_bytes: the longest line kept waiting for its end; past it, :meth:`feed`
            raises :class:`SSETooLarge` rather than grow without bound.
    """

    __slots__ = ("_buffer", "_data", "_event", "_max", "_started")

    def __init__(self, max_line_bytes: int = 32 * 1024 * 1024) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._max = max_line_bytes
        self._started = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Read ``chunk``, the next bytes of the body; return the events it completes.

        Raises:
            SSETooLarge: with the events completed before the line too long.
        """
        events: list[ServerSentEvent] = []
        try:
            events.extend(self.events(chunk))  # keeps what came before an exception
        except SSETooLarge as too_large:
            too_large.events = events
            raise
        return events

    def events(self, chunk: bytes) -> Iterator[ServerSentEvent]:
        """Read ``chunk`` as :meth:`feed` does, yielding each event as soon as its blank
        line is read: the first of a large read is handed on before the rest is parsed.

        Read it to its end before the next call (the parser's state is kept as it goes).
        """
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started:
            started = self._start(buffer)
            if started is None:
                return
            buffer = started
        self._buffer = b""
        if not self._data and not self._event:
            whole = _data_events_end(buffer)
            if whole:
                # The usual read: whole events of one "data: " line each, decoded at once.
                for text in buffer[:whole].decode("utf-8", "replace").split("\n\n"):
                    yield ServerSentEvent(text[6:])
                buffer = buffer[whole + 2 :]
        if b"\r" not in buffer:
            yield from self._lf_events(buffer)
        else:
            events: list[ServerSentEvent] = []
            for line in self._lines(buffer):
                self._line(line, events)
                if events:
                    yield events.pop()
        if len(self._buffer) > self._max:
            raise SSETooLarge(f"an event-stream line exceeds {self._max} bytes")

    def _lf_events(self, buffer: bytes) -> Iterator[ServerSentEvent]:
        """The events of ``buffer``, which has no CR (as most servers send): split in C,
        and the usual lines (data, blank) read here rather than in a call per line."""
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        data = self._data
        events: list[ServerSentEvent] = []
        for line in lines:
            if line.startswith(b"data: "):
                data.append(line[6:].decode("utf-8", "replace"))
            elif line:
                self._line(line, events)
            else:  # a blank line ends the event, if there is one
                if data:
                    text = data[0] if len(data) == 1 else "\n".join(data)
                    self._data = data = []
                    yield ServerSentEvent(text, self._event or "message")
                self._event = ""

    def _start(self, buffer: bytes) -> bytes | None:
        """The first bytes: without a BOM, or ``None`` while they may still be one."""
        if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
            self._buffer = buffer
            return None
        self._started = True
        return buffer[len(_BOM) :] if buffer.startswith(_BOM) else buffer

    def _lines(self, buffer: bytes) -> Iterator[bytes]:
        """The whole lines of ``buffer`` (which has a CR); what follows the last one waits
        for the next read."""
        position, size = 0, len(buffer)
        search = _LINE_END.search
        while True:
            found = search(buffer, position)
            if found is None:
                break
            end = found.start()
            if buffer[end] == 0x0D:  # CR: alone, or the start of a CRLF
                if end + 1 == size:
                    break  # the LF, if any, is in the next read
                after = end + 2 if buffer[end + 1] == 0x0A else end + 1
            else:
                after = end + 1
            yield buffer[position:end]
            position = after
        self._buffer = buffer[position:]

    def finish(self) -> list[ServerSentEvent]:
        """The body ended: return the last event if its lines were whole (a server that
        closes without the final blank line); a line cut short is dropped."""
        events: list[ServerSentEvent] = []
        if self._buffer.endswith(b"\r"):  # a whole line, whose LF never came
            self._line(self._buffer[:-1], events)
        self._buffer = b""
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, events: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data:
                events.append(ServerSentEvent("\n".join(self._data), self._event or "message"))
            self._data = []
            self._event = ""
            return
        if raw[0] == 0x3A:  # ":" a comment, such as a keep-alive
            return
        if raw.startswith(b"data: "):  # most lines: the same as below, decoded once
            self._data.append(raw[6:].decode("utf-8", "replace"))
            return
        line = raw.decode("utf-8", "replace")
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        # id and retry serve reconnection, which a completion never does: ignored.
