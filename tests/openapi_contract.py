"""Check what goes to and comes from a provider against OpenAI's official schemas.

The schemas are the committed ``tests/contract/*.schema.json``: self-contained JSON
Schemas of ``CreateChatCompletionRequest`` and ``ListModelsResponse`` derived from OpenAI's
OpenAPI spec by ``tests/contract/derive_schema.py`` (source, version and license in
``tests/contract/README.md``). Nothing outside the repository is read, so every contract
test runs everywhere.

Use :func:`validate_chat_request` to check a ``POST /chat/completions`` body, and
:func:`validate_list_models_response` a ``GET /models`` reply::

    def test_body(): validate_chat_request(body)
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema  # type: ignore[import-untyped]

from tests.contract.derive_schema import SCHEMAS

__all__ = [
    "chat_request_validator",
    "list_models_validator",
    "validate_chat_request",
    "validate_list_models_response",
    "validator_for",
]


@functools.cache
def validator_for(root: str) -> jsonschema.protocols.Validator:
    """Return the validator of one of the derived schemas; built once per session."""
    schema = json.loads(SCHEMAS[root].read_text(encoding="utf-8"))
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(schema)
    return validator


def chat_request_validator() -> jsonschema.protocols.Validator:
    """Return the validator of ``CreateChatCompletionRequest``."""
    return validator_for("CreateChatCompletionRequest")


def list_models_validator() -> jsonschema.protocols.Validator:
    """Return the validator of ``ListModelsResponse``."""
    return validator_for("ListModelsResponse")


def validate_chat_request(body: Any) -> None:
    """Check a ``POST /chat/completions`` body against ``CreateChatCompletionRequest``.

    Raises:
        jsonschema.ValidationError: the body does not conform; its message names the
            best-matching failure and its path.
    """
    error = jsonschema.exceptions.best_match(chat_request_validator().iter_errors(body))
    if error is not None:
        raise error


def validate_list_models_response(body: Any) -> None:
    """Check a ``GET /models`` reply against ``ListModelsResponse``.

    Raises:
        jsonschema.ValidationError: the reply does not conform.
    """
    error = jsonschema.exceptions.best_match(list_models_validator().iter_errors(body))
    if error is not None:
        raise error
