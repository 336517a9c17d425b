"""Derive the request contract the tests check against from OpenAI's official OpenAPI spec.

The spec (``openapi.yaml`` of https://github.com/openai/openai-openapi, MIT) is 3 MB of
YAML that mixes OpenAPI 3.0 into a 3.1 document. This script takes from it the schemas the
tests use (:data:`SCHEMAS`) and every schema each reaches through ``$ref``, adapts them so
that plain JSON Schema 2020-12 validates them as the spec intends, and writes one
self-contained JSON file per root beside this script (``chat_completions_request.schema.json``
for the chat request, ``list_models_response.schema.json`` for ``GET /models``' reply),
which the tests load (:mod:`tests.openapi_contract`). The adaptation:

- ``nullable: true`` becomes a type (or an ``anyOf``) that admits ``null``;
- a ``discriminator`` without a ``mapping`` is dropped (JSON Schema ignores it, but some
  validators choke on it);
- ``#/components/schemas/X`` references become ``#/$defs/X``.

Nothing else changes: descriptions and ``x-`` annotations stay, so the file reads as the
spec does. To refresh it after the spec moves on, fetch the new ``openapi.yaml`` and run::

    python -m tests.contract.derive_schema --spec PATH/openapi.yaml --commit SHA

``tests/test_openapi_contract.py`` regenerates the files whenever the spec is beside the
repository and checks that they are unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_SPEC",
    "LIST_MODELS_SCHEMA_PATH",
    "ROOTS",
    "SCHEMAS",
    "SCHEMA_PATH",
    "derive",
    "render",
]

SCHEMA_PATH: Final = Path(__file__).with_name("chat_completions_request.schema.json")
"""The committed, derived schema of the chat request."""

LIST_MODELS_SCHEMA_PATH: Final = Path(__file__).with_name("list_models_response.schema.json")
"""The committed, derived schema of ``GET /models``' reply."""

SCHEMAS: Final = {
    "CreateChatCompletionRequest": SCHEMA_PATH,
    "ListModelsResponse": LIST_MODELS_SCHEMA_PATH,
}
"""The schemas the tests validate against, and the file of each: it holds the schema and
all it reaches."""

ROOTS: Final = tuple(SCHEMAS)

DEFAULT_SPEC: Final = Path(
    os.environ.get("THEATER_PY_OPENAPI_SPEC")
    or Path(__file__).resolve().parents[3] / "shared/openai-openapi/openapi.yaml"
)
"""Where the spec is looked for: ``$THEATER_PY_OPENAPI_SPEC``, else ``shared/`` beside the
repository."""

SOURCE_REPO: Final = "https://github.com/openai/openai-openapi"
SOURCE_COMMIT: Final = "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
"""The commit of :data:`SOURCE_REPO` whose ``openapi.yaml`` the committed file came from."""

_PREFIX: Final = "#/components/schemas/"


def adapt(node: Any) -> Any:
    """Return a copy of a spec node that plain JSON Schema 2020-12 validates as intended."""
    if isinstance(node, list):
        return [adapt(item) for item in node]
    if not isinstance(node, dict):
        return node
    adapted = {key: adapt(value) for key, value in node.items() if key != "nullable"}
    if isinstance(adapted.get("$ref"), str) and adapted["$ref"].startswith(_PREFIX):
        adapted["$ref"] = "#/$defs/" + adapted["$ref"].removeprefix(_PREFIX)
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


def _references(node: Any) -> set[str]:
    """Name every ``components/schemas`` entry a node refers to, however deep."""
    if isinstance(node, list):
        return set().union(*(_references(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = set().union(*(_references(value) for value in node.values()))
    ref = node.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith(_PREFIX):
            raise ValueError(f"unsupported $ref {ref!r}: only {_PREFIX}... is resolved")
        found.add(ref.removeprefix(_PREFIX))
    return found


def derive(spec_bytes: bytes, commit: str = SOURCE_COMMIT, root: str = ROOTS[0]) -> dict[str, Any]:
    """Build the self-contained schema of one root from the spec's bytes.

    Args:
        spec_bytes: the content of ``openapi.yaml``, unmodified.
        commit: the source repository's commit those bytes came from, for the record.
        root: the schema to derive, one of :data:`ROOTS`.

    Returns:
        A JSON Schema 2020-12 document: ``$defs`` holds ``root`` and every schema it
        reaches; the document itself validates ``root``.
    """
    import yaml  # type: ignore[import-untyped]

    # CSafeLoader is ten times faster on this 3 MB file, where libyaml is available.
    spec = yaml.load(spec_bytes, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schemas: dict[str, Any] = spec["components"]["schemas"]
    reached: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(_references(schemas[name]) - reached)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            "Derived by tests/contract/derive_schema.py from OpenAI's OpenAPI spec "
            "(MIT license); see tests/contract/README.md. Do not edit: regenerate."
        ),
        "x-source": {
            "repository": SOURCE_REPO,
            "path": "openapi.yaml",
            "commit": commit,
            "openapi": spec["openapi"],
            "version": spec["info"]["version"],
            "sha256": hashlib.sha256(spec_bytes).hexdigest(),
            "license": spec["info"]["license"]["identifier"],
            "roots": [root],
        },
        "$ref": f"#/$defs/{root}",
        "$defs": {name: adapt(schemas[name]) for name in sorted(reached)},
    }


def render(schema: dict[str, Any]) -> str:
    """Serialise the schema as it is committed: stable, indented, one final newline."""
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the derived schemas; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="default: %(default)s")
    parser.add_argument("--commit", default=SOURCE_COMMIT, help="the spec's source commit")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    spec = args.spec.read_bytes()
    status = 0
    for root, out in SCHEMAS.items():
        text = render(derive(spec, args.commit, root))
        if args.check:
            same = out.is_file() and out.read_text(encoding="utf-8") == text
            print(f"{out}: {'up to date' if same else 'differs from the spec: regenerate'}")
            status = status if same else 1
        else:
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out} ({len(text):,} characters)")
    return status


if __name__ == "__main__":
    sys.exit(main())
