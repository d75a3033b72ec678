"""infra/config.py: the typed stack config, its defaults, and clear errors for bad values."""

from __future__ import annotations

import json

import pytest

from infra.config import (
    DERIVED_SETTINGS,
    ConfigError,
    StackConfig,
    camel_case,
    known_keys,
    parse_config,
    tunable_fields,
)
from shared.settings import LOCAL_ONLY_SETTINGS, Settings


def parse(**raw: str) -> StackConfig:
    return parse_config(raw, project="visiontune", stack="dev")


def test_defaults_follow_the_settings_object() -> None:
    config = parse()
    assert config.resource_group_name == "vtune-dev"
    assert config.base_model == "gpt-4.1-2025-04-14" == Settings.model_fields["base_model"].default
    assert config.batch_deployment == "base-batch" and not config.event_grid_subscriptions
    for name in tunable_fields():
        default = Settings.model_fields[name].default
        env_name = Settings.environment_name(name)
        if default is None:
            assert env_name not in config.app_tunables, env_name
        else:
            assert config.app_tunables[env_name] == (
                str(default).lower() if isinstance(default, bool) else str(default)
            )


def test_every_setting_is_derived_tunable_or_local_only() -> None:
    for name in Settings.model_fields:
        kinds = [
            name in DERIVED_SETTINGS,
            name in tunable_fields(),
            Settings.environment_name(name) in LOCAL_ONLY_SETTINGS,
        ]
        assert kinds.count(True) == 1, f"{name}: {kinds}"
    assert DERIVED_SETTINGS <= set(Settings.model_fields), DERIVED_SETTINGS - set(Settings.model_fields)


def test_values_are_typed_and_validated_by_the_settings_model() -> None:
    config = parse(promotionMargin="0.05", nEpochs="4", continueFromProduction="true", location="eastus2")
    assert config.app_tunables["VISIONTUNE_PROMOTION_MARGIN"] == "0.05"
    assert config.app_tunables["VISIONTUNE_EPOCHS"] == "4"
    assert config.app_tunables["VISIONTUNE_CONTINUE_FROM_PRODUCTION"] == "true"
    assert config.openai_location == "eastus2", "openaiLocation follows location unless given"
    assert parse(location="eastus2", openaiLocation="swedencentral").openai_location == "swedencentral"


def test_the_environment_of_the_deployer_does_not_leak_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONTUNE_SEED", "7")
    assert parse().app_tunables["VISIONTUNE_SEED"] == str(Settings.model_fields["seed"].default)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"promotionMargin": "2"}, "visiontune:promotionMargin (VISIONTUNE_PROMOTION_MARGIN)"),
        ({"candidateSku": "Premium"}, "visiontune:candidateSku"),
        ({"instanceMemoryMb": "1000"}, "visiontune:instanceMemoryMb must be one of (512, 2048, 4096)"),
        ({"instanceMemoryMb": "lots"}, "visiontune:instanceMemoryMb"),
        ({"maximumInstanceCount": "0"}, "visiontune:maximumInstanceCount must be 1-1000"),
        ({"eventGridSubscriptions": "maybe"}, "visiontune:eventGridSubscriptions"),
        ({"namePrefix": "1abc"}, "visiontune:namePrefix"),
        ({"namePrefix": "way-too-long-prefix"}, "visiontune:namePrefix"),
        ({"baseDeploymentSku": "GlobalBatch"}, "visiontune:baseDeploymentSku"),
        ({"batchDeploymentName": "base"}, "visiontune:batchDeploymentName must differ"),
        ({"promotionMargn": "0.1"}, "unknown config key(s): visiontune:promotionMargn"),
        ({"dropZonePrincipals": "not json"}, "visiontune:dropZonePrincipals must be a JSON/YAML list"),
        (
            {"dropZonePrincipals": json.dumps([{"principalType": "User"}])},
            "dropZonePrincipals[0] needs an objectId",
        ),
        (
            {"dropZonePrincipals": json.dumps([{"objectId": "x", "principalType": "Robot"}])},
            "principalType must be one of",
        ),
    ],
)
def test_bad_values_fail_naming_the_key(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(**raw)
    assert message in str(raised.value)


def test_drop_zone_principals_accept_objects_or_plain_ids() -> None:
    config = parse(dropZonePrincipals=json.dumps(["abc", {"objectId": "def", "principalType": "Group"}]))
    assert [(p.object_id, p.principal_type) for p in config.drop_zone_principals] == [
        ("abc", "User"),
        ("def", "Group"),
    ]


def test_example_stack_file_uses_only_known_keys() -> None:
    import re
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml.example"
    keys = set(re.findall(r"^\s*#?\s*visiontune:(\w+):", example.read_text(), flags=re.MULTILINE))
    assert keys, "no visiontune: keys in Pulumi.dev.yaml.example"
    assert keys <= set(known_keys()), f"unknown keys in the example: {sorted(keys - set(known_keys()))}"
    for wanted in ("location", "namePrefix", "baseModelName", "baseDeploymentCapacity", "instanceMemoryMb",
                   "maximumInstanceCount", "dropZonePrincipals", "eventGridSubscriptions",
                   camel_case("promotion_margin"), camel_case("max_run_usd"),
                   camel_case("advance_schedule")):  # fmt: skip
        assert wanted in keys, f"Pulumi.dev.yaml.example does not document visiontune:{wanted}"


def test_example_stack_file_is_a_valid_config() -> None:
    """Every value in the example passes the same validation ``pulumi up`` applies (as Pulumi passes
    them: scalars as text, lists as JSON)."""
    from pathlib import Path

    yaml = pytest.importorskip("yaml")
    example = Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml.example"
    values = yaml.safe_load(example.read_text())["config"]

    def as_config_text(value: object) -> str:
        if isinstance(value, (list, dict)):
            return json.dumps(value)
        return str(value).lower() if isinstance(value, bool) else str(value)

    raw = {key.split(":", 1)[1]: as_config_text(value) for key, value in values.items()}
    config = parse_config(raw, project="visiontune", stack="dev")
    assert config.app_tunables["VISIONTUNE_ADVANCE_SCHEDULE"] == "0 */5 * * * *"
    assert config.instance_memory_mb == 2048 and not config.event_grid_subscriptions
