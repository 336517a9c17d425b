"""``theater-py chat`` streams by default; ``--no-stream`` answers all at once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from theater_py.cli import main
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

KEY = "sk-sim-0123456789-secret"
MANIFEST = str(Path(__file__).resolve().parents[1] / "manifests" / "openai-proxy.toml")


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAISimulator]:
    monkeypatch.setenv("SIM_KEY", KEY)
    with OpenAISimulator(api_key=KEY) as simulator:
        yield simulator


def chat(
    capsys: pytest.CaptureFixture[str],
    sim: OpenAISimulator,
    tmp_path: Path,
    *args: str,
    **config: object,
) -> tuple[int, str, str]:
    init = {"config": {"base_url": sim.base_url, "api_key_env": "SIM_KEY", **config}}
    home = str(tmp_path / "home")
    status = main(
        ["--home", home, "chat", "--manifest", MANIFEST, "--init", json.dumps(init), *args]
    )
    out, err = capsys.readouterr()
    return status, out, err


def test_chat_streams_by_default_then_prints_usage_and_cost(
    capsys: pytest.CaptureFixture[str], sim: OpenAISimulator, tmp_path: Path
) -> None:
    status, out, err = chat(capsys, sim, tmp_path, "Hello there")
    assert (status, out) == (0, "You said: Hello there\n")
    assert sim.last_body["stream"] is True
    assert err.startswith("gpt-4o: ")
    assert " output tokens, $" in err  # usage and cost arrived with the stream


def test_no_stream_answers_all_at_once(
    capsys: pytest.CaptureFixture[str], sim: OpenAISimulator, tmp_path: Path
) -> None:
    status, out, err = chat(capsys, sim, tmp_path, "Hello there", "--no-stream")
    assert (status, out) == (0, "You said: Hello there\n")
    assert "stream" not in sim.last_body
    assert " output tokens, $" in err


def test_a_stream_that_fails_midway_is_an_error_line(
    capsys: pytest.CaptureFixture[str], sim: OpenAISimulator, tmp_path: Path
) -> None:
    status, out, err = chat(
        capsys, sim, tmp_path, "one two three", extra_headers={"X-Mock-Fault": "stream_error"}
    )
    assert status == 1
    assert out == "You \n"  # what came, then the line ended
    assert "server_error" in err
    assert KEY not in out + err
