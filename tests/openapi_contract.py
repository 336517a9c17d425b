"""Check outbound bodies against OpenAI's official request schema, for any test to reuse.

The schema is the committed ``tests/contract/chat_completions_request.schema.json``: a
self-contained JSON Schema of ``CreateChatCompletionRequest`` derived from OpenAI's
OpenAPI spec by ``tests/contract/derive_schema.py`` (source, version and license in
``tests/contract/README.md``). Nothing outside the repository is read, so every contract
test runs everywhere.

Use :func:`validate_chat_request` to check a ``POST /chat/completions`` body::

    def test_body(): validate_chat_request(body)
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from tests.contract.derive_schema import SCHEMA_PATH

__all__ = ["chat_request_validator", "validate_chat_request"]


@functools.cache
def chat_request_validator() -> jsonschema.protocols.Validator:
    """Return the validator of ``CreateChatCompletionRequest``; built once per session."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema)
    return validator


def validate_chat_request(body: Any) -> None:
    """Check a ``POST /chat/completions`` body against ``CreateChatCompletionRequest``.

    Raises:
        jsonschema.ValidationError: the body does not conform; its message names the
            best-matching failure and its path.
    """
    error = jsonschema.exceptions.best_match(chat_request_validator().iter_errors(body))
    if error is not None:
        raise error
