"""Render a manifest's ``{{...}}`` placeholders over its init state, safely for TOML.

A placeholder is ``{{path.to.value}}`` or ``{{default path.to.value "fallback"}}``
(Theater's Handlebars subset). Each one is rendered for the place it stands in the
TOML text, so that no init data can change the document's structure:

- inside a basic string (``"..."``, ``\"\"\"...\"\"\"``): the value's text, escaped as
  a string body;
- inside a literal string (``'...'``, ``'''...'''``): the text as is, refused when it
  holds a ``'`` or a control character (a literal string cannot escape them);
- anywhere else (a value, an array item, a key): the value as a TOML literal, a
  string quoted and escaped; a table or an array is refused;
- inside a comment: left alone.

Rendered values never hold a raw newline, so line numbers in TOML errors stay true.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from typing import Any

import attrs

from theater_py.errors import ManifestError

__all__ = ["NEUTRAL_MARK", "Placeholder", "Template", "Where", "compile_template"]


class Where(enum.Enum):
    """Where a placeholder stands in the TOML text, which decides how it renders."""

    BARE = "outside a string"
    BASIC = "inside a basic string"
    LITERAL = "inside a literal string"


_SEGMENT = r"(?:[\w-]+|\[[^\]\n]*\])"
# A fallback is a JSON string, number or boolean. Inside a TOML basic string it may also
# be quoted the way TOML would escape it, \"like this\" (no quote or backslash within).
_LITERAL = r'"(?:[^"\\\n]|\\.)*"|\\"[^"\\\n]*\\"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false'
_PLACEHOLDER = re.compile(
    rf"\{{\{{[ \t]*(?:(?P<helper>[\w-]+)[ \t]+)?"
    rf"(?P<path>{_SEGMENT}(?:\.{_SEGMENT})*)"
    rf"(?:[ \t]+(?P<default>{_LITERAL}))?[ \t]*\}}\}}"
)
_SEGMENTS = re.compile(_SEGMENT)
# What can change the lexical state of TOML text, plus the placeholder opener.
_LEXEME = re.compile(r"\{\{|'''|\"\"\"|[\"'#\\\n]")

# Escapes for a TOML basic string body; DEL and every C0 control must be escaped.
_ESCAPES = {code: f"\\u{code:04x}" for code in (*range(0x20), 0x7F)} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("\b"): "\\b",
    ord("\t"): "\\t",
    ord("\n"): "\\n",
    ord("\f"): "\\f",
    ord("\r"): "\\r",
}
_LITERAL_UNSAFE = re.compile(r"['\x00-\x08\x0a-\x1f\x7f]")
_MISSING = object()


class _Unrenderable(Exception):
    """A value cannot be rendered where its placeholder stands."""


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _float_text(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    raise _Unrenderable(f"the value is {_json_type(value)}, not a string, number or boolean")


def _render_bare(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value.translate(_ESCAPES)}"'
    return _scalar_text(value)


def _render_basic(value: Any) -> str:
    return _scalar_text(value).translate(_ESCAPES)


def _render_literal(value: Any) -> str:
    text = _scalar_text(value)
    if _LITERAL_UNSAFE.search(text):
        raise _Unrenderable(
            "the value holds a ' or a control character, which a literal string cannot "
            'hold; put the placeholder in a basic string ("...") instead'
        )
    return text


_RENDERERS = {
    Where.BARE: _render_bare,
    Where.BASIC: _render_basic,
    Where.LITERAL: _render_literal,
}
NEUTRAL_MARK = "\ue000"
"""What :meth:`Template.neutral` puts for a placeholder (a private-use character)."""
_NEUTRAL = {Where.BARE: f'"{NEUTRAL_MARK}"', Where.BASIC: NEUTRAL_MARK, Where.LITERAL: NEUTRAL_MARK}


def _lookup(state: Any, path: tuple[str, ...]) -> Any:
    value = state
    for segment in path:
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


@attrs.frozen
class Placeholder:
    """One ``{{...}}`` of a template.

    Attributes:
        text: the placeholder as written (``{{default config.api_key_env "X"}}``).
        line: its 1-based line in the manifest.
        where: the lexical place it stands in, which decides how it renders.
        path: the segments of its dotted path into the state.
        has_default: whether it uses the ``default`` helper.
        default: the helper's fallback value (a JSON scalar).
    """

    text: str
    line: int
    where: Where
    path: tuple[str, ...]
    has_default: bool = False
    default: Any = None

    def render(self, state: Any, source: str) -> str:
        """Render the placeholder's value over ``state`` for its place in the TOML text.

        The ``default`` helper falls back to its default when the path is missing, null
        or an empty string (as Theater's helper does).

        Raises:
            ManifestError: the path resolves to nothing and there is no default, or the
                value cannot stand where the placeholder is.
        """
        value = _lookup(state, self.path)
        if self.has_default:
            if value is _MISSING or value is None or value == "":
                value = self.default
        elif value is _MISSING or value is None:
            raise self._error(
                source,
                f"{'.'.join(self.path)} is missing from the init state (or null); "
                'write {{default path "value"}} to give it a default',
            )
        try:
            return _RENDERERS[self.where](value)
        except _Unrenderable as exc:
            raise self._error(source, f"cannot render it {self.where.value}: {exc}") from None

    def _error(self, source: str, reason: str) -> ManifestError:
        return ManifestError(f"line {self.line}: {reason}", file=source, field=self.text)


@attrs.frozen
class Template:
    """A manifest's text, split into literal runs and placeholders."""

    parts: tuple[str | Placeholder, ...]
    """The literal text runs and the placeholders between them, in order."""

    def render(self, state: Any, source: str) -> str:
        """Return the text with every placeholder rendered over ``state``.

        Raises:
            ManifestError: a placeholder cannot be rendered (it names the placeholder
                and its line).
        """
        return "".join(
            part if isinstance(part, str) else part.render(state, source) for part in self.parts
        )

    def neutral(self) -> str:
        """Return the text with each placeholder replaced by :data:`NEUTRAL_MARK`.

        Outside strings the mark is quoted. The result is valid TOML whenever each
        placeholder stands for a whole value, which lets a manifest be read before the
        state to render it with is known, and shows which values came from placeholders.
        """
        return "".join(
            part if isinstance(part, str) else _NEUTRAL[part.where] for part in self.parts
        )


def _placeholder(text: str, start: int, where: Where, line: int, source: str) -> Placeholder:
    match = _PLACEHOLDER.match(text, start)
    if match is None:
        end = text.find("}}", start)
        newline = text.find("\n", start)
        if end < 0 or 0 <= newline < end:
            raise ManifestError(
                f"line {line}: unclosed placeholder (no '}}}}' on the same line)",
                file=source,
                field=text[start : newline if newline >= 0 else len(text)],
            )
        raise ManifestError(
            f"line {line}: malformed placeholder; write {{{{path.to.value}}}} or "
            f'{{{{default path.to.value "fallback"}}}}',
            file=source,
            field=text[start : end + 2],
        )
    written = match.group()
    helper, default = match["helper"], match["default"]
    if helper is not None and helper != "default":
        raise ManifestError(
            f"line {line}: unknown helper {helper!r} (the only helper is 'default')",
            file=source,
            field=written,
        )
    if (helper is None) != (default is None):
        problem = "a fallback needs the helper" if helper is None else "the helper needs a fallback"
        raise ManifestError(
            f'line {line}: {problem}: {{{{default path "fallback"}}}}',
            file=source,
            field=written,
        )
    if default is not None and default.startswith("\\"):
        default = f'"{default[2:-2]}"'  # \"X\" -> "X"
    segments = tuple(
        segment[1:-1] if segment.startswith("[") else segment
        for segment in _SEGMENTS.findall(match["path"])
    )
    return Placeholder(
        text=written,
        line=line,
        where=where,
        path=segments,
        has_default=helper is not None,
        default=None if default is None else json.loads(default),
    )


class _Lex(enum.Enum):
    BARE = enum.auto()
    COMMENT = enum.auto()
    BASIC = enum.auto()
    ML_BASIC = enum.auto()
    LITERAL = enum.auto()
    ML_LITERAL = enum.auto()


_OPENERS = {
    '"': _Lex.BASIC,
    '"""': _Lex.ML_BASIC,
    "'": _Lex.LITERAL,
    "'''": _Lex.ML_LITERAL,
    "#": _Lex.COMMENT,
}
_ONE_LINE_QUOTES = {_Lex.BASIC: '"', _Lex.LITERAL: "'"}
_MULTI_LINE_QUOTES = {_Lex.ML_BASIC: '"', _Lex.ML_LITERAL: "'"}
_WHERE = {
    _Lex.BARE: Where.BARE,
    _Lex.BASIC: Where.BASIC,
    _Lex.ML_BASIC: Where.BASIC,
    _Lex.LITERAL: Where.LITERAL,
    _Lex.ML_LITERAL: Where.LITERAL,
}


def _end_of_run(text: str, start: int, char: str) -> int:
    # A multi-line string may end with up to two extra quotes before its delimiter.
    end = start
    while end < len(text) and text[end] == char:
        end += 1
    return end


def _step(lex: _Lex, lexeme: str, text: str, start: int, end: int) -> tuple[_Lex, int]:
    # The lexical state after a lexeme (never a placeholder) and where to search on.
    if lex is _Lex.BARE:
        return _OPENERS.get(lexeme, _Lex.BARE), end
    if lex is _Lex.COMMENT:
        return (_Lex.BARE if lexeme == "\n" else lex), end
    if lexeme == "\\" and lex in (_Lex.BASIC, _Lex.ML_BASIC):
        return lex, end + 1  # skip the escaped character, which may be a quote
    quote = _ONE_LINE_QUOTES.get(lex)
    if quote is not None:
        closed = lexeme[0] == quote or lexeme == "\n"
        return (_Lex.BARE, start + 1) if closed else (lex, end)
    quote = _MULTI_LINE_QUOTES[lex]
    if lexeme == quote * 3:
        return _Lex.BARE, _end_of_run(text, start, quote)
    return lex, end


@functools.lru_cache(maxsize=64)
def compile_template(text: str, source: str) -> Template:
    """Split manifest text into literal runs and placeholders.

    A light TOML lexer tracks strings and comments so that each placeholder knows
    where it stands; it does not validate TOML (``tomllib`` does, after rendering).

    Args:
        text: the manifest's text.
        source: the file name to put in errors.

    Returns:
        The template (cached by text and source: manifests are loaded again and again).

    Raises:
        ManifestError: a placeholder is malformed or unclosed, or uses an unknown helper.
    """
    parts: list[str | Placeholder] = []
    lex = _Lex.BARE
    pos = literal_start = counted = 0
    line = 1
    while (match := _LEXEME.search(text, pos)) is not None:
        lexeme, start = match.group(), match.start()
        if lexeme == "{{" and lex is not _Lex.COMMENT:
            line += text.count("\n", counted, start)
            counted = start
            placeholder = _placeholder(text, start, _WHERE[lex], line, source)
            parts += (text[literal_start:start], placeholder)
            pos = literal_start = start + len(placeholder.text)
        else:
            lex, pos = _step(lex, lexeme, text, start, match.end())
    parts.append(text[literal_start:])
    return Template(tuple(part for part in parts if part != ""))
