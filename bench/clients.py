"""The contenders: every way of making the same chat completion against the fake provider.

Each :class:`Contender` sends the same request (one user message, ``temperature`` 0.7,
``max_tokens`` 64) and checks the answer it gets, so a contender that silently fails is
noticed rather than measured as fast. Contenders are safe to call from many threads: the
ones built on a connection that is not thread-safe keep one per thread.

- ``http.client``: the standard library, one keep-alive connection per thread (the floor);
- ``requests``: a :class:`requests.Session` per thread (keep-alive);
- ``openai``: the official SDK, one client shared by every thread, ``max_retries=0``;
- ``litellm``: ``litellm.completion`` with the ``openai/`` provider;
- ``proxy_typed`` and ``proxy_json``: ``GenerateCompletion`` through ONE OpenAI proxy
  actor (``ActorHandle.request`` with the attrs message, and ``request_json``).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.upstream import MODEL, PROMPT

__all__ = ["EXTERNAL", "KEY", "KEY_ENV", "NAMES", "PROXY_MANIFEST", "Contender", "make_contender"]

KEY = "sk-bench-loopback-0000"
"""The bearer token every contender sends; the fake provider never checks it."""

KEY_ENV = "BENCH_UPSTREAM_KEY"
"""The variable the proxy actor reads :data:`KEY` from."""

EXTERNAL = ("openai", "litellm")
"""The contenders that need the ``bench`` extra."""

PROXY_MANIFEST = Path(__file__).resolve().parent.parent / "manifests" / "openai-proxy.toml"
"""The shipped manifest of the OpenAI proxy actor."""

_BODY: dict[str, Any] = {
    "model": MODEL,
    "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    "max_tokens": 64,
    "temperature": 0.7,
}
"""What the proxy actor sends upstream for the benchmark request; the raw clients send it too."""

_EXPECTED = f"You said: {PROMPT}"


def _check(text: object) -> None:
    if text != _EXPECTED:
        raise RuntimeError(f"unexpected completion text {text!r}")


class Contender:
    """One way to make the benchmark request.

    Args:
        name: the contender's name in the results.
        call: makes one request and checks its answer; safe to call from any thread.
        close: releases what the contender holds.
    """

    def __init__(
        self, name: str, call: Callable[[], None], close: Callable[[], None] = lambda: None
    ) -> None:
        self.name = name
        self.call = call
        self.close = close

    def __enter__(self) -> Contender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _http_client(base_url: str) -> Contender:
    url = urllib.parse.urlsplit(base_url)
    path = f"{url.path}/chat/completions"
    payload = json.dumps(_BODY).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {KEY}",
    }
    local = threading.local()
    opened: list[http.client.HTTPConnection] = []
    lock = threading.Lock()

    def call() -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(
                url.hostname or "", url.port, timeout=30
            )
            with lock:
                opened.append(connection)
        connection.request("POST", path, payload, headers)
        response = connection.getresponse()
        body = json.loads(response.read())
        _check(body["choices"][0]["message"]["content"])

    def close() -> None:
        for connection in opened:
            connection.close()

    return Contender("http.client", call, close)


def _requests(base_url: str) -> Contender:
    import requests

    url = f"{base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}
    local = threading.local()
    sessions: list[requests.Session] = []
    lock = threading.Lock()

    def call() -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            with lock:
                sessions.append(session)
        response = session.post(url, json=_BODY, headers=headers, timeout=30)
        response.raise_for_status()
        _check(response.json()["choices"][0]["message"]["content"])

    def close() -> None:
        for session in sessions:
            session.close()

    return Contender("requests", call, close)


def _openai(base_url: str) -> Contender:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=30)
    messages: Any = [{"role": "user", "content": PROMPT}]

    def call() -> None:
        completion = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=64, temperature=0.7
        )
        _check(completion.choices[0].message.content)

    return Contender("openai", call, client.close)


def _litellm(base_url: str) -> Contender:
    # Without this litellm fetches its model price list from the internet at import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    messages = [{"role": "user", "content": PROMPT}]

    def call() -> None:
        response: Any = litellm.completion(
            model=f"openai/{MODEL}",
            messages=messages,
            api_base=base_url,
            api_key=KEY,
            max_tokens=64,
            temperature=0.7,
            max_retries=0,
            timeout=30,
        )
        _check(response.choices[0].message.content)

    return Contender("litellm", call)


def _proxy(base_url: str, *, typed: bool) -> Contender:
    from theater_py import Runtime
    from theater_py_actors.genai_types import (
        Completion,
        CompletionRequest,
        GenerateCompletion,
        Message,
        Role,
        Text,
    )

    os.environ[KEY_ENV] = KEY
    runtime = Runtime(in_memory=True)
    # The cache is off so that every call goes upstream (temperature 0.7 would bypass it too).
    config = {"base_url": base_url, "api_key_env": KEY_ENV, "max_cache_size": 0}
    try:
        handle = runtime.start_actor(PROXY_MANIFEST, {"config": config}, name="bench-proxy")
    except BaseException:
        runtime.shutdown(timeout=10)
        raise
    request = GenerateCompletion(
        CompletionRequest(
            model=MODEL,
            messages=[Message(role=Role.USER, content=[Text(PROMPT)])],
            max_tokens=64,
            temperature=0.7,
        )
    )
    request_json: dict[str, Any] = {
        "GenerateCompletion": {
            "request": {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
                "max_tokens": 64,
                "temperature": 0.7,
            }
        }
    }

    def call_typed() -> None:
        reply = handle.request(request, timeout=30)
        if not isinstance(reply, Completion):
            raise RuntimeError(f"the proxy answered {reply!r}")
        _check(reply.completion.content[0].text)  # type: ignore[union-attr]

    def call_json() -> None:
        reply = handle.request_json(request_json, timeout=30)
        if "Completion" not in reply:
            raise RuntimeError(f"the proxy answered {reply!r}")
        _check(reply["Completion"]["completion"]["content"][0]["text"])

    def close() -> None:
        runtime.shutdown(timeout=10)

    if typed:
        return Contender("proxy_typed", call_typed, close)
    return Contender("proxy_json", call_json, close)


_FACTORIES: dict[str, Callable[[str], Contender]] = {
    "http.client": _http_client,
    "requests": _requests,
    "openai": _openai,
    "litellm": _litellm,
    "proxy_typed": lambda base_url: _proxy(base_url, typed=True),
    "proxy_json": lambda base_url: _proxy(base_url, typed=False),
}

NAMES = tuple(_FACTORIES)
"""Every contender's name."""


def make_contender(name: str, base_url: str) -> Contender:
    """Build a contender against the fake provider at ``base_url``.

    Raises:
        ImportError: the contender's package is not installed.
        KeyError: no contender has that name.
    """
    return _FACTORIES[name](base_url)
