"""The OpenAI proxy actor: genai-types requests served by an OpenAI-compatible API.

The manifest's component is ``actors.openai_proxy:OpenAIProxyActor``.
"""

from __future__ import annotations

from actors.openai_proxy.actor import OpenAIProxyActor

__all__ = ["OpenAIProxyActor"]
