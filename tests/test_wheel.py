"""The built wheel is whole: installed in a fresh virtual environment, it runs from anywhere.

Slow, and it installs the dependencies from the package index (pip's cache makes it quick
the second time): it runs only with ``THEATER_PY_WHEEL_TEST=1``, as ``.ci/run`` runs it, in
a step of its own::

    THEATER_PY_WHEEL_TEST=1 .venv/bin/pytest -q tests/test_wheel.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_docs_example import quick_start
from theater_py_actors.openai_proxy.simulator import OpenAISimulator

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        os.environ.get("THEATER_PY_WHEEL_TEST") != "1",
        reason="builds and installs the wheel: set THEATER_PY_WHEEL_TEST=1 (.ci/run does)",
    ),
]


def _run(*command: str | Path, cwd: Path, timeout: float = 600) -> str:
    """Run a command outside the repository, with no path of it inherited; return stdout."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    done = subprocess.run(
        [os.fspath(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources (the build writes beside them)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "theater-py"
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
    )
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignore)
    dist = work / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, cwd=work)
    (built,) = dist.glob("theater_py-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the wheel and its dependencies from the index."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    _run(sys.executable, "-m", "venv", folder, cwd=folder.parent)
    _run(folder / "bin" / "python", "-m", "pip", "install", "-q", wheel, cwd=folder.parent)
    yield folder / "bin"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder outside the repository, with nothing in it."""
    assert ROOT not in tmp_path.parents
    return tmp_path


def test_every_shipped_package_is_typed_and_the_manifests_are_in(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    data_only = {p for p in packages if p.endswith("/manifests")}
    for package in packages - data_only:
        assert f"{package}/py.typed" in names, package
    shipped = {name.rsplit("/", 1)[1] for name in names if name.rsplit("/", 1)[0] in data_only}
    for manifest in ("openai-proxy.toml", "openai-proxy-system.toml", "init.json"):
        assert manifest in shipped
    assert {"openai-router.toml", "init-router-example.json"} <= shipped


def test_the_installed_package_is_the_wheel(venv: Path, outside: Path) -> None:
    code = (
        "import theater_py, theater_py_actors.openai_proxy as proxy\n"
        "print(theater_py.__file__, proxy.__file__)"
    )
    for path in _run(venv / "python", "-c", code, cwd=outside).split():
        assert Path(path).is_relative_to(venv.parent), path


def test_help_lists_the_proxys_commands(venv: Path, outside: Path) -> None:
    out = _run(venv / "theater-py", "--help", cwd=outside)
    for command in ("start", "run", "chat", "models", "mock-openai", "demo"):
        assert f"\n    {command}" in out
    assert "Ask an OpenAI proxy actor one question." in out  # read without importing it


def test_init_takes_a_shipped_init_file_by_name(venv: Path, outside: Path) -> None:
    code = (
        "from theater_py.cli import _init_argument\n"
        "print(_init_argument('openai-proxy:init-moonshot')['config']['api_key_env'])\n"
    )
    assert _run(venv / "python", "-c", code, cwd=outside) == "MOONSHOT_API_KEY\n"


def test_the_demo_runs(venv: Path, outside: Path) -> None:
    env_home = outside / "home"
    out = _run("env", f"THEATER_PY_HOME={env_home}", venv / "theater-py", "demo", cwd=outside)
    assert "started openai-proxy-system.toml" in out
    assert "requests answered: none lost" in out


def test_the_quick_start_runs_against_the_simulator(venv: Path, outside: Path) -> None:
    snippet, _ = quick_start()
    script = outside / "quickstart.py"
    script.write_text(snippet, encoding="utf-8")
    with OpenAISimulator() as sim:
        out = _run(
            "env",
            f"OPENAI_BASE_URL={sim.base_url}",
            "OPENAI_API_KEY=offline",
            f"THEATER_PY_HOME={outside / 'home'}",
            venv / "python",
            script,
            cwd=outside,
        )
        assert sim.requests_seen == 1
    assert out == "You said: Hello!\n"
