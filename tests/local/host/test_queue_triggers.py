"""Queue triggers on Azurite queues: decoding, dequeue count, retries, poison queue, host.json knobs."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from local.host.host import LocalFunctionsHost
from local.host.queues import QueueOptions

QUEUE_APP = Path(__file__).parent / "queue_app"


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    shutil.copytree(QUEUE_APP, root)
    return root


@pytest.fixture
def make_host(azurite, unique_name, tmp_path):
    hosts: list[LocalFunctionsHost] = []
    queue = unique_name("q")

    def make(app_root: Path, host_json: dict | None = None, **kwargs) -> LocalFunctionsHost:
        if host_json is not None:
            (app_root / "host.json").write_text(json.dumps({"version": "2.0", **host_json}))
        settings = {
            "AzureWebJobsStorage": azurite.connection_string,
            "SAMPLE_QUEUE": queue,
            "SAMPLE_CALLS_FILE": str(tmp_path / "calls.jsonl"),
        }
        host = LocalFunctionsHost(app_root, settings=settings, use_local_settings_file=False, **kwargs)
        hosts.append(host)
        return host

    make.queue = queue
    make.calls = tmp_path / "calls.jsonl"
    yield make
    for host in hosts:
        host.stop()


def client(azurite, name: str) -> QueueClient:
    queue = QueueClient.from_connection_string(azurite.connection_string, name)
    try:
        queue.create_queue()
    except Exception:  # noqa: BLE001 - exists
        pass
    return queue


def send(azurite, name: str, body: dict) -> None:
    client(azurite, name).send_message(base64.b64encode(json.dumps(body).encode()).decode())


def calls(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_message_is_decoded_called_once_and_deleted(azurite, make_host, app_root):
    host = make_host(app_root)
    send(azurite, make_host.queue, {"n": 1})
    fired = host.run_until_idle(timeout=30)
    assert [(i.function_name, i.outcome) for i in fired] == [("on_message", "succeeded")], fired[0].error
    assert [(c["body"], c["dequeue_count"]) for c in calls(make_host.calls)] == [({"n": 1}, 1)]
    assert client(azurite, make_host.queue).peek_messages() == []


def test_a_failed_call_is_retried_with_a_growing_dequeue_count(azurite, make_host, app_root):
    host = make_host(app_root)
    send(azurite, make_host.queue, {"fail": 2})
    fired = host.run_until_idle(timeout=30)
    assert [i.outcome for i in fired] == ["failed", "failed", "succeeded"]
    assert [c["dequeue_count"] for c in calls(make_host.calls)] == [1, 2, 3]
    assert client(azurite, f"{make_host.queue}-poison").peek_messages() == []


def test_the_max_dequeue_count_th_failure_moves_the_message_to_the_poison_queue(azurite, make_host, app_root):
    host = make_host(app_root, {"extensions": {"queues": {"maxDequeueCount": 3}}})
    send(azurite, make_host.queue, {"fail": "always"})
    fired = host.run_until_idle(timeout=30)
    assert [i.outcome for i in fired] == ["failed", "failed", "poisoned"]
    assert [c["dequeue_count"] for c in calls(make_host.calls)] == [1, 2, 3]
    (poisoned,) = client(azurite, f"{make_host.queue}-poison").peek_messages()
    assert json.loads(base64.b64decode(poisoned.content)) == {"fail": "always"}  # the body as it was sent
    assert client(azurite, make_host.queue).peek_messages() == []


def test_a_message_dequeued_more_often_than_allowed_goes_to_poison_without_a_call(azurite, make_host, app_root):
    host = make_host(app_root, {"extensions": {"queues": {"maxDequeueCount": 2}}})
    queue = client(azurite, make_host.queue)
    send(azurite, make_host.queue, {"n": 1})
    for _ in range(2):  # two receives whose runs never ended (a host that died), made visible again
        (message,) = queue.receive_messages(max_messages=1, visibility_timeout=30)
        queue.update_message(message, visibility_timeout=0)
    fired = host.run_until_idle(timeout=30)
    assert [i.outcome for i in fired] == ["poisoned"]
    assert calls(make_host.calls) == []
    assert len(client(azurite, f"{make_host.queue}-poison").peek_messages()) == 1


def test_a_failed_message_stays_invisible_for_the_visibility_timeout(azurite, make_host, app_root):
    host = make_host(app_root, {"extensions": {"queues": {"visibilityTimeout": "00:00:30"}}})
    send(azurite, make_host.queue, {"fail": 1})
    fired = host.run_until_idle(timeout=30)
    assert [i.outcome for i in fired] == ["failed"]  # not retried at once: invisible for 30 s
    assert client(azurite, make_host.queue).peek_messages() == []  # peek sees visible messages only


def test_batch_size_bounds_the_messages_run_at_once(azurite, make_host, app_root):
    host = make_host(app_root, {"extensions": {"queues": {"batchSize": 2, "newBatchThreshold": 0}}}, max_workers=8)
    for n in range(4):
        send(azurite, make_host.queue, {"n": n, "sleep": 0.3})
    first = host.run_once()
    assert len(first) == 2  # one batch of batchSize messages
    assert len(host.run_until_idle(timeout=30)) == 2
    assert sorted(c["body"]["n"] for c in calls(make_host.calls)) == [0, 1, 2, 3]


def test_queue_output_binding_sends_each_item_base64(azurite, make_host, app_root):
    host = make_host(app_root)
    invocation = host.handle_http(
        "POST", "fan_out", url="http://127.0.0.1/api/fan_out", headers={}, params={},
        body=json.dumps([{"n": 1}, {"n": 2}]).encode(),
    )  # fmt: skip
    assert invocation is not None and invocation.outcome == "succeeded"
    host.run_until_idle(timeout=30)
    assert sorted(c["body"]["n"] for c in calls(make_host.calls)) == [1, 2]


def test_host_json_values_azure_refuses_are_refused(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": {"batchSize": 33}}}))
    with pytest.raises(ValueError, match="batchSize must be 1..32"):
        QueueOptions.from_host_json(tmp_path)
    (tmp_path / "host.json").write_text("{}")
    assert QueueOptions.from_host_json(tmp_path) == QueueOptions(16, 8, 5, 0.0, "base64")
