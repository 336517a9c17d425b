"""Tests of theater_py.serde: serde's JSON shapes, strictness, and error paths."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal, TypeAlias

import attrs
import pytest
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from theater_py import serde
from theater_py.errors import MessageDecodeError

# -- example types, registered once on the shared converter -----------------------------


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Point:
    x: int
    y: int


@attrs.frozen
class Ping:
    """A unit variant."""


@attrs.frozen
class Move:
    to: Point
    speed: float | None = None


@attrs.frozen
class Reason:
    """A newtype variant."""

    value: str


Command: TypeAlias = Ping | Move | Reason


@attrs.frozen
class Circle:
    radius: float


@attrs.frozen
class Square:
    side: float
    colour: Colour = Colour.RED


@attrs.frozen
class Blank:
    """A tagged member with no fields."""


Shape: TypeAlias = Circle | Square | Blank


@attrs.frozen
class Drawing:
    shapes: list[Shape]
    title: str | None = None
    background: Shape | None = None
    kind: str = attrs.field(default="drawing", metadata=serde.key("type"))
    mime_type: str | None = attrs.field(default=None, metadata=serde.key("mimeType"))
    layer: int | None = attrs.field(default=None, metadata=serde.extension())
    author: str | None = attrs.field(default=None, metadata=serde.extension(json_key="authorName"))
    extra: serde.JsonObject | None = None
    payload: serde.Json = None


serde.register_externally_tagged(
    Command, {Ping: "Ping", Move: "Move", Reason: "other"}, newtypes=(Reason,)
)
serde.register_internally_tagged(Shape, {Circle: "circle", Square: "square", Blank: "blank"})


@attrs.frozen
class Limits:
    max_retries: int = 3
    factor: float = 2.0


@attrs.frozen
class Settings:
    name: str
    mode: Literal["fast", "slow"] = "fast"
    limits: Limits = attrs.field(factory=Limits)
    tags: list[str] = attrs.field(factory=list)
    enabled: bool | None = None


def decode_error(value: Any, cls: Any) -> MessageDecodeError:
    with pytest.raises(MessageDecodeError) as info:
        serde.structure(value, cls)
    return info.value


def config_error(value: Any, cls: Any) -> MessageDecodeError:
    with pytest.raises(MessageDecodeError) as info:
        serde.structure_config(value, cls)
    return info.value


# -- externally tagged -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "wire"),
    [
        (Ping(), "Ping"),
        (Move(Point(1, 2), 0.5), {"Move": {"to": {"x": 1, "y": 2}, "speed": 0.5}}),
        (Move(Point(1, 2)), {"Move": {"to": {"x": 1, "y": 2}, "speed": None}}),
        (Reason("content_filter"), {"other": "content_filter"}),
    ],
)
def test_externally_tagged_round_trip(obj: Any, wire: Any) -> None:
    """Unit, struct and newtype variants read and write serde's default enum form."""
    assert serde.unstructure(obj, Command) == wire
    assert serde.structure(wire, Command) == obj


def test_a_variant_keeps_its_wire_form_on_its_own() -> None:
    """A variant written without its union, or read as its own class, keeps the tagged form."""
    assert serde.unstructure(Ping()) == "Ping"
    assert serde.unstructure(Reason("x")) == {"other": "x"}
    assert serde.structure({"Move": {"to": {"x": 0, "y": 0}}}, Move) == Move(Point(0, 0))
    error = decode_error("Ping", Move)
    assert "expected the variant Move" in error.reason


def test_unit_variant_also_reads_as_an_object_with_null() -> None:
    """serde accepts ``{"Ping": null}`` for a unit variant, and so do we."""
    assert serde.structure({"Ping": None}, Command) == Ping()


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("Pong", 'expected one of "Ping", "Move", "other", got "Pong"'),
        ({"Pong": {}}, 'unknown variant "Pong"'),
        ("Move", "the variant Move needs a value"),
        ({"Ping": None, "Move": {}}, "or an object with one of them as its only key"),
        (5, "got 5"),
    ],
)
def test_externally_tagged_bad_variant(wire: Any, reason: str) -> None:
    """A wrong variant is an error that says which variants there are."""
    error = decode_error(wire, Command)
    assert error.path == ""
    assert reason in error.reason


def test_externally_tagged_error_path_starts_with_the_variant() -> None:
    """An error inside a struct variant names the variant, then the field."""
    error = decode_error({"Move": {"to": {"x": 1, "y": "2"}}}, Command)
    assert error.path == "Move.to.y"
    assert error.reason == 'expected an integer, got "2"'
    assert str(error) == 'Move.to.y: expected an integer, got "2"'


def test_newtype_variant_error_names_the_variant() -> None:
    error = decode_error({"other": 5}, Command)
    assert (error.path, error.reason) == ("other", "expected a string, got 5")


def test_optional_externally_tagged_union() -> None:
    """``Command | None`` keeps the tagged form (and reads null as None)."""
    assert serde.structure(None, Command | None) is None
    assert serde.structure("Ping", Command | None) == Ping()
    assert serde.unstructure(Reason("x"), Command | None) == {"other": "x"}
    assert serde.unstructure(None, Command | None) is None


# -- internally tagged -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "wire"),
    [
        (Circle(1.5), {"type": "circle", "radius": 1.5}),
        (Square(2, Colour.BLUE), {"type": "square", "side": 2, "colour": "blue"}),
        (Blank(), {"type": "blank"}),
    ],
)
def test_internally_tagged_round_trip(obj: Any, wire: Any) -> None:
    assert serde.unstructure(obj, Shape) == wire
    assert serde.structure(wire, Shape) == obj
    assert serde.unstructure(obj) == wire  # a member on its own keeps its tag


def test_optional_internally_tagged_union_keeps_the_tag() -> None:
    """``Shape | None`` is a different union to cattrs (cattrs#345): the tag must survive."""
    drawing = Drawing([], background=Square(1))
    wire = serde.unstructure(drawing)
    assert wire["background"] == {"type": "square", "side": 1, "colour": "red"}
    assert serde.structure(wire, Drawing) == drawing
    assert serde.structure({"shapes": [], "background": None}, Drawing).background is None


def test_unknown_tag_is_named() -> None:
    error = decode_error(
        {"shapes": [{"type": "circle", "radius": 1}, {"type": "hexagon"}]}, Drawing
    )
    assert error.path == "shapes[1].type"
    assert error.reason.startswith('unknown type "hexagon", expected one of "circle"')


def test_missing_tag_is_named() -> None:
    error = decode_error({"shapes": [{"radius": 1}]}, Drawing)
    assert (error.path, error.reason) == ("shapes[0].type", "required field missing")


@pytest.mark.parametrize("tag", [5, None, ["circle"]])
def test_a_tag_of_the_wrong_type_is_unknown(tag: Any) -> None:
    error = decode_error({"type": tag, "radius": 1}, Shape)
    assert error.path == "type"
    assert error.reason.startswith("unknown type")


def test_tagged_member_that_is_not_an_object() -> None:
    error = decode_error({"shapes": ["circle"]}, Drawing)
    assert (error.path, error.reason) == ("shapes[0]", 'expected an object, got "circle"')


# -- fields: null, absent, unknown, renamed, extensions ----------------------------------


def test_core_keys_are_always_written_and_extensions_only_when_set() -> None:
    wire = serde.unstructure(Drawing([]))
    assert wire == {
        "shapes": [],
        "title": None,
        "background": None,
        "type": "drawing",
        "mimeType": None,
        "extra": None,
        "payload": None,
    }
    wire = serde.unstructure(Drawing([], layer=0, author="ann"))
    assert wire["layer"] == 0  # 0 is a value, not an absence
    assert wire["authorName"] == "ann"
    assert "author" not in wire


@pytest.mark.parametrize("present", [False, True])
def test_absent_and_null_read_the_same(present: bool) -> None:
    wire: dict[str, Any] = {"shapes": []}
    if present:
        wire |= {"title": None, "layer": None, "authorName": None, "mimeType": None}
    assert serde.structure(wire, Drawing) == Drawing([])


def test_renamed_keys_read_and_write_under_their_json_name() -> None:
    wire = {"shapes": [], "type": "sketch", "mimeType": "image/png", "authorName": "bo"}
    drawing = serde.structure(wire, Drawing)
    assert (drawing.kind, drawing.mime_type, drawing.author) == ("sketch", "image/png", "bo")
    out = serde.unstructure(drawing)
    assert (out["type"], out["mimeType"], out["authorName"]) == ("sketch", "image/png", "bo")


def test_error_paths_use_json_keys() -> None:
    assert decode_error({"shapes": [], "mimeType": 1}, Drawing).path == "mimeType"
    assert decode_error({"shapes": [], "authorName": 1}, Drawing).path == "authorName"


def test_unknown_keys_are_ignored() -> None:
    """An old reader ignores keys a newer writer added."""
    wire = {"shapes": [{"type": "circle", "radius": 1, "border": 2}], "zoom": 3}
    assert serde.structure(wire, Drawing) == Drawing([Circle(1)])


def test_json_values_pass_through_uncopied() -> None:
    payload = {"deep": [1, {"x": None}]}
    extra = {"k": "v"}
    drawing = serde.structure({"shapes": [], "payload": payload, "extra": extra}, Drawing)
    assert drawing.payload is payload
    assert drawing.extra is extra
    out = serde.unstructure(drawing)
    assert out["payload"] is payload
    assert out["extra"] is extra


def test_json_object_must_be_an_object() -> None:
    error = decode_error({"shapes": [], "extra": [1]}, Drawing)
    assert (error.path, error.reason) == ("extra", "expected an object, got [1]")


def test_missing_required_field() -> None:
    error = decode_error({"Move": {"to": {"x": 1}}}, Command)
    assert (error.path, error.reason) == ("Move.to.y", "required field missing")
    error = decode_error({"x": 1}, Point)
    assert (error.path, error.reason) == ("y", "required field missing")


# -- strict primitives ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ({"x": "5", "y": 0}, 'expected an integer, got "5"'),
        ({"x": True, "y": 0}, "expected an integer, got true"),
        ({"x": 1.5, "y": 0}, "expected an integer, got 1.5"),
        ({"x": None, "y": 0}, "expected an integer, got null"),
    ],
)
def test_integers_are_strict(wire: Any, reason: str) -> None:
    error = decode_error(wire, Point)
    assert (error.path, error.reason) == ("x", reason)


def test_strings_numbers_and_booleans_are_strict() -> None:
    assert decode_error({"shapes": [], "title": 5}, Drawing).reason == "expected a string, got 5"
    assert (
        decode_error({"type": "circle", "radius": "1"}, Circle).reason
        == 'expected a number, got "1"'
    )
    assert (
        decode_error({"type": "circle", "radius": False}, Circle).reason
        == "expected a number, got false"
    )
    error = decode_error({"name": "n", "enabled": 1}, Settings)
    assert (error.path, error.reason) == ("enabled", "expected true or false, got 1")


def test_an_integer_number_stays_an_integer() -> None:
    """A number goes out exactly as it came in: ``2`` is not rewritten as ``2.0``."""
    circle = serde.structure({"type": "circle", "radius": 2}, Circle)
    assert serde.dumps(circle) == b'{"radius":2,"type":"circle"}'


def test_enums_and_literals_are_strict() -> None:
    error = decode_error({"type": "square", "side": 1, "colour": "green"}, Shape)
    assert error.path == "colour"
    assert error.reason == 'expected one of "red", "blue", got "green"'
    error = decode_error({"name": "n", "mode": "medium"}, Settings)
    assert error.reason == 'expected one of "fast", "slow", got "medium"'
    assert serde.unstructure(Colour.BLUE) == "blue"
    assert type(serde.unstructure(Colour.BLUE)) is str


def test_lists_must_be_arrays() -> None:
    """cattrs would read the string "ab" as the list ["a", "b"]."""
    error = decode_error({"name": "n", "tags": "ab"}, Settings)
    assert (error.path, error.reason) == ("tags", 'expected an array, got "ab"')


def test_an_object_must_be_an_object() -> None:
    error = decode_error("a string", Point)
    assert (error.path, error.reason) == ("", 'expected an object, got "a string"')


def test_long_bad_values_are_shortened() -> None:
    error = decode_error({"x": "z" * 500, "y": 0}, Point)
    assert len(error.reason) < 100
    assert error.reason.endswith('..."') or error.reason.endswith("...")


# -- configuration mode -----------------------------------------------------------------


def test_config_unknown_key_is_an_error_that_names_it() -> None:
    error = config_error({"name": "n", "limits": {"max_retrys": 1}}, Settings)
    assert (error.path, error.reason) == ("limits.max_retrys", "unknown key")


def test_config_several_unknown_keys() -> None:
    error = config_error({"name": "n", "b": 1, "a": 2}, Settings)
    assert (error.path, error.reason) == ("a", "unknown key (also b)")


def test_config_is_strict_and_fills_defaults() -> None:
    assert serde.structure_config({"name": "n"}, Settings) == Settings("n")
    error = config_error({"name": "n", "limits": {"factor": "2"}}, Settings)
    assert (error.path, error.reason) == ("limits.factor", 'expected a number, got "2"')
    error = config_error({"limits": {}}, Settings)
    assert (error.path, error.reason) == ("name", "required field missing")


def test_a_strict_converter_reads_tagged_unions() -> None:
    """The tag is no field of the member, so forbidding extra keys must not trip on it."""
    conv = serde.make_converter(forbid_extra_keys=True)
    union: Any = Circle | Blank
    serde.register_internally_tagged(union, {Circle: "circle", Blank: "blank"}, conv)
    assert conv.structure({"type": "circle", "radius": 1}, union) == Circle(1)
    assert conv.structure({"type": "blank"}, union) == Blank()
    with pytest.raises(ClassValidationError) as info:
        conv.structure({"type": "circle", "radius": 1, "rim": 2}, union)
    (extra,) = info.value.exceptions
    assert isinstance(extra, ForbiddenExtraKeysError)
    assert extra.extra_fields == {"rim"}


def test_the_message_converter_ignores_what_config_refuses() -> None:
    assert serde.structure({"name": "n", "surplus": 1}, Settings) == Settings("n")


# -- loads and dumps --------------------------------------------------------------------


def test_loads_and_dumps_round_trip() -> None:
    drawing = Drawing([Circle(1.25), Blank()], title="café ☕", layer=2)
    data = serde.dumps(drawing)
    assert isinstance(data, bytes)
    assert b" " not in data.replace("café ☕".encode(), b"")  # compact
    assert "café ☕".encode() in data  # UTF-8, not \u escapes
    assert serde.loads(data, Drawing) == drawing
    assert serde.loads(data.decode(), Drawing) == drawing
    assert json.loads(data) == serde.unstructure(drawing)


@pytest.mark.parametrize("data", [b"{", b"\xff\xfe{", "NaN", '{"x": Infinity, "y": 0}', b""])
def test_loads_rejects_what_is_not_json(data: bytes | str) -> None:
    with pytest.raises(MessageDecodeError) as info:
        serde.loads(data, Point)
    assert info.value.path == ""
    assert info.value.reason.startswith("invalid JSON")


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        serde.dumps(Circle(float("nan")))


def test_unstructure_without_a_type_passes_plain_json_through() -> None:
    value: Any = {"a": [1, "b", None, True]}
    assert serde.unstructure(value) == value
    assert serde.structure(value, Any) is value


# -- registration mistakes --------------------------------------------------------------


def test_registering_a_union_with_a_member_missing_fails() -> None:
    conv = serde.make_converter()
    with pytest.raises(TypeError, match="give a name to each member"):
        serde.register_internally_tagged(Circle | Square, {Circle: "circle"}, conv)
    with pytest.raises(TypeError, match="share a name"):
        serde.register_externally_tagged(Circle | Square, {Circle: "x", Square: "x"}, conv)
    with pytest.raises(TypeError, match="exactly one field"):
        serde.register_externally_tagged(
            Ping | Point, {Ping: "Ping", Point: "Point"}, conv, newtypes=(Point,)
        )


def test_a_private_converter_does_not_touch_the_shared_one() -> None:
    conv = serde.make_converter()
    serde.register_externally_tagged(Circle | Square, {Circle: "C", Square: "S"}, conv)
    assert conv.unstructure(Circle(1), Circle | Square) == {"C": {"radius": 1}}
    assert serde.unstructure(Circle(1)) == {"type": "circle", "radius": 1}
