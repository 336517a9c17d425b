"""What the proxy says about the models it serves."""

from __future__ import annotations

import attrs

from theater_py import serde

__all__ = ["ModelInfo", "ModelPricing"]


@attrs.frozen
class ModelPricing:
    """A model's list prices, in US dollars per million tokens.

    Attributes:
        input_cost_per_million_tokens: the price of prompt tokens.
        output_cost_per_million_tokens: the price of generated tokens (reasoning
            tokens included).
        cached_input_cost_per_million_tokens: the lower price of prompt tokens the
            provider served from its cache, when it has one (an extension).
        source: where the prices come from, such as the provider's pricing page (an
            extension).
        as_of: the date (``YYYY-MM-DD``) the prices were checked there (an extension).
    """

    input_cost_per_million_tokens: float
    output_cost_per_million_tokens: float
    cached_input_cost_per_million_tokens: float | None = attrs.field(
        default=None, metadata=serde.extension()
    )
    source: str | None = attrs.field(default=None, metadata=serde.extension())
    as_of: str | None = attrs.field(default=None, metadata=serde.extension())

    def cost_usd(
        self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
    ) -> float:
        """What these tokens cost at these prices, in US dollars: the ``cached_input_tokens``
        of ``input_tokens`` at the cached price (the input price where there is none)."""
        cached_price = self.cached_input_cost_per_million_tokens
        if cached_price is None:
            cached_price = self.input_cost_per_million_tokens
        return (
            (input_tokens - cached_input_tokens) * self.input_cost_per_million_tokens
            + cached_input_tokens * cached_price
            + output_tokens * self.output_cost_per_million_tokens
        ) / 1_000_000


@attrs.frozen(kw_only=True)
class ModelInfo:
    """A model the proxy can use.

    Attributes:
        id: the model's id, as requests name it (``gpt-4o``).
        display_name: the model's name for people (``GPT-4o``).
        max_tokens: the context window in tokens (not the output limit).
        provider: who serves it (``openai``, ``moonshot``).
        pricing: its prices, or ``None`` where unknown.
    """

    id: str
    display_name: str
    max_tokens: int
    provider: str
    pricing: ModelPricing | None = None
