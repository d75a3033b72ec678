"""Storage that accepts a connection and never answers (issue 13, item 5): calls fail after the
configured read timeout and retries with a clear error, instead of hanging `visiontune status`."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def silent_server():
    """A TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                held.append(connection)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def _connection_string(port: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def test_a_silent_storage_fails_fast_with_a_clear_error(silent_server):
    from azure.core.exceptions import ServiceResponseError

    from shared.pipeline.status import collect_status
    from shared.settings import Settings

    settings = Settings.model_validate(
        {
            "AzureWebJobsStorage": _connection_string(silent_server),
            "VISIONTUNE_STORAGE_READ_TIMEOUT": "1",
            "VISIONTUNE_STORAGE_RETRIES": "1",
        }
    )
    started = time.monotonic()
    with pytest.raises(ServiceResponseError):
        collect_status(settings, None)
    assert time.monotonic() - started < 30


def test_visiontune_status_against_a_silent_storage_says_so(silent_server, tmp_path):
    settings = tmp_path / "local.settings.json"
    values = {
        "AzureWebJobsStorage": _connection_string(silent_server),
        "VISIONTUNE_STORAGE_READ_TIMEOUT": "1",
        "VISIONTUNE_STORAGE_RETRIES": "0",
    }
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    done = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--settings", str(settings)],
        cwd=REPO, capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 2, done.stderr
    assert "accepted the connection but did not answer in time" in done.stderr


def test_every_settings_client_comes_from_the_one_patch_point(monkeypatch):
    """Benchmarks and tests replace ``_service_client`` to inject a transport: the service and container
    clients built from the settings must all come from it."""
    from shared.settings import Settings
    from shared.storage import clients

    made = []

    class FakeService:
        def get_container_client(self, name):
            return ("container", name)

    def fake_service_client(*args, **kwargs):
        made.append(args)
        return FakeService()

    monkeypatch.setattr(clients, "_service_client", fake_service_client)
    settings = Settings.model_validate({"AzureWebJobsStorage": _connection_string(10000)})
    assert isinstance(clients.blob_service_client(settings), FakeService)
    assert clients.container_client(settings, "datasets") == ("container", "datasets")
    assert [args[0] for args in made] == [_connection_string(10000)] * 2


def test_read_sas_on_azure_is_a_user_delegation_sas(monkeypatch):
    """With a token credential (managed identity: no account key) the worker processes' read SAS is signed with
    a user delegation key the identity asks for, never an account key."""
    from azure.storage.blob import BlobServiceClient, UserDelegationKey

    from shared.storage.clients import container_read_sas

    asked: list[tuple[object, object]] = []

    def delegation_key(self, start, expiry, **kwargs):
        asked.append((start, expiry))
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
        key.signed_start, key.signed_expiry = "2026-11-30T00:00:00Z", "2026-11-30T02:00:00Z"
        key.signed_service, key.signed_version = "b", "2025-01-05"
        key.value = "a2V5"  # base64
        return key

    class TokenCredential:
        def get_token(self, *scopes, **kwargs):  # pragma: no cover - never called: no request is sent
            raise AssertionError("no request")

    monkeypatch.setattr(BlobServiceClient, "get_user_delegation_key", delegation_key)
    container = BlobServiceClient("https://acct.blob.core.windows.net", credential=TokenCredential()).get_container_client(
        "datasets"
    )
    sas = dict(part.split("=", 1) for part in container_read_sas(container).split("&"))
    assert len(asked) == 1
    assert sas["sp"] == "rl" and sas["sr"] == "c"  # read and list, the container
    assert sas["skoid"] == "11111111-1111-1111-1111-111111111111"  # signed by the identity's delegation key
    start, expiry = asked[0]
    assert 3000 < (expiry - start).total_seconds() < 3901  # one hour (and the clock-skew margin)


def test_one_user_delegation_key_serves_every_sas_for_ten_minutes(monkeypatch):
    """An assembly signs a URL per source blob: on Azure they share one delegation key (one request), made
    again once the key is ``DELEGATION_KEY_REUSE_SECONDS`` old; another credential gets its own."""
    from azure.storage.blob import BlobServiceClient, UserDelegationKey

    from shared.storage import clients

    asked: list[object] = []

    def delegation_key(self, start, expiry, **kwargs):
        asked.append(self.credential)
        key = UserDelegationKey()
        key.signed_oid, key.signed_tid = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
        key.signed_start, key.signed_expiry = "2026-11-30T00:00:00Z", "2026-11-30T02:00:00Z"
        key.signed_service, key.signed_version = "b", "2025-01-05"
        key.value = "a2V5"
        return key

    class TokenCredential:
        def get_token(self, *scopes, **kwargs):  # pragma: no cover - never called: no request is sent
            raise AssertionError("no request")

    now = [1000.0]
    monkeypatch.setattr(clients.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(BlobServiceClient, "get_user_delegation_key", delegation_key)
    identity, other = TokenCredential(), TokenCredential()

    def container(credential, name):
        return BlobServiceClient("https://acct.blob.core.windows.net", credential=credential).get_container_client(name)

    training = container(identity, "training")
    urls = [clients.readable_url(training, f"_shards/part-{k}.jsonl") for k in range(5)]
    assert len(asked) == 1 and len(set(urls)) == 5 and all("skoid=" in url for url in urls)
    clients.container_read_sas(container(identity, "datasets"))
    assert len(asked) == 1  # same credential and account
    clients.readable_url(container(other, "training"), "x")
    assert len(asked) == 2
    now[0] += clients.DELEGATION_KEY_REUSE_SECONDS + 1
    clients.readable_url(training, "_shards/part-0.jsonl")
    assert len(asked) == 3
