"""The model catalog: which models a provider serves, their context windows and prices.

The facts are data, in ``models-2026-11.json`` beside this module, with the date they
were checked: prices change, so keeping them current means editing that file, not code.
The same file holds each provider's and model family's request rules (see
:mod:`.rules`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import attrs

from theater_py import serde
from theater_py_actors.genai_types import ModelInfo, ModelPricing
from theater_py_actors.openai_proxy.rules import (
    ModelRules,
    ProviderRules,
    RuleBook,
    TokenLimitParam,
)

__all__ = ["Capability", "Catalog", "CatalogModel", "ProviderCatalog", "load_catalog"]

CATALOG_FILE: Final = "models-2026-11.json"
_MAX_RESOLVED: Final = 1024

Capability = Literal["tools", "vision", "audio", "json_mode", "reasoning"]
"""What a model can do beyond text in, text out."""

# A dated snapshot (gpt-4o-2024-08-06) or an old-style one (gpt-4-0613) of a base model.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@attrs.frozen(kw_only=True)
class CatalogModel:
    """One model of the catalog file.

    Attributes:
        id: the model's id.
        display_name: its name for people.
        max_tokens: its context window in tokens.
        pricing: its list prices, or ``None`` where unknown.
        capabilities: what it can do.
        retired: the date (``YYYY-MM-DD``) the provider shut the model down, if it did;
            a retired model is still priced (for old records) but no longer listed.
    """

    id: str
    display_name: str
    max_tokens: int
    pricing: ModelPricing | None = None
    capabilities: list[Capability] = attrs.field(factory=list)
    retired: str | None = None


@attrs.frozen(kw_only=True)
class ProviderCatalog:
    """The models of one provider, and the API roots that identify it.

    Attributes:
        base_urls: the provider's API roots; a proxy configured with one of their hosts
            serves this provider's models.
        models: the provider's models.
    """

    base_urls: list[str]
    models: list[CatalogModel]


@attrs.frozen(kw_only=True)
class _CatalogFile:
    updated: str
    sources: str = ""
    providers: dict[str, ProviderCatalog]
    rules_sources: str = ""
    rules: dict[str, ProviderRules] = attrs.field(factory=dict)


class Catalog:
    """Answers which models a proxy serves and what they cost.

    Attributes:
        updated: the date the catalog's facts were checked (``2026-11-23``).
    """

    def __init__(
        self,
        updated: str,
        providers: dict[str, ProviderCatalog],
        rules: dict[str, ProviderRules] | None = None,
    ) -> None:
        """Index the catalog's providers and their rules."""
        self.updated = updated
        self._rules = RuleBook(rules or {})
        # Resolved per request on the actor's thread; resolving once per model keeps that cheap.
        self._resolved: dict[tuple[str, str, TokenLimitParam | None], ModelRules] = {}
        self._providers = {
            name: [_model_info(name, model) for model in provider.models if not model.retired]
            for name, provider in providers.items()
        }
        self._by_host = {
            urlsplit(url).hostname: name
            for name, provider in providers.items()
            for url in provider.base_urls
        }
        self._by_id = {
            model.id: model for provider in providers.values() for model in provider.models
        }

    @classmethod
    def from_json(cls, data: bytes | str) -> Catalog:
        """Read a catalog in the format of ``models-2026-11.json``.

        Raises:
            theater_py.errors.MessageDecodeError: the data is not a valid catalog; the
                error names the path of the bad key.
        """
        file = serde.structure_config(json.loads(data), _CatalogFile)
        return cls(file.updated, file.providers, file.rules)

    def provider_for(self, base_url: str) -> str | None:
        """Return the name of the catalog's provider at ``base_url`` (``"openai"``), if any."""
        return self._by_host.get(urlsplit(base_url).hostname)

    def for_base_url(
        self, base_url: str, extra_models: Sequence[ModelInfo] = ()
    ) -> list[ModelInfo]:
        """List the models a proxy at ``base_url`` serves.

        Args:
            base_url: the proxy's configured API root.
            extra_models: models from the proxy's configuration; one with the id of a
                catalog model replaces it.

        Returns:
            The models of the catalog's provider at ``base_url``'s host that are not
            retired, then the extra models. At any other host, only the extra models
            (possibly none): another provider's catalog would promise models it may not
            serve.
        """
        provider = self.provider_for(base_url)
        if provider is None:
            return list(extra_models)
        return _merge(self._providers.get(provider, ()), extra_models)

    def merge_live(
        self,
        base_url: str,
        listed: Iterable[Any],
        extra_models: Sequence[ModelInfo] = (),
    ) -> list[ModelInfo]:
        """Describe the models a provider's ``GET /models`` lists, with what is known of them.

        Args:
            base_url: the proxy's configured API root.
            listed: the ``data`` entries of the provider's reply, in its order; an entry
                is an object with an ``id`` string (others are skipped, and so is a repeat).
            extra_models: models from the proxy's configuration; they win over the catalog.

        Returns:
            One model per listed id: the config's entry for it; else the catalog's
            context window and prices (a dated snapshot gets its base model's, under its
            own id); else the context window the provider states (``context_window``,
            ``context_length`` or ``max_model_len``, as Groq, OpenRouter and vLLM do), or
            0 where nobody says, and no prices.
        """
        provider = self.provider_for(base_url) or "custom"
        extras = {model.id: model for model in extra_models}
        models: dict[str, ModelInfo] = {}
        for entry in listed:
            model_id = entry.get("id") if isinstance(entry, dict) else None
            if not isinstance(model_id, str) or not model_id or model_id in models:
                continue
            known = self.model(model_id)
            if model_id in extras:
                models[model_id] = extras[model_id]
            elif known is not None:
                models[model_id] = ModelInfo(
                    id=model_id,
                    display_name=known.display_name if known.id == model_id else model_id,
                    max_tokens=known.max_tokens,
                    provider=provider,
                    pricing=known.pricing,
                )
            else:
                models[model_id] = ModelInfo(
                    id=model_id,
                    display_name=model_id,
                    max_tokens=_stated_context(entry),
                    provider=provider,
                )
        return list(models.values())

    def model(self, model_id: str) -> CatalogModel | None:
        """Find a model by id; a dated snapshot (``gpt-4o-2024-08-06``) finds its base model.

        Only a snapshot suffix (``-YYYY-MM-DD`` or ``-MMDD``) may follow the base id, so
        the longest matching id wins: ``gpt-4o-mini-2024-07-18`` is ``gpt-4o-mini``, not
        ``gpt-4o``, and ``o3-pro`` is not ``o3`` (it is priced ten times higher).
        """
        model = self._by_id.get(model_id)
        if model is None:
            model = self._by_id.get(_SNAPSHOT_SUFFIX.sub("", model_id))
        return model

    def pricing_for(
        self, model_id: str, extra_models: Iterable[ModelInfo] = ()
    ) -> ModelPricing | None:
        """Return the prices of ``model_id``, or ``None`` where unknown.

        Args:
            model_id: the model, as the request or the provider's response names it.
            extra_models: models from the proxy's configuration; they win over the
                catalog.
        """
        for extra in extra_models:
            if extra.id == model_id:
                return extra.pricing
        model = self.model(model_id)
        return None if model is None else model.pricing

    def rules_for(
        self, base_url: str, model_id: str, token_limit_param: TokenLimitParam | None = None
    ) -> ModelRules:
        """Return what ``model_id`` accepts at the provider at ``base_url``.

        Args:
            base_url: the proxy's configured API root; its host names the provider.
            model_id: the model the request goes to.
            token_limit_param: the configured key for the token limit, which wins over
                the rules when given.
        """
        key = (base_url, model_id, token_limit_param)
        rules = self._resolved.get(key)
        if rules is None:
            rules = self._rules.rules_for(self.provider_for(base_url), model_id)
            if token_limit_param is not None:
                rules = attrs.evolve(rules, token_limit_param=token_limit_param)
            if len(self._resolved) >= _MAX_RESOLVED:
                self._resolved.clear()  # model ids come from requests: stay bounded
            self._resolved[key] = rules
        return rules

    def capabilities_for(self, model_id: str) -> frozenset[Capability]:
        """Return what ``model_id`` can do; empty for a model the catalog does not know."""
        model = self.model(model_id)
        return frozenset() if model is None else frozenset(model.capabilities)


def _model_info(provider: str, model: CatalogModel) -> ModelInfo:
    return ModelInfo(
        id=model.id,
        display_name=model.display_name,
        max_tokens=model.max_tokens,
        provider=provider,
        pricing=model.pricing,
    )


_CONTEXT_KEYS: Final = ("context_window", "context_length", "max_model_len")


def _stated_context(entry: dict[str, Any]) -> int:
    for key in _CONTEXT_KEYS:
        value = entry.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _merge(catalog: Iterable[ModelInfo], extra_models: Sequence[ModelInfo]) -> list[ModelInfo]:
    extras = {model.id: model for model in extra_models}
    merged = [extras.pop(model.id, model) for model in catalog]
    merged.extend(extras.values())
    return merged


@functools.cache
def load_catalog() -> Catalog:
    """Load the catalog shipped with the proxy; it is read once and shared."""
    data = importlib.resources.files(__package__).joinpath(CATALOG_FILE).read_bytes()
    return Catalog.from_json(data)
