"""What a result was measured on: the machine, the interpreter, the packages, the tree."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["describe_machine"]

_PACKAGES = (
    "theater-py",
    "pykka",
    "requests",
    "urllib3",
    "attrs",
    "cattrs",
    "openai",
    "httpx",
    "litellm",
)
_REPO = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def describe_machine() -> dict[str, Any]:
    """Return the machine, Python, package versions and source tree of this run."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "memory_gib": _memory_gib(),
            "load_average_before": list(os.getloadavg()),
        },
        # requests reads proxy settings from every variable on every call: their number
        # moves its cost (and so every ratio against it).
        "environment_variables": len(os.environ),
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "packages": {package: _version(package) for package in _PACKAGES},
        "source": {"commit": _git("rev-parse", "--short", "HEAD"), "dirty": bool(status)},
    }
