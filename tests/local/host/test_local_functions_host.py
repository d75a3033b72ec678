"""The local functions host, driving a small sample app against a real Azurite."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from local.host import IndexingError, LocalFunctionsHost
from local.host.blobs import HOSTS_CONTAINER, POISON_QUEUE

SAMPLE_APP = Path(__file__).parent / "sample_app"


def read_calls(path: Path, function: str = "on_text") -> list[dict]:
    if not path.exists():
        return []
    return [c for c in map(json.loads, path.read_text().splitlines()) if c["function"] == function]


@pytest.fixture
def calls_file(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


@pytest.fixture
def make_host(azurite, fresh_container, calls_file):
    """``make_host(**kwargs)``: a host on the sample app with this test's container; stopped after the test."""
    hosts: list[LocalFunctionsHost] = []

    def make(
        app_root: Path = SAMPLE_APP, settings: dict[str, str | None] | None = None, **kwargs
    ) -> LocalFunctionsHost:
        base = {
            "AzureWebJobsStorage": azurite.connection_string,
            "SAMPLE_CONTAINER": fresh_container,
            "SAMPLE_CALLS_FILE": str(calls_file),
            "SAMPLE_SCHEDULE": "0 0 3 * * *",
        }
        kwargs.setdefault("retry_delay", 0)
        merged = {k: v for k, v in {**base, **(settings or {})}.items() if v is not None}  # None: leave unset
        host = LocalFunctionsHost(app_root, settings=merged, **kwargs)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.stop()


def upload(blob_service, container: str, name: str, body: bytes, **kwargs) -> str:
    return blob_service.get_blob_client(container, name).upload_blob(body, overwrite=True, **kwargs)["etag"]


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
    before = queue.get_queue_properties().approximate_message_count if _queue_exists(queue) else 0

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


def _queue_exists(queue: QueueClient) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


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


def test_background_watcher_and_timer_fire_while_running(
    make_host, blob_service, fresh_container, calls_file
):
    host = make_host(settings={"SAMPLE_SCHEDULE": "* * * * * *"}, poll_interval=0.2)
    host.start()
    upload(blob_service, fresh_container, "in/live.txt", b"live")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        not read_calls(calls_file) or len(read_calls(calls_file, "on_tick")) < 2
    ):
        time.sleep(0.1)
    assert [c["body"] for c in read_calls(calls_file)] == ["live"]
    ticks = read_calls(calls_file, "on_tick")
    assert len(ticks) >= 2 and not any(t["past_due"] for t in ticks)
    host.stop()
    assert {i.function_name for i in host.history} == {"on_text", "on_tick"}


def test_an_invocation_keeps_what_its_handler_logs_at_info_on_its_thread(make_host) -> None:
    """As the Python worker forwards logs: the root logger at INFO while the host lives, records the
    handler emits on its own thread attributed to the invocation, with their custom attributes."""
    import logging

    root = logging.getLogger()
    before = root.level
    host = make_host()
    assert root.getEffectiveLevel() <= logging.INFO
    invocation = host.tick("on_tick")
    assert invocation.log_count == 1, invocation.logs
    [record] = invocation.logs
    assert (record["level"], record["logger"], record["message"]) == ("INFO", "sample", "ticked")
    assert record["dimensions"]["sample.key"] == "value"
    assert "logs" not in invocation.to_json() and invocation.to_json()["log_count"] == 1
    host.stop()
    assert root.level == before and all(type(h).__name__ != "_InvocationLogs" for h in root.handlers)


def test_tick_runs_a_timer_now_and_a_blob_function_on_a_given_blob(
    make_host, blob_service, fresh_container, calls_file
):
    host = make_host()
    invocation = host.tick("on_tick")
    assert (invocation.outcome, invocation.trigger_type, invocation.schedule) == (
        "succeeded",
        "timerTrigger",
        "0 0 3 * * *",
    )
    (tick,) = read_calls(calls_file, "on_tick")
    assert tick["past_due"] is False
    upload(blob_service, fresh_container, "in/x.txt", b"x")
    assert host.tick("on_text", blob_path=f"{fresh_container}/in/x.txt").succeeded
    with pytest.raises(ValueError, match="does not match"):
        host.tick("on_text", blob_path=f"{fresh_container}/in/x.png")
    with pytest.raises(KeyError, match="on_tick"):
        host.tick("nope")


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


def test_bounded_concurrency(make_host, blob_service, fresh_container):
    host = make_host(settings={"SAMPLE_DELAY": "0.2"}, max_workers=2)
    module = sys.modules[host.function("on_text").handler.__module__]
    module.most_active = 0
    for index in range(6):
        upload(blob_service, fresh_container, f"in/{index}.txt", b"x")
    assert len(host.run_once()) == 6
    assert module.most_active == 2


def http(
    method: str, url: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_http_routes_and_admin(make_host, calls_file):
    host = make_host(http_port=0)
    host.start()
    base = host.http_url
    status, headers, body = http("GET", f"{base}/api/items/7?q=1", headers={"x-sample": "s"})
    assert (
        status == 200
        and headers["x-echo"] == "yes"
        and headers["Content-Type"].startswith("application/json")
    )
    assert json.loads(body) == {
        "method": "GET",
        "route_params": {"id": "7"},
        "params": {"q": "1"},
        "body": "",
        "header": "s",
    }
    status, _, body = http("POST", f"{base}/api/items/7/more", body=b"payload")
    assert status == 201
    assert (
        json.loads(body)["route_params"] == {"id": "7", "detail": "more"}
        and json.loads(body)["body"] == "payload"
    )
    assert http("GET", f"{base}/api/items/notanint")[0] == 404
    assert http("DELETE", f"{base}/api/items/7")[0] == 405
    assert http("GET", f"{base}/elsewhere")[0] == 404
    status, _, body = http("GET", f"{base}/api/boom")
    assert status == 500
    assert any(
        i.function_name == "boom" and i.outcome == "failed" and "boom" in i.error for i in host.history
    )

    assert json.loads(http("GET", f"{base}/admin/host/status")[2])["state"] == "Running"
    assert {f["name"] for f in json.loads(http("GET", f"{base}/admin/functions")[2])} == {
        "on_text",
        "on_archive",
        "on_tick",
        "echo",
        "boom",
    }
    status, _, body = http("POST", f"{base}/admin/functions/on_tick", body=b"{}")
    assert status == 202 and json.loads(body)["outcome"] == "succeeded"
    assert len(read_calls(calls_file, "on_tick")) == 1
    assert http("POST", f"{base}/admin/functions/missing", body=b"{}")[0] == 404


def test_http_routes_answer_while_long_blob_triggers_run(make_host, blob_service, fresh_container):
    """Issue 13: a request never waits behind long trigger work (its own pool, not the triggers')."""
    host = make_host(http_port=0, settings={"SAMPLE_DELAY": "6"}, max_workers=1, poll_interval=0.1)
    module = sys.modules[host.function("on_text").handler.__module__]
    module.active = 0
    for index in range(2):
        upload(blob_service, fresh_container, f"in/slow-{index}.txt", b"x")
    host.start()
    deadline = time.monotonic() + 20
    while module.active == 0:  # a long blob-triggered call is running and another one is queued
        assert time.monotonic() < deadline, "the blob trigger never ran"
        time.sleep(0.05)
    started = time.monotonic()
    status, _, body = http("GET", f"{host.http_url}/api/items/7")
    took = time.monotonic() - started
    assert status == 200 and json.loads(body)["route_params"] == {"id": "7"}
    assert took < 1.0, f"the route waited {took:.1f} s behind the blob trigger"
    assert module.active == 1  # still running when the answer came


def test_settings_resolution_local_settings_file_and_environment_restore(
    make_host, tmp_path, fresh_container
):
    app_root = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, app_root)
    (app_root / "local.settings.json").write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "SAMPLE_SCHEDULE": "0 */5 * * * *",
                    "SAMPLE_FROM_FILE": "file",
                    "SAMPLE_CONTAINER": "from-file",
                },
            }
        )
    )
    assert "SAMPLE_FROM_FILE" not in os.environ
    host = make_host(
        app_root, settings={"SAMPLE_SCHEDULE": None}
    )  # explicit SAMPLE_CONTAINER wins over the file
    info = {f.name: f for f in host.functions()}
    assert info["on_text"].path == f"{fresh_container}/in/{{name}}.txt"
    assert info["on_tick"].schedule == "0 */5 * * * *"
    assert (info["echo"].route, info["echo"].methods) == ("items/{id:int}/{detail?}", ("GET", "POST"))
    assert [o["type"] for o in info["on_text"].outputs] == ["blob"]
    assert os.environ["SAMPLE_FROM_FILE"] == "file"
    host.stop()
    assert "SAMPLE_FROM_FILE" not in os.environ and "SAMPLE_CONTAINER" not in os.environ


def test_missing_setting_reference_is_named(tmp_path, azurite):
    with pytest.raises(IndexingError, match="%SAMPLE_CONTAINER%"):
        LocalFunctionsHost(
            SAMPLE_APP,
            settings={"AzureWebJobsStorage": azurite.connection_string, "SAMPLE_SCHEDULE": "0 0 3 * * *"},
        )
