"""The one place that knows serde's JSON shapes: a cattrs converter and its helpers.

Rust actors speak the JSON that serde writes, so a Python actor that reads and writes
exactly the same shapes is interchangeable with them. :data:`converter` is the shared
:class:`cattrs.Converter`; the modules that define message types register their hooks on
it at import, with the helpers here:

- :func:`register_externally_tagged`: serde's default enum form, a unit variant as a bare
  string (``"ListModels"``), a struct variant as ``{"GenerateCompletion": {...}}``, a
  newtype variant as ``{"other": "content_filter"}``;
- :func:`register_internally_tagged`: ``#[serde(tag = "type")]``, ``{"type": "text", ...}``.

A union's member keeps that form on its own too: ``unstructure(ListModels())`` is
``"ListModels"``.

Fields of attrs classes follow serde's conventions: ``None`` is ``null``, an absent key
reads as the field's default, unknown keys are ignored (an old reader ignores newer
extensions), and every field is written, except *extension* fields (declared with
:func:`extension`), which are left out while ``None``. :func:`key` gives a field a JSON key
other than its name. Primitives are strict: ``5`` is not a string and ``true`` is not an
integer. Every decoding failure is a :class:`~theater_py.errors.MessageDecodeError` that
names the path of the bad value, such as
``GenerateCompletion.request.messages[2].content[0].type``. :func:`structure_config` reads
configuration, where an unknown key is an error too.
"""

from __future__ import annotations

import enum
import functools
import json
import operator
import types
from collections.abc import Callable, Collection, Mapping
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    overload,
)

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
    StructureHandlerNotFoundError,
)
from cattrs.fns import identity
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union

from theater_py.errors import MessageDecodeError

__all__ = [
    "Json",
    "JsonObject",
    "converter",
    "dumps",
    "extension",
    "key",
    "loads",
    "make_converter",
    "register_externally_tagged",
    "register_internally_tagged",
    "structure",
    "structure_config",
    "unstructure",
]

_T = TypeVar("_T")

_KEY: Final = "theater_py.serde.key"
_EXTENSION: Final = "theater_py.serde.extension"
_JSON: Final = "theater_py.serde.json"

Json = Annotated[Any, _JSON]
"""Any JSON value, passed through as it is in both directions (no copy, no checks)."""

JsonObject = Annotated[dict[str, Any], _JSON]
"""A JSON object passed through as it is; reading anything but an object is an error."""

_NONE_TYPE: Final = type(None)


class _InvalidValueError(ValueError):
    """A value does not fit its type; ``below`` names the key at fault inside it, if any."""

    def __init__(self, reason: str, below: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.below = below


def key(name: str) -> dict[str, str]:
    """Return attrs field metadata that reads and writes the field under another JSON key.

    Use it where the JSON key is not a good Python name:
    ``mime_type: str = attrs.field(metadata=serde.key("mimeType"))``.
    """
    return {_KEY: name}


def extension(*, json_key: str | None = None) -> dict[str, Any]:
    """Return attrs field metadata that marks an extension: omitted while at its default.

    An extension is a key newer writers add: old readers ignore it and old writers leave
    it out, so absent and ``null`` mean the same. Declare it last, defaulting to
    ``None``: ``cost_usd: float | None = attrs.field(default=None,
    metadata=serde.extension())``.

    Args:
        json_key: the JSON key, when it differs from the field's name.
    """
    metadata: dict[str, Any] = {_EXTENSION: True}
    if json_key is not None:
        metadata[_KEY] = json_key
    return metadata


def _describe(value: Any) -> str:
    """Show a bad value the way its JSON reads, capped: it may be a large document."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expect(what: str, value: Any) -> _InvalidValueError:
    return _InvalidValueError(f"expected {what}, got {_describe(value)}")


# -- strict primitives -----------------------------------------------------------------
# cattrs would call str(5) and int(True); serde refuses both, and so do we. The hooks
# sit in cattrs' singledispatch, so they also see str and int subclasses (StrEnum,
# IntEnum): those go to the enum hook.


def _structure_str(value: Any, cls: Any) -> Any:
    if cls is not str:
        return _enum_member(value, cls)
    if isinstance(value, str):
        return value
    raise _expect("a string", value)


def _structure_int(value: Any, cls: Any) -> Any:
    if cls is not int:
        return _enum_member(value, cls)
    if value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _expect("an integer", value)


def _structure_float(value: Any, _: Any) -> Any:
    # An int is kept as it is, so a number goes out exactly as it came in.
    if value.__class__ is float or value.__class__ is int:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise _expect("a number", value)


def _structure_bool(value: Any, _: Any) -> Any:
    if value is True or value is False:
        return value
    raise _expect("true or false", value)


def _choices(values: Collection[Any]) -> str:
    return ", ".join(_describe(value) for value in values)


_ENUM_MEMBERS: dict[type, dict[Any, Any]] = {}


def _enum_member(value: Any, cls: Any) -> Any:
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        return cls(value)  # a plain str or int subclass: what cattrs does
    members = _ENUM_MEMBERS.get(cls)
    if members is None:
        members = _ENUM_MEMBERS.setdefault(cls, {member.value: member for member in cls})
    try:
        member = members[value]
    except (KeyError, TypeError):  # TypeError: an unhashable value, such as a list
        member = None
    # A bool would find the member whose value is 1 or 0.
    if member is None or value.__class__ is bool:
        raise _expect(f"one of {_choices(members)}", value)
    return member


def _is_literal(cls: Any) -> bool:
    return get_origin(cls) is Literal


def _literal_hook(cls: Any) -> Callable[[Any, Any], Any]:
    allowed = get_args(cls)
    expected = f"one of {_choices(allowed)}"

    def structure_literal(value: Any, _: Any) -> Any:
        for choice in allowed:
            if value == choice and value.__class__ is choice.__class__:
                return value
        raise _expect(expected, value)

    return structure_literal


def _is_enum(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, enum.Enum)


# -- JSON pass-through, optionals, containers ------------------------------------------


def _is_json(cls: Any) -> bool:
    return bool(cls == Json)


def _is_json_object(cls: Any) -> bool:
    return bool(cls == JsonObject)


def _structure_json_object(value: Any, _: Any) -> Any:
    if isinstance(value, dict):
        return value
    raise _expect("an object", value)


def _origin(cls: Any) -> Any:
    return get_origin(cls)


def _optional_arg(cls: Any) -> Any:
    """Return ``X`` of ``X | None``, or ``None`` if ``cls`` is not such an optional."""
    if get_origin(cls) not in (Union, types.UnionType):
        return None
    args = get_args(cls)
    if len(args) != 2 or _NONE_TYPE not in args:
        return None
    return args[0] if args[1] is _NONE_TYPE else args[1]


def _install_primitive_hooks(conv: cattrs.Converter) -> None:
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(enum.StrEnum, _enum_member)
    conv.register_structure_hook(enum.IntEnum, _enum_member)
    # cattrs would write a StrEnum member as it is (it is a str); JSON wants the value.
    enum_value = operator.attrgetter("value")
    conv.register_unstructure_hook(enum.StrEnum, enum_value)
    conv.register_unstructure_hook(enum.IntEnum, enum_value)
    conv.register_structure_hook_factory(_is_literal, _literal_hook)
    conv.register_structure_hook_func(_is_enum, _enum_member)
    conv.register_structure_hook_func(_is_json, lambda value, _: value)
    conv.register_unstructure_hook_func(_is_json, identity)
    conv.register_structure_hook_func(_is_json_object, _structure_json_object)
    conv.register_unstructure_hook_func(_is_json_object, identity)


def _install_container_hooks(conv: cattrs.Converter) -> None:
    def optional_structure(cls: Any) -> Callable[[Any, Any], Any]:
        # Bound once here: cattrs' own optional hook looks the inner hook up per call.
        inner = _optional_arg(cls)
        hook = conv.get_structure_hook(inner)

        def structure_optional(value: Any, _: Any) -> Any:
            return None if value is None else hook(value, inner)

        return structure_optional

    def optional_unstructure(cls: Any) -> Callable[[Any], Any]:
        hook = conv.get_unstructure_hook(_optional_arg(cls))
        if hook is identity:  # lets the generated class hooks inline the field
            return identity

        def unstructure_optional(value: Any) -> Any:
            return None if value is None else hook(value)

        return unstructure_optional

    def is_optional(cls: Any) -> bool:
        return _optional_arg(cls) is not None

    conv.register_structure_hook_factory(is_optional, optional_structure)
    conv.register_unstructure_hook_factory(is_optional, optional_unstructure)

    def list_structure(cls: Any) -> Callable[[Any, Any], Any]:
        hook = list_structure_factory(cls, conv)

        def structure_list(value: Any, _: Any) -> Any:
            # cattrs would take any iterable, and read "abc" as ["a", "b", "c"].
            if value.__class__ is list or isinstance(value, list | tuple):
                return hook(value, cls)
            raise _expect("an array", value)

        return structure_list

    def dict_structure(cls: Any) -> Callable[[Any, Any], Any]:
        hook = conv.gen_structure_mapping(cls)

        def structure_dict(value: Any, _: Any) -> Any:
            if isinstance(value, Mapping):
                return hook(value, cls)
            raise _expect("an object", value)

        return structure_dict

    conv.register_structure_hook_factory(lambda cls: _origin(cls) is list, list_structure)
    conv.register_structure_hook_factory(lambda cls: _origin(cls) is dict, dict_structure)


def _install_attrs_hooks(conv: cattrs.Converter) -> None:
    def attrs_structure(cls: Any) -> Callable[[Any, Any], Any]:
        attrs.resolve_types(cls)
        renames: dict[str, Any] = {
            field.name: override(rename=field.metadata[_KEY])
            for field in attrs.fields(cls)
            if _KEY in field.metadata
        }
        hook = make_dict_structure_fn(cls, conv, **renames)

        def structure_attrs(value: Any, _: Any) -> Any:
            # Checked here, or a string would fail once per field with a puzzling reason.
            if value.__class__ is dict or isinstance(value, Mapping):
                return hook(value, cls)
            raise _expect("an object", value)

        return structure_attrs

    def attrs_unstructure(cls: Any) -> Callable[[Any], Any]:
        attrs.resolve_types(cls)
        overrides: dict[str, Any] = {
            field.name: override(
                rename=field.metadata.get(_KEY),
                omit_if_default=field.metadata.get(_EXTENSION),
            )
            for field in attrs.fields(cls)
            if _KEY in field.metadata or _EXTENSION in field.metadata
        }
        return make_dict_unstructure_fn(cls, conv, **overrides)

    conv.register_structure_hook_factory(attrs.has, attrs_structure)
    conv.register_unstructure_hook_factory(attrs.has, attrs_unstructure)


def make_converter(*, forbid_extra_keys: bool = False) -> cattrs.Converter:
    """Make a converter that reads and writes serde-shaped JSON.

    Args:
        forbid_extra_keys: make an unknown key of an object an error, as for
            configuration, where a misspelt key must not pass silently.

    Returns:
        A new converter with strict primitives, :func:`key` and :func:`extension`
        honoured, and the JSON pass-through types. Tagged unions are registered per
        converter, with the ``register_*`` helpers.
    """
    conv = cattrs.Converter(forbid_extra_keys=forbid_extra_keys, detailed_validation=True)
    _install_container_hooks(conv)
    _install_primitive_hooks(conv)
    _install_attrs_hooks(conv)
    return conv


converter: Final[cattrs.Converter] = make_converter()
"""The shared converter: message types register their hooks on it at import."""

_config_converter: Final[cattrs.Converter] = make_converter(forbid_extra_keys=True)


# -- tagged unions ---------------------------------------------------------------------


def _check_members(union: Any, names: Mapping[type, str]) -> tuple[type, ...]:
    members = get_args(union)
    if get_origin(union) not in (Union, types.UnionType) or set(members) != set(names):
        raise TypeError(f"{union!r}: give a name to each member of the union, and only them")
    if len(set(names.values())) != len(names):
        raise TypeError(f"{union!r}: two variants share a name")
    return cast("tuple[type, ...]", members)


def _register_union(
    conv: cattrs.Converter,
    union: Any,
    structure_union: Callable[[Any, Any], Any],
    unstructure_union: Callable[[Any], Any],
) -> None:
    """Register a union's hooks, for ``union | None`` too, and for its members."""
    conv.register_structure_hook(union, structure_union)
    conv.register_unstructure_hook(union, unstructure_union)
    # cattrs treats ``A | B | None`` as a different union and would drop the tag (#345).
    optional = Union[union, None]  # noqa: UP007 -- a runtime union of a union value

    def structure_optional(value: Any, _: Any) -> Any:
        return None if value is None else structure_union(value, union)

    def unstructure_optional(value: Any) -> Any:
        return None if value is None else unstructure_union(value)

    conv.register_structure_hook_func(lambda cls: cls == optional, structure_optional)
    conv.register_unstructure_hook_func(lambda cls: cls == optional, unstructure_optional)
    # A variant written on its own (a reply typed as one member) keeps its wire form.
    for member in get_args(union):
        conv.register_unstructure_hook(member, unstructure_union)
        conv.register_structure_hook(member, _member_hook(structure_union, union, member))


def _member_hook(
    structure_union: Callable[[Any, Any], Any], union: Any, member: type
) -> Callable[[Any, Any], Any]:
    def structure_member(value: Any, _: Any) -> Any:
        result = structure_union(value, union)
        if not isinstance(result, member):
            raise _InvalidValueError(
                f"expected the variant {member.__name__}, got {_describe(value)}"
            )
        return result

    return structure_member


def register_internally_tagged(
    union: Any,
    tags: Mapping[type, str],
    conv: cattrs.Converter = converter,
    *,
    tag: str = "type",
) -> None:
    """Read and write ``union`` as serde's internally tagged enum: ``{"type": "text", ...}``.

    Register the members' own field types first: the members' hooks are made here.

    Args:
        union: a union of attrs classes.
        tags: each member's tag (``{Text: "text"}``).
        conv: the converter to register on.
        tag: the key that holds the tag.

    Raises:
        TypeError: ``tags`` does not name every member of ``union`` exactly once.
    """
    _check_members(union, tags)
    # Members' hooks are taken before configure_tagged_union registers on the union.
    by_tag = {name: (member, conv.get_structure_hook(member)) for member, name in tags.items()}
    configure_tagged_union(union, conv, tag_generator=tags.__getitem__, tag_name=tag)
    expected = f"one of {_choices(tags.values())}"
    # The tag is no field of the member: a converter that forbids extra keys must not see it.
    drop_tag = getattr(conv, "forbid_extra_keys", False)

    def structure_union(value: Any, _: Any) -> Any:
        # cattrs reports a missing or unknown tag as a bare KeyError ("required field
        # missing"), so the tag is read here, which also saves two calls per value.
        if value.__class__ is not dict and not isinstance(value, Mapping):
            raise _expect("an object", value)
        found: Any = value.get(tag)
        try:
            member, hook = by_tag[found]
        except (KeyError, TypeError):  # TypeError: an unhashable tag, such as a list
            if tag not in value:
                raise _InvalidValueError("required field missing", tag) from None
            raise _InvalidValueError(
                f"unknown {tag} {_describe(found)}, expected {expected}", tag
            ) from None
        if drop_tag:
            value = {key: item for key, item in value.items() if key != tag}
        return hook(value, member)

    _register_union(conv, union, structure_union, conv.get_unstructure_hook(union))


def register_externally_tagged(
    union: Any,
    variants: Mapping[type, str],
    conv: cattrs.Converter = converter,
    *,
    newtypes: Collection[type] = (),
) -> None:
    """Read and write ``union`` as serde's default (externally tagged) enum.

    A member with no fields is a unit variant, a bare string (``"ListModels"``); a member
    listed in ``newtypes`` has one field and is written ``{"other": <that field>}``; any
    other member is a struct variant, ``{"GenerateCompletion": {...its fields...}}``. A
    unit variant that grew :func:`extension` fields (and has no other) reads both ways, and
    is written as the bare string while they are all absent, so old readers still read it.
    Register the members' own field types first: the members' hooks are made here.

    Args:
        union: a union of attrs classes.
        variants: each member's variant name (``{ListModels: "ListModels"}``).
        conv: the converter to register on.
        newtypes: the members that wrap a single value (``Other(String)`` in Rust).

    Raises:
        TypeError: ``variants`` does not name every member of ``union`` exactly once, or
            a member in ``newtypes`` does not have exactly one field.
    """
    members = _check_members(union, variants)
    readers: dict[str, Callable[[Any], Any]] = {}
    writers: dict[type, Callable[[Any], Any]] = {}
    units: dict[str, type] = {}
    for member in members:
        name = variants[member]
        fields = attrs.fields(member)
        if member in newtypes:
            if len(fields) != 1:
                raise TypeError(f"newtype variant {member.__name__} needs exactly one field")
            attrs.resolve_types(member)
            readers[name], writers[member] = _newtype_hooks(conv, member, name, fields[0])
        elif not fields:
            units[name] = member
            writers[member] = functools.partial(_unit_name, name)
        elif all(_EXTENSION in field.metadata for field in fields):
            units[name] = member
            readers[name], write = _struct_hooks(conv, member, name)
            writers[member] = functools.partial(_unit_unless_extended, name, write)
        else:
            readers[name], writers[member] = _struct_hooks(conv, member, name)
    expected = f"one of {_choices(variants.values())}"

    def structure_union(value: Any, _: Any) -> Any:
        if value.__class__ is str:
            unit = units.get(value)
            if unit is not None:
                return unit()
            if value in readers:
                raise _InvalidValueError(
                    f"the variant {value} needs a value: {{{_describe(value)}: ...}}"
                )
            raise _expect(expected, value)
        if not isinstance(value, dict) or len(value) != 1:
            raise _expect(f"{expected}, or an object with one of them as its only key", value)
        ((name, body),) = value.items()
        if body is None and name in units:  # serde also reads {"ListModels": null}
            return units[name]()
        reader = readers.get(name)
        if reader is None:
            raise _InvalidValueError(f"unknown variant {_describe(name)}, expected {expected}")
        try:
            return reader(body)
        except Exception as exc:  # noqa: BLE001 -- re-raised with the variant's name
            exc.add_note(AttributeValidationNote(f"Structuring variant {name}", name, union))
            raise ClassValidationError(f"While structuring {name}", [exc], union) from None

    def unstructure_union(value: Any) -> Any:
        return writers[value.__class__](value)

    _register_union(conv, union, structure_union, unstructure_union)


def _unit_name(name: str, _: Any) -> str:
    return name


def _unit_unless_extended(name: str, write: Callable[[Any], Any], value: Any) -> Any:
    written = write(value)
    return name if not written[name] else written


def _struct_hooks(
    conv: cattrs.Converter, member: type, name: str
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    structure_hook = conv.get_structure_hook(member)
    unstructure_hook = conv.get_unstructure_hook(member)

    def read(body: Any) -> Any:
        return structure_hook(body, member)

    def write(value: Any) -> Any:
        return {name: unstructure_hook(value)}

    return read, write


def _newtype_hooks(
    conv: cattrs.Converter, member: type, name: str, field: attrs.Attribute[Any]
) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    inner = field.type
    structure_hook = conv.get_structure_hook(inner)
    unstructure_hook = conv.get_unstructure_hook(inner)
    get = operator.attrgetter(field.name)

    def read(body: Any) -> Any:
        return member(structure_hook(body, inner))

    def write(value: Any) -> Any:
        return {name: unstructure_hook(get(value))}

    return read, write


# -- errors ----------------------------------------------------------------------------


@functools.cache
def _json_keys(cls: Any) -> dict[str, str]:
    if not attrs.has(cls):
        return {}
    return {field.name: field.metadata.get(_KEY, field.name) for field in attrs.fields(cls)}


def _join(path: str, name: str) -> str:
    if not path or not name:
        return path or name
    return path + name if name.startswith("[") else f"{path}.{name}"


def _decode_error(exc: BaseException) -> MessageDecodeError:
    """Follow cattrs' nested exception groups to the first failure and name its path."""
    path = ""
    while isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without_notes = exc.group_exceptions()
        # A misspelt key also makes the right one missing: the unknown key says more.
        extra = [inner for inner in without_notes if isinstance(inner, ForbiddenExtraKeysError)]
        if extra:
            exc = extra[0]
            break
        if with_notes:
            cls = exc.cl
            exc, note = with_notes[0]
            if isinstance(note, IterableValidationNote):
                path += f"[{note.index!r}]"
            else:
                path = _join(path, _json_keys(cls).get(note.name, note.name))
        elif without_notes:
            exc = without_notes[0]
        else:
            break
    if isinstance(exc, _InvalidValueError):
        return MessageDecodeError(_join(path, exc.below), exc.reason)
    if isinstance(exc, KeyError):
        return MessageDecodeError(path, "required field missing")
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = sorted(map(str, exc.extra_fields))
        others = f" (also {', '.join(keys[1:])})" if len(keys) > 1 else ""
        return MessageDecodeError(_join(path, keys[0]), "unknown key" + others)
    return MessageDecodeError(path, str(exc) or type(exc).__name__)


def _structure_with(conv: cattrs.Converter, value: Any, cls: Any) -> Any:
    try:
        return conv.structure(value, cls)
    except StructureHandlerNotFoundError:
        raise  # a type the converter cannot handle: a bug, not bad input
    except Exception as exc:  # cattrs reports most failures as exception groups
        raise _decode_error(exc) from exc


@overload
def structure(value: Any, cls: type[_T]) -> _T: ...


@overload
def structure(value: Any, cls: Any) -> Any: ...


def structure(value: Any, cls: Any) -> Any:
    """Read a JSON value (as :func:`json.loads` returns it) into ``cls``.

    Args:
        value: the JSON value.
        cls: an attrs class, a registered union, or any type the converter knows.

    Returns:
        The value as ``cls``.

    Raises:
        MessageDecodeError: the value does not fit ``cls``; the error names the path of
            the first bad value (``messages[2].content[0].type``).
    """
    return _structure_with(converter, value, cls)


def structure_config(value: Any, cls: type[_T]) -> _T:
    """Read a configuration object, where an unknown key is an error that names it.

    Only attrs classes, primitives, literals, enums, lists, dicts and optionals are
    known here, not the message unions registered on :data:`converter`.

    Raises:
        MessageDecodeError: a key is unknown or a value does not fit; the error names
            its path (``retry_config.max_retrys``).
    """
    return cast("_T", _structure_with(_config_converter, value, cls))


def unstructure(obj: Any, cls: Any = None) -> Any:
    """Turn ``obj`` into a JSON value (dicts, lists, strings, numbers, booleans, ``None``).

    Args:
        obj: the value to write.
        cls: the type to write it as (a registered union, for instance); ``None`` uses
            ``obj``'s own class. A union member is written in its union's form either way.

    Returns:
        The JSON value. Pass-through fields (:data:`Json`) are shared, not copied.
    """
    return converter.unstructure(obj, unstructure_as=cls)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@overload
def loads(data: bytes | str, cls: type[_T]) -> _T: ...


@overload
def loads(data: bytes | str, cls: Any) -> Any: ...


def loads(data: bytes | str, cls: Any) -> Any:
    """Read a JSON document (UTF-8 bytes or text) into ``cls``.

    Raises:
        MessageDecodeError: the document is not valid JSON (path ``""``), or it does
            not fit ``cls``.
    """
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MessageDecodeError("", f"invalid JSON: {exc}") from None
    return _structure_with(converter, value, cls)


def dumps(obj: Any, cls: Any = None) -> bytes:
    """Write ``obj`` as a compact UTF-8 JSON document; see :func:`unstructure`.

    Raises:
        ValueError: ``obj`` holds a NaN or infinite float, which JSON cannot express.
        TypeError: ``obj`` holds a value that has no JSON form.
    """
    return json.dumps(
        unstructure(obj, cls), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode()
