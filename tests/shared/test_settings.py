"""The one settings object: environment names, local.settings.json merging, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.settings import LOCAL_ONLY_SETTINGS, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.environment_names():
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_usable_without_any_environment() -> None:
    settings = load_settings()
    assert settings.openai_api_version == "2024-10-21"
    assert settings.base_model == "gpt-4.1-2025-04-14"
    assert settings.max_side == 512 and settings.jpeg_quality == 85
    assert not settings.uses_api_key


def test_every_field_reads_its_own_environment_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://acct.openai.azure.com/")
    monkeypatch.setenv("VISIONTUNE_PROMOTION_MARGIN", "0.03")
    monkeypatch.setenv("VISIONTUNE_EPOCHS", "3")
    monkeypatch.setenv("AzureWebJobsStorage__blobServiceUri", "https://acct.blob.core.windows.net")
    settings = load_settings()
    assert settings.openai_endpoint == "https://acct.openai.azure.com/"
    assert settings.promotion_margin == pytest.approx(0.03)
    assert settings.n_epochs == 3
    assert settings.storage_blob_service_uri == "https://acct.blob.core.windows.net"


def test_environment_names_are_unique_and_cover_local_only_settings() -> None:
    names = Settings.environment_names()
    assert len(names) == len(set(names)) == len(Settings.model_fields)
    assert LOCAL_ONLY_SETTINGS <= set(names)
    assert Settings.environment_name("openai_endpoint") == "AZURE_OPENAI_ENDPOINT"


def test_local_settings_fill_what_the_environment_leaves_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "AZURE_OPENAI_ENDPOINT": "http://127.0.0.1:9999",
                    "AZURE_OPENAI_API_KEY": "k",
                    "VISIONTUNE_SEED": "7",
                    "FUNCTIONS_WORKER_RUNTIME": "python",
                },
            }
        )
    )
    monkeypatch.setenv("VISIONTUNE_SEED", "11")
    settings = load_settings(local_settings=path)
    assert settings.openai_endpoint == "http://127.0.0.1:9999"
    assert settings.uses_api_key
    assert settings.seed == 11  # the environment wins, as with Core Tools


def test_missing_local_settings_file_is_not_an_error(tmp_path: Path) -> None:
    assert load_settings(local_settings=tmp_path / "absent.json").openai_endpoint is None


def test_require_names_the_missing_environment_variables() -> None:
    settings = load_settings()
    with pytest.raises(SettingsError, match="AZURE_OPENAI_ENDPOINT.*AZURE_SUBSCRIPTION_ID"):
        settings.require("openai_endpoint", "subscription_id")
    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        settings.require_storage()


def test_invalid_values_fail_with_the_setting_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONTUNE_CANDIDATE_SKU", "Premium")
    with pytest.raises(ValueError, match="VISIONTUNE_CANDIDATE_SKU"):
        load_settings()


def test_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONTUNE_SEED", "1")
    assert load_settings(seed=5).seed == 5
