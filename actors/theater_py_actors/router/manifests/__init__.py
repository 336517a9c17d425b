"""The router's shipped manifest (``openai-router``) and its example init file.

Data only. ``pyproject.toml`` ships ``openai-router.toml`` under the name ``openai-router``
(entry point group ``theater_py.manifests``); the repository's ``manifests/`` folder
links to these files.
"""
