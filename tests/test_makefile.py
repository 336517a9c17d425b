"""The README's `make run` and `make test` say what they are doing before the slow parts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["run", "test"])
def test_the_first_run_announces_each_step_before_it_starts(tmp_path: Path, target: str):
    done = subprocess.run(
        ["make", "--dry-run", target, f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = done.stdout.splitlines()

    def index(fragment: str) -> int:
        return next(i for i, line in enumerate(lines) if fragment in line)

    assert index('echo "make: creating the virtual environment') < index(" -m venv ")
    assert index('echo "make: installing theater-py') < index("pip install --quiet -e")
    assert index("is ready") > index("pip install --quiet -e")
