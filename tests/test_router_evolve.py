"""The router's ``evolve``: the same copies as ``attrs.evolve``."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theater_py_actors.genai_types import (
    Completion,
    CompletionRequest,
    CompletionResponse,
    EndTurn,
    ErrorResponse,
    Message,
    RateLimitInfo,
    Text,
    TriedTarget,
    Usage,
)
from theater_py_actors.router.evolve import evolve


@attrs.frozen
class _One:
    value: int


@attrs.frozen
class _Private:
    _secret: str
    shown: int = attrs.field(default=0)
    derived: int = attrs.field(init=False, default=7)


@attrs.frozen
class _Checked:
    value: int = attrs.field(validator=attrs.validators.gt(0))


REQUEST = CompletionRequest(
    model="route",
    messages=[Message.user("hi")],
    max_tokens=None,
    temperature=0.5,
    seed=3,
    metadata={"k": "v"},
)
TRIED = [TriedTarget(target="p:m", outcome="ok", kind=None, ms=3)]


@given(
    model=st.text(max_size=8),
    max_tokens=st.none() | st.integers(min_value=1, max_value=10**6),
)
def test_a_request_copy_equals_attrs_evolve(model: str, max_tokens: int | None) -> None:
    copied = evolve(REQUEST, model=model, max_tokens=max_tokens)

    assert copied == attrs.evolve(REQUEST, model=model, max_tokens=max_tokens)
    assert type(copied) is CompletionRequest
    assert copied.messages is REQUEST.messages  # a shallow copy, as attrs.evolve makes
    assert REQUEST.model == "route"


@pytest.mark.parametrize(
    ("inst", "changes"),
    [
        (ErrorResponse(error="e", kind="timeout", attempts=2), {"tried": TRIED}),
        (ErrorResponse(error="e"), {}),
        (_One(1), {"value": 2}),
        (_One(1), {}),
        (_Private("s", 1), {"secret": "t"}),
        (_Private("s", 1), {"shown": 5}),
    ],
)
def test_any_copy_equals_attrs_evolve(inst: Any, changes: dict[str, Any]) -> None:
    assert evolve(inst, **changes) == attrs.evolve(inst, **changes)


def test_a_reply_copy_keeps_every_field_it_does_not_change() -> None:
    answer = CompletionResponse(
        content=[Text("hello")],
        id="chatcmpl-1",
        model="m",
        stop_reason=EndTurn(),
        usage=Usage(10, 5),
    )
    limits = RateLimitInfo(limit_requests=10, remaining_requests=9)
    reply = Completion(completion=answer, rate_limit=limits)

    copied = evolve(reply, served_by="p:m", tried=TRIED)

    assert copied == Completion(answer, rate_limit=limits, served_by="p:m", tried=TRIED)
    assert copied.completion is answer


def test_a_copy_runs_the_class_checks_and_refuses_unknown_changes() -> None:
    with pytest.raises(ValueError, match="value"):
        evolve(_Checked(1), value=0)
    with pytest.raises(TypeError, match="nope"):
        evolve(_One(1), nope=2)
