"""Which SKU a fine-tuned candidate may be deployed with: DeveloperTier exists only for the gpt-4.1
family (azure-facts: "Developer tier (gpt-4.1 family)"), so any other model falls back."""

from __future__ import annotations

import pytest

from shared.aoai.deployments import deployable_sku


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4.1-2025-04-14",
        "gpt-4.1-2025-04-14.ft-0123456789abcdef-digits",
        "gpt-4.1-mini-2025-04-14.ft-0123456789abcdef-digits",
    ],
)
def test_developer_tier_is_kept_for_the_gpt_4_1_family(model):
    assert deployable_sku("DeveloperTier", model, fallback="GlobalStandard") == "DeveloperTier"


@pytest.mark.parametrize(
    "model",
    ["gpt-4o-2024-08-06.ft-0123456789abcdef-digits", "gpt-4o-2024-08-06", "gpt-4.10-future", "gpt-4"],
)
def test_developer_tier_falls_back_for_other_models(model):
    assert deployable_sku("DeveloperTier", model, fallback="Standard") == "Standard"


@pytest.mark.parametrize("sku", ["Standard", "GlobalStandard"])
def test_paid_skus_are_used_as_asked(sku):
    assert deployable_sku(sku, "gpt-4o-2024-08-06.ft-0123456789abcdef-x", fallback="Standard") == sku
