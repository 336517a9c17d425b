"""The OpenAI proxy's shipped manifests, its init files and the demo's ``system.toml``.

Data only. ``pyproject.toml`` ships ``openai-proxy.toml`` under the name ``openai-proxy``
(entry point group ``theater_py.manifests``), so ``start_actor("openai-proxy")`` finds it
in an installed wheel; the repository's ``manifests/`` folder links to these files.
"""
