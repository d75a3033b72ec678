"""infra/naming.py: valid, stable, per-subscription unique Azure names."""

from __future__ import annotations

import re

import pytest

from infra.naming import resource_names

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"


@pytest.mark.parametrize(
    ("prefix", "stack"), [("vtune", "dev"), ("ab", "x"), ("visiontune", "production-westeurope-2")]
)
def test_names_satisfy_azure_rules(prefix: str, stack: str) -> None:
    names = resource_names(prefix, stack, SUB_A, f"{prefix}-{stack}")
    assert re.fullmatch(r"[a-z0-9]{3,24}", names.storage_account), names.storage_account
    for name in (names.function_app, names.openai_account):
        assert re.fullmatch(r"[a-z][a-z0-9-]{0,58}[a-z0-9]", name) and "--" not in name, name
    assert len(names.system_topic) <= 128 and len(names.identity) <= 128


def test_names_are_stable_and_differ_per_subscription_and_group() -> None:
    first = resource_names("vtune", "dev", SUB_A, "vtune-dev")
    assert first == resource_names("vtune", "dev", SUB_A, "vtune-dev")
    assert first.storage_account != resource_names("vtune", "dev", SUB_B, "vtune-dev").storage_account
    assert first.function_app != resource_names("vtune", "dev", SUB_A, "other-rg").function_app


def test_unusable_prefix_is_rejected() -> None:
    with pytest.raises(ValueError, match="cannot derive resource names"):
        resource_names("--", "1", SUB_A, "rg")
