"""The OpenAI proxy actor: genai-types requests served by an OpenAI-compatible API.

The manifest's component is ``actors.openai_proxy:OpenAIProxyActor``; the manifest ships
as ``openai-proxy``. Keep its handle as a :data:`ProxyHandle` to have requests and
replies type-checked::

    proxy: ProxyHandle = start_actor("openai-proxy")
    reply = proxy.request(ListModels())      # ModelList | Completion | ErrorResponse
"""

from __future__ import annotations

from typing import TypeAlias

from actors.genai_types import ProxyRequest, ProxyResponse
from actors.openai_proxy.actor import OpenAIProxyActor
from theater_py.handle import TypedHandle

__all__ = ["OpenAIProxyActor", "ProxyHandle"]

ProxyHandle: TypeAlias = TypedHandle[ProxyRequest, ProxyResponse]
"""The proxy's handle, typed: ``request`` takes a ProxyRequest and returns a ProxyResponse."""
