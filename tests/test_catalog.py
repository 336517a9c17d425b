"""Tests of theater_py_actors.openai_proxy.catalog: the model catalog shipped as data."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

import pytest

from theater_py.errors import MessageDecodeError
from theater_py_actors.genai_types import ModelInfo, ModelPricing
from theater_py_actors.openai_proxy.catalog import CATALOG_FILE, Catalog, load_catalog

OPENAI = "https://api.openai.com/v1"
MOONSHOT = "https://api.moonshot.ai/v1"

CUSTOM = ModelInfo(
    id="llama3", display_name="Llama 3", max_tokens=8192, provider="custom", pricing=None
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_catalog_is_dated_package_data() -> None:
    raw = json.loads(files("theater_py_actors.openai_proxy").joinpath(CATALOG_FILE).read_text())
    assert raw["updated"] == "2026-11-29"
    assert load_catalog().updated == raw["updated"]
    assert load_catalog() is load_catalog()  # read once


def test_openai_models(catalog: Catalog) -> None:
    models = {model.id: model for model in catalog.for_base_url(OPENAI)}
    expected = {
        "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-chat-latest",
        "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-mini",
        "o3", "o4-mini", "o3-mini", "o1", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo",
    }  # fmt: skip
    assert set(models) == expected
    assert models["gpt-4o"] == ModelInfo(
        id="gpt-4o",
        display_name="GPT-4o",
        max_tokens=128000,
        provider="openai",
        pricing=ModelPricing(
            2.5,
            10.0,
            cached_input_cost_per_million_tokens=1.25,
            source="https://openai.com/api/pricing",
            as_of="2026-11-29",
        ),
    )
    assert models["gpt-4.1"].max_tokens == 1047576
    assert all(models[m].max_tokens == 400000 for m in ("gpt-5", "gpt-5-mini", "gpt-5-nano"))
    o3 = models["o3"].pricing
    assert o3 is not None
    assert (o3.input_cost_per_million_tokens, o3.output_cost_per_million_tokens) == (2.0, 8.0)
    assert o3.cached_input_cost_per_million_tokens == 0.5


def test_every_openai_price_has_a_cached_price_source_and_date(catalog: Catalog) -> None:
    no_prompt_caching = {"gpt-4o-2024-05-13", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo"}
    for model in catalog.for_base_url(OPENAI):
        assert model.pricing is not None
        assert model.pricing.source and model.pricing.as_of, model.id
        if model.id not in no_prompt_caching:
            assert model.pricing.cached_input_cost_per_million_tokens is not None, model.id


@pytest.mark.parametrize("model_id", ["o1-mini", "o1-preview", "gpt-4.5-preview"])
def test_retired_models_are_priced_but_not_listed(catalog: Catalog, model_id: str) -> None:
    assert model_id not in {model.id for model in catalog.for_base_url(OPENAI)}
    assert catalog.pricing_for(model_id) is not None
    entry = catalog.model(model_id)
    assert entry is not None and entry.retired


def test_a_snapshot_with_its_own_entry_is_priced_from_it(catalog: Catalog) -> None:
    old = catalog.pricing_for("gpt-4o-2024-05-13")
    assert old is not None and old.input_cost_per_million_tokens == 5.0
    newer = catalog.pricing_for("gpt-4o-2024-08-06")
    assert newer is not None and newer.input_cost_per_million_tokens == 2.5


def test_moonshot_models_by_host(catalog: Catalog) -> None:
    models = {model.id: model for model in catalog.for_base_url(MOONSHOT)}
    assert set(models) == {
        "moonshot-v1-8k",
        "moonshot-v1-32k",
        "moonshot-v1-128k",
        "moonshot-v1-8k-vision-preview",
        "kimi-k2.6",
    }
    assert all(model.provider == "moonshot" for model in models.values())
    assert models["kimi-k2.6"].max_tokens == 262144
    pricing = models["moonshot-v1-128k"].pricing
    assert pricing is not None
    assert (pricing.input_cost_per_million_tokens, pricing.output_cost_per_million_tokens) == (
        2.0,
        5.0,
    )
    assert models["moonshot-v1-8k-vision-preview"].pricing is None
    assert catalog.for_base_url("https://api.moonshot.ai/v1/") == list(models.values())


def test_other_hosts_get_the_extra_models_and_never_openai_s(catalog: Catalog) -> None:
    assert catalog.for_base_url("http://127.0.0.1:8000/v1", [CUSTOM]) == [CUSTOM]
    assert catalog.for_base_url("http://127.0.0.1:8000/v1") == []


def test_extra_models_join_a_known_provider(catalog: Catalog) -> None:
    cheaper = ModelInfo(
        id="gpt-4o",
        display_name="GPT-4o (negotiated)",
        max_tokens=128000,
        provider="openai",
        pricing=ModelPricing(1.0, 4.0),
    )
    models = catalog.for_base_url(OPENAI, [CUSTOM, cheaper])
    ids = [model.id for model in models]
    assert ids.count("gpt-4o") == 1
    assert models[ids.index("gpt-4o")] == cheaper
    assert ids[-1] == "llama3"


def test_the_result_is_a_fresh_list(catalog: Catalog) -> None:
    models = catalog.for_base_url(OPENAI)
    models.clear()
    assert catalog.for_base_url(OPENAI)


@pytest.mark.parametrize(
    ("model_id", "base"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("moonshot-v1-8k", "moonshot-v1-8k"),
    ],
)
def test_pricing_for_dated_variants(catalog: Catalog, model_id: str, base: str) -> None:
    model = catalog.model(base)
    assert model is not None
    assert catalog.pricing_for(model_id) == model.pricing
    assert catalog.pricing_for(model_id) is not None


@pytest.mark.parametrize("model_id", ["o3-pro", "gpt-4o-audio-preview", "llama3", "", "gpt"])
def test_unknown_models_have_no_pricing(catalog: Catalog, model_id: str) -> None:
    assert catalog.pricing_for(model_id) is None


def test_extra_models_price_first(catalog: Catalog) -> None:
    priced = ModelInfo(
        id="gpt-4o", display_name="x", max_tokens=1, provider="p", pricing=ModelPricing(9, 9)
    )
    assert catalog.pricing_for("gpt-4o", [CUSTOM, priced]) == ModelPricing(9, 9)
    assert catalog.pricing_for("llama3", [CUSTOM]) is None


def test_capabilities(catalog: Catalog) -> None:
    assert "reasoning" in catalog.capabilities_for("o3-2025-04-16")
    assert "vision" in catalog.capabilities_for("gpt-4o")
    assert "reasoning" not in catalog.capabilities_for("gpt-4o")
    assert catalog.capabilities_for("unknown") == frozenset()


def test_provider_for(catalog: Catalog) -> None:
    assert catalog.provider_for(OPENAI) == "openai"
    assert catalog.provider_for("https://api.moonshot.cn/v1") == "moonshot"
    assert catalog.provider_for("http://localhost:11434/v1") is None


def test_every_model_is_well_formed(catalog: Catalog) -> None:
    for base_url in (OPENAI, MOONSHOT):
        for model in catalog.for_base_url(base_url):
            assert model.max_tokens > 0
            assert model.display_name
            if model.pricing is not None:
                assert model.pricing.input_cost_per_million_tokens > 0
                assert model.pricing.output_cost_per_million_tokens > 0


def test_a_bad_catalog_names_the_bad_key() -> None:
    data: dict[str, Any] = {
        "updated": "2026-01-01",
        "providers": {
            "p": {"base_urls": ["https://p/v1"], "models": [{"id": "m", "display_nme": "M"}]}
        },
    }
    with pytest.raises(MessageDecodeError) as info:
        Catalog.from_json(json.dumps(data))
    assert info.value.path == "providers['p'].models[0].display_nme"
    assert info.value.reason == "unknown key"
    data["providers"]["p"]["models"] = [
        {"id": "m", "display_name": "M", "max_tokens": 1, "capabilities": ["telepathy"]}
    ]
    with pytest.raises(MessageDecodeError) as info:
        Catalog.from_json(json.dumps(data))
    assert info.value.path == "providers['p'].models[0].capabilities[0]"
