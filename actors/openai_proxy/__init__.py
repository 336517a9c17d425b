"""The OpenAI proxy actor: genai-types requests served by an OpenAI-compatible API."""
