"""Build a set of contenders, recording those that cannot run instead of failing the run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from bench.clients import Contender, make_contender

__all__ = ["open_contenders"]


def open_contenders(
    names: Iterable[str],
    base_url: str,
    stack: contextlib.ExitStack,
    progress: Callable[[str], None],
) -> tuple[dict[str, Contender], dict[str, dict[str, Any]]]:
    """Build the named contenders, closed when ``stack`` closes.

    A contender whose package is missing, or whose first call fails, is left out.

    Returns:
        The contenders that work, and for each one left out ``{"unavailable": reason}``.
    """
    ready: dict[str, Contender] = {}
    missing: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            contender = stack.enter_context(make_contender(name, base_url))
            contender.call()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            progress(f"{name} unavailable ({reason})")
            missing[name] = {"unavailable": reason}
            continue
        ready[name] = contender
    return ready, missing
