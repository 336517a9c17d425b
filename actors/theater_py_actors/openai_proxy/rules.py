"""What a provider and model accept, as data, and how a request body is adapted to it.

The rules live in the catalog file (``models-2026-11.json``, key ``rules``), keyed by
provider and model family; :class:`RuleBook` resolves the rules of one model, and
:func:`adapt` changes a Chat Completions body to fit them, returning what it changed.

Resolution layers four sets of fields, each overriding the fields it sets: the ``*``
provider's ``default`` (any provider), the model's provider's ``default``, the first ``*``
family whose pattern matches the model, then the first family of its provider that does.
Patterns are :mod:`fnmatch` globs matched against the lower-cased model id without any
routing prefix (``openai/o3`` is matched as ``o3``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeGuard

import attrs

__all__ = [
    "ANY_PROVIDER",
    "Adaptation",
    "ModelRules",
    "ProviderRules",
    "RuleBook",
    "RuleLayer",
    "SystemRole",
    "TokenLimitParam",
    "adapt",
]

ANY_PROVIDER: Final = "*"

TokenLimitParam = Literal["max_completion_tokens", "max_tokens"]
"""The request key that carries the output token limit."""

SystemRole = Literal["system", "developer", "user"]
"""The role a system prompt is sent with."""

_TOKEN_LIMIT_KEYS: Final = ("max_tokens", "max_completion_tokens")


@attrs.frozen(kw_only=True)
class RuleLayer:
    """One layer of rules as the catalog file writes it; ``None`` inherits the field.

    Attributes:
        family: the family's name, for logs and docs (families only).
        match: the model-id globs the family covers (families only).
        token_limit_param: the key that carries the output token limit.
        system_role: the role the system prompt goes out with.
        unsupported: parameters the model rejects; they are dropped.
        unsupported_values: values of a parameter the model rejects
            (``{"tool_choice": ["required"]}``); the parameter is dropped.
        fixed: parameters accepted only at one value (``{"temperature": 1}``); any other
            value is dropped, leaving the model's default.
        ranges: ``[low, high]`` of numeric parameters; values outside are clamped.
        content_array: whether message content may be a list of parts; when not, a
            text-only list is flattened into one string.
        content_null: whether an assistant turn with tool calls and no text may carry
            ``"content": null``; when not, it carries ``""``.
        reasoning_content: whether the provider returns ``reasoning_content`` and wants it
            back on assistant turns that carry tool calls (Moonshot's reasoning models).
        reasoning: whether the model thinks before it answers, which can take minutes:
            unless the config sets them, its requests get longer timeouts.
    """

    family: str | None = None
    match: list[str] = attrs.field(factory=list)
    token_limit_param: TokenLimitParam | None = None
    system_role: SystemRole | None = None
    unsupported: list[str] | None = None
    unsupported_values: dict[str, list[str]] | None = None
    fixed: dict[str, float] | None = None
    ranges: dict[str, list[float]] | None = None
    content_array: bool | None = None
    content_null: bool | None = None
    reasoning_content: bool | None = None
    reasoning: bool | None = None


@attrs.frozen(kw_only=True)
class ProviderRules:
    """A provider's default rules and its model families, first match first."""

    default: RuleLayer = attrs.field(factory=RuleLayer)
    families: list[RuleLayer] = attrs.field(factory=list)

    def family_for(self, model: str) -> RuleLayer | None:
        """Return the first family whose pattern matches ``model`` (already normalised)."""
        return next(
            (
                family
                for family in self.families
                if any(fnmatch.fnmatchcase(model, pattern) for pattern in family.match)
            ),
            None,
        )


@attrs.frozen(kw_only=True)
class ModelRules:
    """The resolved rules of one model at one provider; the defaults change nothing.

    Attributes mean what they mean on :class:`RuleLayer`; ``families`` names the families
    that matched, for logs.
    """

    token_limit_param: TokenLimitParam = "max_tokens"  # noqa: S105 -- a key name
    system_role: SystemRole = "system"
    unsupported: tuple[str, ...] = ()
    unsupported_values: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    fixed: Mapping[str, float] = attrs.field(factory=dict)
    ranges: Mapping[str, tuple[float, float]] = attrs.field(factory=dict)
    content_array: bool = True
    content_null: bool = True
    reasoning_content: bool = False
    reasoning: bool = False
    families: tuple[str, ...] = ()


def _apply(rules: ModelRules, layer: RuleLayer) -> ModelRules:
    changes: dict[str, Any] = {}
    for name in (
        "token_limit_param",
        "system_role",
        "content_array",
        "content_null",
        "reasoning_content",
        "reasoning",
    ):
        value = getattr(layer, name)
        if value is not None:
            changes[name] = value
    if layer.unsupported is not None:
        changes["unsupported"] = tuple(layer.unsupported)
    if layer.unsupported_values is not None:
        changes["unsupported_values"] = {
            name: frozenset(values) for name, values in layer.unsupported_values.items()
        }
    if layer.fixed is not None:
        changes["fixed"] = dict(layer.fixed)
    if layer.ranges is not None:
        changes["ranges"] = {name: (low, high) for name, (low, high) in layer.ranges.items()}
    if layer.family is not None:
        changes["families"] = (*rules.families, layer.family)
    return attrs.evolve(rules, **changes)


def normalise_model(model: str) -> str:
    """Return the id rules match against: lower-cased, without a routing prefix."""
    return model.lower().rsplit("/", 1)[-1]


class RuleBook:
    """Every provider's rules; resolves those of one model.

    Args:
        providers: the rules by provider name; ``"*"`` applies to every provider.
    """

    def __init__(self, providers: Mapping[str, ProviderRules]) -> None:
        self._providers = dict(providers)

    def rules_for(self, provider: str | None, model: str) -> ModelRules:
        """Resolve the rules of ``model`` served by ``provider`` (``None``: unknown)."""
        name = normalise_model(model)
        generic = self._providers.get(ANY_PROVIDER, ProviderRules())
        specific = self._providers.get(provider) if provider is not None else None
        layers: list[RuleLayer | None] = [generic.default]
        layers.append(specific.default if specific is not None else None)
        layers.append(generic.family_for(name))
        layers.append(specific.family_for(name) if specific is not None else None)
        rules = ModelRules()
        for layer in layers:
            if layer is not None:
                rules = _apply(rules, layer)
        return rules


@attrs.frozen
class Adaptation:
    """One change made to a body to fit the rules.

    Attributes:
        param: the parameter (or message field) changed.
        change: what was done, for people (``"dropped"``, ``"clamped 1.5 to 1"``).
        lossy: whether the request asked for something the provider will not do (a
            dropped or clamped parameter); ``strict_params`` refuses these. Renames and
            reshapes that keep the meaning are not lossy.
    """

    param: str
    change: str
    lossy: bool = True

    def __str__(self) -> str:
        return f"{self.param} {self.change}"


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _adapt_params(body: dict[str, Any], rules: ModelRules) -> list[Adaptation]:
    changes: list[Adaptation] = []
    for key in _TOKEN_LIMIT_KEYS:
        if key in body and key != rules.token_limit_param:
            body[rules.token_limit_param] = body.pop(key)
            changes.append(Adaptation(key, f"sent as {rules.token_limit_param}", lossy=False))
    # In the table's order: this runs for every request, so nothing is sorted here.
    for param in rules.unsupported:
        if param in body:
            del body[param]
            changes.append(Adaptation(param, "dropped (unsupported)"))
    for param, values in rules.unsupported_values.items():
        value = body.get(param)
        if isinstance(value, str) and value in values:
            del body[param]
            changes.append(Adaptation(param, f"{value!r} dropped (unsupported value)"))
    for param, only in rules.fixed.items():
        value = body.get(param, only)
        if value != only:
            del body[param]
            changes.append(Adaptation(param, f"{value} dropped (only {only:g} is accepted)"))
    for param, (low, high) in rules.ranges.items():
        value = body.get(param)
        if value is not None and _number(value) and not low <= value <= high:
            clamped = min(max(value, low), high)
            body[param] = clamped
            changes.append(Adaptation(param, f"clamped from {value} to {clamped:g}"))
    return changes


def _flatten(content: Any) -> Any:
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" for part in content
    ):
        return "\n".join(str(part.get("text", "")) for part in content)
    return content  # media cannot be flattened: sent as parts, the provider decides


def _adapt_messages(messages: Sequence[dict[str, Any]], rules: ModelRules) -> list[Adaptation]:
    changes: dict[str, Adaptation] = {}
    for message in messages:
        role = message.get("role")
        if role == "system" and rules.system_role != "system":
            message["role"] = rules.system_role
            changes["system"] = Adaptation(
                "system", f"prompt sent as role {rules.system_role}", lossy=False
            )
        content = message.get("content")
        if not rules.content_array and isinstance(content, list):
            flat = _flatten(content)
            if flat is not content:
                message["content"] = flat
                changes["content"] = Adaptation("content", "flattened to a string", lossy=False)
        if role == "assistant" and content is None and not rules.content_null:
            message["content"] = ""
            changes["null"] = Adaptation("content", "null sent as ''", lossy=False)
        if "reasoning_content" in message and not (
            rules.reasoning_content and message.get("tool_calls")
        ):
            del message["reasoning_content"]
    return list(changes.values())


def adapt(body: dict[str, Any], rules: ModelRules) -> tuple[Adaptation, ...]:
    """Change ``body`` in place to fit ``rules``: drop, clamp, rename, reshape.

    The body is expected as
    :func:`~theater_py_actors.openai_proxy.convert.to_chat_request` builds it: the token
    limit under ``max_tokens``, system prompts as ``system`` messages, and
    ``reasoning_content`` on every assistant turn that has some.

    Returns:
        What was changed, parameters first, then messages (each kind of message change
        once).
    """
    changes = _adapt_params(body, rules)
    messages = body.get("messages")
    if isinstance(messages, list):
        changes.extend(_adapt_messages(messages, rules))
    return tuple(changes)
