"""The Python example in docs/ runs end to end against the loopback simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "openai_proxy_example.py"


def test_the_proxy_example_runs():
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "models: gpt-4o-mini"
    assert "answer: You said: Say hello to the actor world." in lines
    assert any(line.startswith("tool call: get_weather {") for line in lines)
    assert lines[-1].endswith("chain verifies: True")
