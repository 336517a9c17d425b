"""The proxy's stream assembler: chunks in, deltas and the plain reply's body out."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from theater_py_actors.genai_types import Delta, ReasoningDelta, ToolUseDelta
from theater_py_actors.openai_proxy.convert import from_chat_response
from theater_py_actors.openai_proxy.streaming import StreamAssembler, _Redactor

KEY = "sk-abcabd"


def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.sampled_from(["a", "b", "c", "sk-", KEY, "d", KEY[:4], "x"]), max_size=12),
    data=st.data(),
)
def test_the_redactor_masks_a_key_however_the_text_is_cut(
    text: list[str], data: st.DataObject
) -> None:
    whole = "".join(text)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(whole)), max_size=8)))
    pieces = [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
    redactor = _Redactor((KEY,))
    sent = [redactor.feed(piece) for piece in pieces] + [redactor.flush()]
    assert "".join(sent) == whole.replace(KEY, "[redacted]")
    assert all(KEY not in part for part in sent)


def test_an_empty_choices_chunk_and_usage_alone_make_no_delta() -> None:
    assembler = StreamAssembler()
    assert assembler.add({"choices": [], "usage": {"prompt_tokens": 2}}) == []
    assert assembler.add({"id": "x", "choices": [{"index": 0, "delta": {}}]}) == []
    assert not assembler.started
    assert assembler.body()["usage"] == {"prompt_tokens": 2}


def test_a_second_choice_is_ignored_as_a_plain_reply_ignores_it() -> None:
    assembler = StreamAssembler()
    out = assembler.add(
        {
            "choices": [
                {"index": 1, "delta": {"content": "other"}},
                {"index": 0, "delta": {"content": "first"}},
            ]
        }
    )
    assert out == [Delta(0, "first")]


def test_blocks_are_numbered_in_the_order_they_start() -> None:
    assembler = StreamAssembler()
    out = assembler.add(chunk({"reasoning": "hm"}))
    out += assembler.add(chunk({"content": "Hi"}))
    out += assembler.add(
        chunk(
            {
                "tool_calls": [
                    {"index": 3, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}
                ]
            }
        )
    )
    out += assembler.add(chunk({"tool_calls": [{"index": 3, "function": {"arguments": ": 1}"}}]}))
    out += assembler.finish()
    assert out == [
        ReasoningDelta("hm"),
        Delta(1, "Hi"),
        ToolUseDelta(2, id="c1", name="f", input_json='{"a"'),
        ToolUseDelta(2, input_json=": 1}"),
    ]
    completion = assembler.order(from_chat_response(assembler.body(), pricing=None))
    assert [type(part).__name__ for part in completion.content] == ["Thinking", "Text", "ToolUse"]
    assert completion.content[2].input == {"a": 1}  # type: ignore[union-attr]


def test_a_call_without_id_gets_one_and_bad_arguments_stay_raw() -> None:
    assembler = StreamAssembler()
    out = assembler.add(chunk({"tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}))
    assert isinstance(out[0], ToolUseDelta) and out[0].id and out[0].id.startswith("call_")
    completion = from_chat_response(assembler.body(), pricing=None)
    assert completion.content[0].input == "{oops"  # type: ignore[union-attr]
    assert completion.content[0].id == out[0].id  # type: ignore[union-attr]


def test_a_text_that_ends_like_the_key_is_held_then_flushed() -> None:
    assembler = StreamAssembler((KEY,))
    assert assembler.add(chunk({"content": "ask-ab"})) == [Delta(0, "a")]
    assert assembler.finish() == [Delta(0, "sk-ab")]
    assert json.dumps(assembler.body()).count("ask-ab") == 1


_META_CHUNK = {"id": "c1", "model": "m", "system_fingerprint": "fp"}
_SHAPES = [
    chunk({"content": "plain"}),
    chunk({"role": "assistant", "content": "with role"}),
    chunk({"content": ""}),
    chunk({"content": None}),
    chunk({"content": "sk-ab"}),  # held back: it may start the key
    chunk({"content": "cabd and on"}),
    chunk({"content": [{"type": "text", "text": "parts"}]}),
    chunk({"content": "tail"}, usage={"prompt_tokens": 1}),
    chunk({"content": "tools", "tool_calls": [{"index": 0, "id": "t", "function": {}}]}),
    {"choices": [{"index": 0, "delta": {"content": "done"}, "finish_reason": "stop"}]},
    {"choices": [{"index": 1, "delta": {"content": "second choice"}}]},
    {"choices": []},
    {"choices": "junk"},
    chunk({"content": "late"}, id="c2", model="m2", system_fingerprint="fp2"),
    chunk({"content": "later"}, system_fingerprint="fp3"),
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(range(len(_SHAPES))), max_size=12),
    st.sampled_from([_META_CHUNK, {}, {"id": "c1", "model": "m"}]),
)
def test_the_text_fast_path_reads_chunks_as_add_does(
    order: list[int], meta: dict[str, str]
) -> None:
    slow, fast = StreamAssembler((KEY,)), StreamAssembler((KEY,))
    first = chunk({"content": "start"}, **meta)
    assert slow.add(first) == fast.add(first)
    chunks = [_SHAPES[index] for index in order]
    sent_slow: list[tuple[int, str]] = []
    sent_fast: list[tuple[int, str]] = []
    for each in chunks:
        sent_slow += [(d.index, d.text) for d in slow.add(each) if isinstance(d, Delta)]
    position = 0
    while position < len(chunks):
        taken, index, text = fast.add_texts(chunks, position)
        if text:
            sent_fast.append((index, text))
        position += taken
        if position < len(chunks):
            sent_fast += [
                (d.index, d.text) for d in fast.add(chunks[position]) if isinstance(d, Delta)
            ]
            position += 1
    assert _joined(sent_fast) == _joined(sent_slow)  # the same text, in fewer deltas
    assert slow.finish() == fast.finish()
    assert slow.body() == fast.body()
    assert (slow.chunks, slow.partial_text) == (fast.chunks, fast.partial_text)


def _joined(deltas: list[tuple[int, str]]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for index, text in deltas:
        if out and out[-1][0] == index:
            out[-1] = (index, out[-1][1] + text)
        elif text:
            out.append((index, text))
    return out


def test_a_key_cut_across_the_chunks_of_one_read_is_masked() -> None:
    assembler = StreamAssembler((KEY,))
    assembler.add(chunk({"content": "start "}, **_META_CHUNK))
    halves = [chunk({"content": KEY[:5]}), chunk({"content": KEY[5:] + " end"})]
    taken, _, text = assembler.add_texts(halves)
    assert taken == 2
    assert KEY not in assembler.partial_text
    assert "[redacted] end" in text


def test_text_is_read_fast_from_a_provider_that_sends_no_system_fingerprint() -> None:
    assembler = StreamAssembler((KEY,))
    assembler.add(chunk({"content": "a"}, id="c1", model="m"))
    taken, _, text = assembler.add_texts([chunk({"content": "b"}), chunk({"content": "c"})])
    assert (taken, text) == (2, "bc")
