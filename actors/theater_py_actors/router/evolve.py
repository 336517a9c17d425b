"""``attrs.evolve`` with each class's fields looked up once.

The router copies a request (the target's model and output cap) and a reply (``served_by``
and ``tried``) for every call. ``attrs.evolve`` walks the class's fields in Python on each
call, which was about a third of the router's own work per request; this looks them up
once per class and reads the values in one C call. The copy is made by the class's own
``__init__``, as ``attrs.evolve`` makes it (validators and converters run).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["evolve"]

T = TypeVar("T")

_Shape = tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]
_shapes: dict[type, _Shape] = {}  # filled once per class; a race only computes it twice


def _init_fields(cls: type) -> _Shape:
    """The names ``cls.__init__`` takes, and a function reading their values as a tuple."""
    fields = [field for field in attrs.fields(cls) if field.init]
    names = [field.name for field in fields]
    aliases = tuple(field.alias for field in fields)
    if len(names) > 1:
        return aliases, operator.attrgetter(*names)  # a tuple of the values
    return aliases, lambda inst: tuple(getattr(inst, name) for name in names)


def evolve(inst: T, **changes: Any) -> T:
    """A copy of the attrs instance ``inst`` with ``changes``: ``attrs.evolve(inst, **changes)``.

    Raises:
        TypeError: a change names no argument of the class's ``__init__``.
    """
    cls = type(inst)
    shape = _shapes.get(cls)
    if shape is None:
        shape = _shapes[cls] = _init_fields(cls)
    aliases, read = shape
    kwargs = dict(zip(aliases, read(inst), strict=True))
    kwargs.update(changes)
    return cls(**kwargs)
