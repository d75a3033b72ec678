"""Client construction (the key locally, Entra ID otherwise; one surface per operation), and Azure OpenAI
and ARM endpoints that accept a connection and never answer (issue 13, item 5): the data-plane and
deployments clients give up after the configured read timeout (and their bounded
retries) with a clear error, instead of hanging a function until the host kills it."""

from __future__ import annotations

import time

import pytest

from shared.aoai import clients
from shared.aoai.clients import clear_client_cache, management_client, openai_client
from shared.pipeline.failures import describe
from shared.settings import Settings
from tests.shared.storage.test_clients import silent_server  # noqa: F401 - the fixture


@pytest.fixture
def silent_settings(silent_server):  # noqa: F811
    clear_client_cache()
    url = f"http://127.0.0.1:{silent_server}"
    yield Settings.model_validate(
        {
            "AZURE_OPENAI_ENDPOINT": url,
            "AZURE_OPENAI_API_KEY": "local-key",
            "AZURE_MANAGEMENT_ENDPOINT": url,
            "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
            "AZURE_RESOURCE_GROUP": "rg",
            "AZURE_OPENAI_ACCOUNT": "account",
            "VISIONTUNE_AOAI_CONNECT_TIMEOUT": "1",
            "VISIONTUNE_AOAI_READ_TIMEOUT": "0.5",
        }
    )
    clear_client_cache()


def test_a_silent_openai_endpoint_fails_in_seconds_with_a_clear_error(silent_settings):
    import openai

    client = openai_client(silent_settings)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as caught:
        client.models.list()
    assert time.monotonic() - started < 60  # 6 attempts of 0.5 s plus the SDK's backoff, not minutes
    assert "did not answer in time" in describe(caught.value)


def test_a_silent_arm_endpoint_fails_in_seconds_with_a_clear_error(silent_settings):
    from azure.core.exceptions import ServiceResponseError

    client = management_client(silent_settings)
    started = time.monotonic()
    with pytest.raises(ServiceResponseError) as caught:
        list(client.deployments.list("rg", "account"))
    assert time.monotonic() - started < 60
    assert "did not answer within VISIONTUNE_AOAI_READ_TIMEOUT" in describe(caught.value)


def test_openai_client_uses_the_key_locally_and_entra_id_otherwise() -> None:
    clients.clear_client_cache()
    local = Settings(AZURE_OPENAI_ENDPOINT="http://127.0.0.1:1", AZURE_OPENAI_API_KEY="k")
    azure = Settings(AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com", AZURE_CLIENT_ID="00000000-1111")
    local_client = clients.openai_client(local)
    assert clients.openai_client(local) is local_client
    assert local_client.dated.api_key == "k" and local_client.v1.api_key == "k"
    assert local_client.dated.max_retries == local_client.v1.max_retries == clients.OPENAI_MAX_RETRIES
    azure_client = clients.openai_client(azure)
    assert azure_client is not local_client
    assert azure_client.dated._azure_ad_token_provider is not None
    assert callable(azure_client.v1._api_key_provider)
    with pytest.raises(Exception, match="AZURE_OPENAI_ENDPOINT"):
        clients.openai_client(Settings())


def test_each_operation_goes_to_the_surface_chosen_for_it() -> None:
    clients.clear_client_cache()
    client = clients.openai_client(Settings(AZURE_OPENAI_ENDPOINT="https://x.openai.azure.com/", AZURE_OPENAI_API_KEY="k"))
    assert str(client.v1.base_url) == "https://x.openai.azure.com/openai/v1/"
    assert client.dated._api_version == "2024-10-21"
    assert client.fine_tuning is client.v1.fine_tuning and client.chat is client.v1.chat
    for dated in ("files", "uploads", "models", "batches"):
        assert getattr(client, dated) is getattr(client.dated, dated)
