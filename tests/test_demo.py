"""The demo behind `make run` runs offline, start to end."""

from __future__ import annotations

import io
import re

from theater_py_actors.openai_proxy import demo


def test_the_demo_runs_every_step_and_loses_no_request():
    out = io.StringIO()
    assert demo.main(out) == 0
    text = out.getvalue()
    assert "You said: What is an actor system?" in text
    assert "the model calls get_weather(" in text
    assert "You said: Stream me a few words about channels, please.\n(" in text
    assert " deltas, then the completion: " in text
    assert re.search(r"^  gpt-4o +[\d,]+ tokens ", text, re.MULTILINE), text
    assert re.search(r"\.\.\. [1-9]\d* models in all", text), text
    assert "2 attempts" in text
    assert "32 of 32 requests answered: none lost" in text
    assert "served by backup:gpt-4o, after: primary:gpt-4o-mini error server_error" in text
    assert "refused, 0 calls made: budget_exceeded: " in text
    assert "verifies: True" in text and "verifies: False" not in text
    assert text.rstrip().endswith("Demo complete.")
    assert demo.DEMO_KEY not in text


def test_the_demo_runs_through_the_cli():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "theater_py", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("Demo complete.")
