"""The proxy's Server-Sent Events parser: every line ending, every split, the odd server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theater_py_actors.openai_proxy.sse import ServerSentEvent, SSEParser, SSETooLarge


def _no_eol(text: str) -> bool:
    return "\n" not in text and "\r" not in text


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)]
    return events + parser.finish()


def datas(*chunks: bytes) -> list[str]:
    return [event.data for event in parse(*chunks)]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes) -> None:
    body = b"data: one" + eol + eol + b"data: two" + eol + eol + b"data: [DONE]" + eol + eol
    assert datas(body) == ["one", "two", "[DONE]"]


def test_a_crlf_split_between_reads_is_one_line_ending() -> None:
    assert datas(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == ["a", "b"]


def test_multi_line_data_is_joined_by_newlines() -> None:
    assert datas(b'data: {"a":\ndata: 1}\n\n') == ['{"a":\n1}']


def test_comments_are_keep_alives_not_events() -> None:
    assert datas(b": ping\n\n:\n\ndata: x\n\n: OPENROUTER PROCESSING\n\n") == ["x"]


def test_event_names_and_fields_without_space() -> None:
    events = parse(b"event: error\ndata:{}\nid: 7\nretry: 10\n\n")
    assert events == [ServerSentEvent("{}", "error")]


def test_a_line_without_colon_is_a_field_with_empty_value() -> None:
    assert datas(b"data\n\n") == [""]


def test_the_end_without_a_blank_line_keeps_a_whole_last_event() -> None:
    assert datas(b"data: a\n\ndata: b\n") == ["a", "b"]
    assert datas(b"data: a\n\ndata: b\r") == ["a", "b"]


def test_a_line_cut_short_at_the_end_is_dropped() -> None:
    assert datas(b'data: a\n\ndata: {"cut') == ["a"]


def test_a_bom_is_skipped_even_split() -> None:
    assert datas(b"\xef\xbb", b"\xbfdata: a\n\n") == ["a"]


def test_an_endless_line_is_refused() -> None:
    parser = SSEParser(max_line_bytes=100)
    with pytest.raises(SSETooLarge, match="100 bytes"):
        for _ in range(20):
            parser.feed(b"x" * 10)


EVENT_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(EVENT_TEXT, min_size=1, max_size=6),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    data=st.data(),
)
def test_any_split_of_any_body_gives_the_same_events(
    texts: list[str], eol: bytes, data: st.DataObject
) -> None:
    """Split at any bytes, inside a UTF-8 character or a CRLF, the events are the same."""
    body = b"".join(b": keep-alive" + eol + b"data: " + text.encode() + eol + eol for text in texts)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(body)), max_size=12)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert datas(*chunks) == texts


def test_events_hands_each_event_on_before_parsing_the_rest_of_the_read():
    parser = SSEParser(max_line_bytes=64)
    events = parser.events(b"data: first\n\n" + b"x" * 100)  # then a line past the limit
    assert next(events).data == "first"
    with pytest.raises(SSETooLarge):
        next(events)


_LINES = st.one_of(
    st.builds(lambda text: b"data: " + text.encode(), st.text(max_size=8).filter(_no_eol)),
    st.builds(lambda text: b"data:" + text.encode(), st.text(max_size=8).filter(_no_eol)),
    st.sampled_from([b"", b"", b"", b": keep-alive", b"event: error", b"id: 7", b"data"]),
)


def _reference(body: bytes) -> list[tuple[str, str]]:
    """The events of an LF-only ``body``, read line by line as the specification says."""
    events: list[tuple[str, str]] = []
    data: list[str] = []
    name = ""
    for raw in body.split(b"\n")[:-1]:
        line = raw.decode("utf-8", "replace")
        if not line:
            if data:
                events.append(("\n".join(data), name or "message"))
            data, name = [], ""
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    return events


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINES, max_size=14), data=st.data())
def test_whole_reads_of_any_lf_body_agree_with_a_line_by_line_reading(
    lines: list[bytes], data: st.DataObject
) -> None:
    """The parser reads a read of whole one-line data events at once: any body, cut
    anywhere, gives the events a line-by-line reading of the specification gives."""
    body = b"\n".join(lines) + b"\n\n"
    cuts = sorted(data.draw(st.sets(st.integers(0, len(body)), max_size=6)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert [(event.data, event.event) for event in parse(*chunks)] == _reference(body)
