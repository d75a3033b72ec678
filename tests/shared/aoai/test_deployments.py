"""Deployment names, and which SKU a fine-tuned candidate may be deployed with: DeveloperTier exists only for the gpt-4.1
family (azure-facts: "Developer tier (gpt-4.1 family)"), so any other model falls back."""

from __future__ import annotations

import re

import pytest

from shared.aoai.deployments import DEPLOYMENT_NAME_RE, deployable_sku, deployment_name
from tests.shared.aoai.test_finetune import DATASET_NAMES


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


@pytest.mark.parametrize("role", ["cand", "prod", "incumbent"])
def test_deployment_names_are_valid_unique_and_deterministic(role: str) -> None:
    version = "3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6"
    names = [deployment_name(d, version, role) for d in DATASET_NAMES]
    for name in names:
        assert DEPLOYMENT_NAME_RE.match(name), name
        assert len(name) <= 64
        assert re.fullmatch(r"[a-z0-9-]+", name)
    assert len(set(names)) == len(names)
    assert names == [deployment_name(d, version, role) for d in DATASET_NAMES]
    assert deployment_name("digits", version, role) == f"vt-digits-3f9a0c1d2e4b-{role[:12]}"


def test_deployment_names_differ_by_version_and_role() -> None:
    assert deployment_name("digits", "aaaa1111") != deployment_name("digits", "bbbb2222")
    assert deployment_name("digits", "aaaa1111", "cand") != deployment_name("digits", "aaaa1111", "prod")
