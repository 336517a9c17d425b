"""The streaming guide's example runs end to end against the loopback simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "streaming_agent.py"


def test_the_streaming_agent_streams_calls_the_tool_and_answers() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[calling get_weather...]"
    assert lines[1].startswith("Tool result: 18 C and sunny in ")
    assert " output tokens" in result.stderr
