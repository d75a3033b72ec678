"""The blob clients' retry policy: a dropped connection is retried at once (then after short waits), an
answer asking to slow down (or a timeout) waits the Storage SDK's backoff, and both go through the clients
built from the settings."""

from __future__ import annotations

import logging
import time

import pytest


def _settings(count: int, *, error=None, status: int | None = None) -> dict:
    from azure.core.pipeline.policies import RequestHistory
    from azure.core.rest import HttpRequest

    request = HttpRequest("GET", "http://127.0.0.1:1/devstoreaccount1/c/b.jpg?sig=SECRET")
    response = None
    if status is not None:
        response = type("Response", (), {"status_code": status})()
    return {"count": count, "history": [RequestHistory(request, http_response=response, error=error)]}


@pytest.mark.parametrize("count, floor, ceiling", [(1, 0.0, 0.05), (2, 0.25, 0.5), (3, 0.5, 1.0), (4, 1.0, 2.0)])
def test_a_connection_dropped_without_an_answer_is_retried_quickly(count, floor, ceiling, caplog):
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    from shared.storage.retry import storage_retry_policy

    policy = storage_retry_policy(3)
    for error in (ServiceRequestError("Connection refused"), ServiceResponseError("Connection reset by peer")):
        with caplog.at_level(logging.WARNING, logger="shared.storage.retry"):
            waits = [policy.get_backoff_time(_settings(count, error=error)) for _ in range(50)]
        assert floor <= min(waits) and max(waits) <= ceiling
    assert "GET http://127.0.0.1:1/devstoreaccount1/c/b.jpg failed (ServiceResponseError" in caplog.text
    assert "SECRET" not in caplog.text


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_an_answer_asking_to_slow_down_waits_the_sdk_backoff(status):
    from azure.storage.blob import ExponentialRetry

    from shared.storage.retry import storage_retry_policy

    policy, sdk = storage_retry_policy(3), ExponentialRetry()
    waits = [policy.get_backoff_time(_settings(1, status=status)) for _ in range(50)]
    assert min(waits) >= 15 - sdk.random_jitter_range  # 15 + 3 ** 1, jittered by 3
    assert max(waits) <= 18 + sdk.random_jitter_range


def test_a_timeout_waits_the_sdk_backoff():
    from azure.core.exceptions import ServiceRequestTimeoutError, ServiceResponseTimeoutError

    from shared.storage.retry import storage_retry_policy

    policy = storage_retry_policy(3)
    for error in (ServiceRequestTimeoutError("connect timed out"), ServiceResponseTimeoutError("read timed out")):
        assert policy.get_backoff_time(_settings(1, error=error)) >= 12


def test_the_settings_client_retries_a_dropped_connection_at_once(azurite_connection_string, unique_name, monkeypatch):
    """On Azurite, through ``blob_service_client``: the first request goes out on a connection that fails
    without an answer (as a pooled connection the server just closed); the call succeeds well before the
    SDK's 15 s backoff would have ended."""
    from azure.core.exceptions import ServiceResponseError

    from shared.settings import Settings
    from shared.storage import clients

    clients._service_client.cache_clear()
    settings = Settings.model_validate({"AzureWebJobsStorage": azurite_connection_string})
    service = clients.blob_service_client(settings)
    container = service.get_container_client(unique_name("retry"))
    container.create_container()
    try:
        container.upload_blob("photo.jpg", b"jpeg bytes")
        transport = service._pipeline._transport
        send = transport.send
        failures = []

        def send_once_dropped(request, **kwargs):
            if not failures:
                failures.append(request.method)
                raise ServiceResponseError("Connection aborted: RemoteDisconnected")
            return send(request, **kwargs)

        monkeypatch.setattr(transport, "send", send_once_dropped)
        started = time.monotonic()
        assert container.download_blob("photo.jpg").readall() == b"jpeg bytes"
        assert failures == ["GET"]
        assert time.monotonic() - started < 3
    finally:
        monkeypatch.undo()
        container.delete_container()
        clients._service_client.cache_clear()
