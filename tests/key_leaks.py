"""A key as long as a real project key, and the check that no piece of it got out."""

from __future__ import annotations

# As long as a real project key (108 characters).
KEY = "sk-proj-" + "".join(f"{n:02d}" for n in range(50))


def fragments(text: str, secret: str = KEY, size: int = 8) -> list[str]:
    """Every piece of ``secret`` at least ``size`` characters long found in ``text``."""
    return [
        secret[start : start + size]
        for start in range(len(secret) - size + 1)
        if secret[start : start + size] in text
    ]
