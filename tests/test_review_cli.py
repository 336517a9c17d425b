"""Review of the CLI's bad input: a --timeout no wait can use is a usage error, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import run_main

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "openai-proxy.toml"


@pytest.mark.parametrize("timeout", ["nan", "-1", "0", "inf", "1e300"])
def test_a_timeout_that_is_not_a_usable_number_of_seconds_is_bad_usage(
    timeout: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    init = '{"config": {"base_url": "http://127.0.0.1:9/v1"}}'
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        run_main(
            capsys,
            *("--home", str(tmp_path / "home"), "chat", "--manifest", str(MANIFEST)),
            *("--init", init, "--timeout", timeout, "hi"),
        )
    assert exited.value.code == 2
    assert "--timeout" in capsys.readouterr().err
