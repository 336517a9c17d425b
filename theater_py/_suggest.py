"""Word the error of an unknown key: the valid keys, the closest match to the typo first.

Manifests, system manifests and actor configurations all reject an unknown key; this is
the one wording they share, so ``defualt_model`` reads ``did you mean 'default_model'?``
wherever it is mistyped.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["expected_keys"]


def expected_keys(unknown: str, valid: Iterable[str]) -> str:
    """Say which keys are valid where ``unknown`` was found, the closest match first.

    Args:
        unknown: the key that is not valid there.
        valid: the valid keys, in the order to list them after the closest match.

    Returns:
        ``did you mean 'x'? expected one of x, a, b``, or ``expected one of a, b, x`` when
        no valid key is close, or ``it takes no keys``.
    """
    keys = list(dict.fromkeys(valid))
    if not keys:
        return "it takes no keys"
    close = difflib.get_close_matches(unknown, keys, n=1, cutoff=0.6)
    if not close:
        return f"expected one of {', '.join(keys)}"
    keys.remove(close[0])
    return f"did you mean {close[0]!r}? expected one of {', '.join([close[0], *keys])}"
