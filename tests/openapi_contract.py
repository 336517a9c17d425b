"""Check outbound bodies against OpenAI's official OpenAPI spec, for any test to reuse.

The spec (``../shared/openai-openapi/openapi.yaml`` beside the repository) is never
edited: it is loaded once per test session and adapted in memory, because it mixes
OpenAPI 3.0 into a 3.1 document. ``nullable: true`` becomes a schema that admits
``null``, and discriminators without a mapping are dropped. ``$ref`` s resolve through a
:mod:`referencing` registry holding the whole document.

Use :data:`requires_spec` to skip a test where the spec is absent, and
:func:`validate_chat_request` to check a ``POST /chat/completions`` body::

    @requires_spec
    def test_body(): validate_chat_request(body)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "SPEC_PATH",
    "requires_spec",
    "schema_validator",
    "validate_chat_request",
]

SPEC_PATH: Final = Path(__file__).resolve().parents[2] / "shared/openai-openapi/openapi.yaml"
"""Where the spec lives: ``shared/`` beside the repository."""

_SPEC_URI: Final = "urn:openai:openapi"

requires_spec = pytest.mark.skipif(
    not SPEC_PATH.is_file(), reason=f"the OpenAI OpenAPI spec is not at {SPEC_PATH}"
)
"""Skip a test when the spec is absent."""


def _adapt(node: Any) -> Any:
    """Return a copy of a spec node that plain JSON Schema 2020-12 validates as intended."""
    if isinstance(node, list):
        return [_adapt(item) for item in node]
    if not isinstance(node, dict):
        return node
    adapted = {key: _adapt(value) for key, value in node.items() if key != "nullable"}
    discriminator = adapted.get("discriminator")
    if isinstance(discriminator, dict) and "mapping" not in discriminator:
        del adapted["discriminator"]
    if node.get("nullable") is not True:
        return adapted
    if "type" in adapted:
        types = adapted["type"]
        adapted["type"] = [*types, "null"] if isinstance(types, list) else [types, "null"]
        if "enum" in adapted and None not in adapted["enum"]:
            adapted["enum"] = [*adapted["enum"], None]
        return adapted
    if any(key in adapted for key in ("$ref", "allOf", "anyOf", "oneOf", "enum", "const")):
        return {"anyOf": [adapted, {"type": "null"}]}
    return adapted  # no constraint on the type: null is admitted already


@functools.cache
def _registry() -> Registry[Any]:
    # CSafeLoader is ten times faster on this 3 MB file, where libyaml is available.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open("rb") as file:
        spec = yaml.load(file, Loader=loader)
    resource: Resource[Any] = Resource.from_contents(
        _adapt(spec), default_specification=DRAFT202012
    )
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
    return registry


@functools.cache
def schema_validator(name: str) -> jsonschema.protocols.Validator:
    """Return a validator of the spec's ``components/schemas/<name>``; built once per name."""
    schema = {"$ref": f"{_SPEC_URI}#/components/schemas/{name}"}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        schema, registry=_registry()
    )
    return validator


def validate_chat_request(body: Any) -> None:
    """Check a ``POST /chat/completions`` body against ``CreateChatCompletionRequest``.

    Raises:
        jsonschema.ValidationError: the body does not conform; its message names the
            best-matching failure and its path.
    """
    validator = schema_validator("CreateChatCompletionRequest")
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        raise error
