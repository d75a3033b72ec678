"""Blob triggers of the local functions host on a real Azurite: new and changed blobs, retries, poison,
receipts, SDK-type bindings."""

from __future__ import annotations

import base64
import json
import os

from azure.storage.queue import QueueClient

from local.host.blobs import HOSTS_CONTAINER, POISON_QUEUE
from tests.local.host.sample_host import queue_exists, read_calls, upload


def test_fires_once_per_new_blob_again_after_overwrite_and_not_for_other_blobs(
    make_host, blob_service, fresh_container, calls_file
):
    host = make_host()
    etag = upload(blob_service, fresh_container, "in/a.txt", b"hello", metadata={"who": "test"})
    upload(blob_service, fresh_container, "in/a.json", b"not text")  # wrong extension
    upload(blob_service, fresh_container, "other/b.txt", b"wrong folder")
    upload(blob_service, fresh_container, "in/deeper/c.txt", b"{name} is one segment")

    fired = host.run_once()
    assert [(i.function_name, i.blob_name, i.outcome, i.attempts) for i in fired] == [
        ("on_text", f"{fresh_container}/in/a.txt", "succeeded", 1)
    ]
    assert fired[0].etag == etag and fired[0].duration > 0
    (call,) = read_calls(calls_file)
    assert call["name"] == f"{fresh_container}/in/a.txt" and call["body"] == "hello" and call["length"] == 5
    assert call["etag"] == etag and call["metadata"] == {"who": "test"}
    assert call["uri"].endswith(f"/{fresh_container}/in/a.txt")
    # the blob output binding wrote its value with {name} from the trigger
    assert blob_service.get_blob_client(fresh_container, "out/a.upper").download_blob().readall() == b"HELLO"

    assert host.run_once() == []  # nothing new
    new_etag = upload(blob_service, fresh_container, "in/a.txt", b"changed")
    fired = host.run_once()
    assert [(i.blob_name, i.etag) for i in fired] == [(f"{fresh_container}/in/a.txt", new_etag)]
    assert [c["body"] for c in read_calls(calls_file)] == ["hello", "changed"]
    assert host.run_until_idle(timeout=10) == []


def test_retries_then_succeeds(make_host, blob_service, fresh_container, calls_file):
    host = make_host()
    upload(blob_service, fresh_container, "in/flaky.txt", b"fail-twice")
    (invocation,) = host.run_once()
    assert (invocation.outcome, invocation.attempts, invocation.error) == ("succeeded", 3, None)
    assert len(read_calls(calls_file)) == 3


def test_poison_after_five_failures(make_host, azurite, blob_service, fresh_container, calls_file):
    host = make_host()
    etag = upload(blob_service, fresh_container, "in/bad.txt", b"fail-always")
    queue = QueueClient.from_connection_string(azurite.connection_string, POISON_QUEUE)
    before = queue.get_queue_properties().approximate_message_count if queue_exists(queue) else 0

    (invocation,) = host.run_once()
    assert (invocation.outcome, invocation.attempts) == ("poisoned", 5)
    assert "refusing" in invocation.error
    assert len(read_calls(calls_file)) == 5

    messages = [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    assert {
        "Type": "BlobTrigger",
        "FunctionId": "Host.Functions.on_text",
        "BlobType": "BlockBlob",
        "ContainerName": fresh_container,
        "BlobName": "in/bad.txt",
        "ETag": etag,
    } in messages
    assert queue.get_queue_properties().approximate_message_count == before + 1
    assert host.run_once() == []  # a poisoned version is not retried forever


def test_restart_does_not_refire_processed_blobs(make_host, blob_service, fresh_container, calls_file):
    first = make_host()
    upload(blob_service, fresh_container, "in/one.txt", b"1")
    upload(blob_service, fresh_container, "in/two.txt", b"2")
    assert len(first.run_once()) == 2
    first.stop()

    second = make_host()
    assert second.run_once() == []
    etag = upload(blob_service, fresh_container, "in/two.txt", b"2 again")
    assert [(i.blob_name, i.etag) for i in second.run_once()] == [(f"{fresh_container}/in/two.txt", etag)]
    # the receipts are blobs in Azure's layout
    receipts = blob_service.get_container_client(HOSTS_CONTAINER).list_blobs(
        name_starts_with=f"blobreceipts/{second.host_id}/Host.Functions.on_text/"
    )
    assert sum(1 for r in receipts if r.name.endswith(f"/{fresh_container}/in/two.txt")) == 2


def test_sdk_type_trigger_gets_a_blob_client_and_nothing_is_downloaded(
    make_host, blob_service, fresh_container, calls_file, monkeypatch
):
    """``blob_sdk.BlobClient`` (deferred binding): the function gets a real client for the Azurite blob,
    built by the binding extension; the host itself never downloads the blob; retries work as usual."""
    from azure.storage.blob import BlobClient

    host = make_host()
    assert host.function("on_archive").deferred and not host.function("on_text").deferred
    downloads: list[str] = []
    original = BlobClient.download_blob

    def counting(self, *args, **kwargs):
        downloads.append(f"{self.blob_name}:{kwargs.get('length')}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "download_blob", counting)
    body = b"PK\x03\x04" + os.urandom(3 * 1024 * 1024)
    upload(blob_service, fresh_container, "big/a.bin", body)
    upload(blob_service, fresh_container, "big/b.bin", b"fail then work")
    fired = {i.blob_name: i for i in host.run_once()}
    first = fired[f"{fresh_container}/big/a.bin"]
    assert (first.function_name, first.outcome, first.attempts) == ("on_archive", "succeeded", 1)
    retried = fired[f"{fresh_container}/big/b.bin"]
    assert (retried.outcome, retried.attempts) == ("succeeded", 3)
    calls = {c["name"]: c for c in read_calls(calls_file, "on_archive")}
    assert calls["big/a.bin"]["type"] == "azure.storage.blob._blob_client.BlobClient"
    assert calls["big/a.bin"]["container"] == fresh_container
    assert calls["big/a.bin"]["size"] == len(body) and calls["big/a.bin"]["head"] == "PK\x03\x04"
    # Only the function's own 4-byte ranged reads: the host read nothing of either blob.
    assert sorted(downloads) == ["big/a.bin:4"] + ["big/b.bin:4"] * 3
