"""A plugin command's one-line summary, read from its source without importing it.

``theater-py --help`` lists every installed command, but imports none of them (a plugin
may be slow or broken to import). An entry point ``chat = "pkg.cli:CHAT"`` names where its
:class:`~theater_py.cli.Command` is; when that module assigns it at the top level with a
literal summary, ``CHAT = Command(summary="Ask ...", ...)``, the summary is read from the
module's source. The module is found as ``import`` would find it, through
:data:`sys.meta_path`, without running its packages' ``__init__``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["command_summary"]


def command_summary(reference: str) -> str | None:
    """The literal ``summary`` of the ``Command`` an entry point's value names, if any.

    Args:
        reference: the entry point's value, ``module:ATTRIBUTE``.

    Returns:
        The summary, or ``None`` when the module's source cannot be found or read, or
        does not assign the attribute a call with a literal ``summary=`` string.
    """
    module, _, attribute = reference.partition(":")
    attribute = attribute.partition("[")[0].strip()
    source = _module_source(module.strip())
    if source is None or not attribute:
        return None
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        if not any(isinstance(t, ast.Name) and t.id == attribute for t in node.targets):
            continue
        for keyword in node.value.keywords:
            value = keyword.value
            if keyword.arg == "summary" and isinstance(value, ast.Constant):
                return value.value if isinstance(value.value, str) else None
    return None


def _module_source(name: str) -> Path | None:
    """The source file of a module, found package by package without importing one."""
    path: list[str] | None = None
    origin: str | None = None
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        spec = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            try:
                spec = find_spec(".".join(parts[:depth]), path)
            except Exception:  # noqa: BLE001 -- a finder's failure is only no summary
                spec = None
            if spec is not None:
                break
        if spec is None:
            return None
        locations = spec.submodule_search_locations
        if locations is None and depth < len(parts):
            return None  # a module, not a package: it holds no submodule
        path = None if locations is None else list(locations)
        origin = spec.origin
    if origin is None or not origin.endswith(".py"):
        return None
    return Path(origin)
