"""Batch API through the openai SDK: status path, output order, request counts, failures, expiry, cancel."""

from __future__ import annotations

import json
import time

import openai
import pytest

from local.emulator.admin import EmulatorAdmin
from local.emulator.clients import openai_client
from local.emulator.constants import BASE_DEPLOYMENT, BATCH_DEPLOYMENT
from tests.fixtures.emulator import (
    DIGIT_LABELS,
    FAST_STEP_SECONDS,
    deploy_model,
    digit_messages,
    digit_split,
    to_jsonl,
    upload_processed,
    wait_until,
)

pytestmark = pytest.mark.emulator
TERMINAL = ("completed", "failed", "expired", "cancelled")


def _batch_input(indices: list[int], model: str = BATCH_DEPLOYMENT) -> bytes:
    return to_jsonl(
        [
            {
                "custom_id": f"digit-{i}",
                "method": "POST",
                "url": "/chat/completions",
                "body": {"model": model, "messages": digit_messages(i), "temperature": 0},
            }
            for i in indices
        ]
    )


def _run(client, content: bytes) -> tuple[object, list[str]]:
    input_file = upload_processed(client, content, purpose="batch", name="batch.jsonl")
    assert input_file.status == "processed"
    batch = client.batches.create(input_file_id=input_file.id, endpoint="/chat/completions", completion_window="24h")
    seen = [batch.status]
    while seen[-1] not in TERMINAL:
        status = client.batches.retrieve(batch.id).status
        if status != seen[-1]:
            seen.append(status)
        time.sleep(FAST_STEP_SECONDS / 4)
    return client.batches.retrieve(batch.id), seen


def test_batch_completes_with_shuffled_output(emulator):
    client = openai_client(emulator.url)
    indices = digit_split()[1][:60]
    batch, seen = _run(client, _batch_input(indices))
    # Polling under load may miss a short state; the order and the timestamps of every state must hold.
    lifecycle = ["validating", "in_progress", "finalizing", "completed"]
    assert seen[0] == "validating" and seen[-1] == "completed"
    assert seen == [state for state in lifecycle if state in seen]
    assert batch.in_progress_at is not None and batch.finalizing_at is not None
    assert batch.request_counts.total == 60
    assert batch.request_counts.completed + batch.request_counts.failed == 60
    assert batch.completed_at >= batch.finalizing_at >= batch.in_progress_at >= batch.created_at
    lines = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    custom_ids = [line["custom_id"] for line in lines]
    assert sorted(custom_ids) == sorted(f"digit-{i}" for i in indices)
    assert custom_ids != [f"digit-{i}" for i in indices]  # not in input order: join on custom_id
    first = lines[0]["response"]
    assert first["status_code"] == 200
    assert first["body"]["usage"]["prompt_tokens"] >= 85
    answers = [line["response"]["body"]["choices"][0]["message"]["content"] for line in lines]
    assert sum(answer in DIGIT_LABELS for answer in answers) >= 45  # the base model mostly answers with a label
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output" and output.status == "processed"
    assert batch.id in [b.id for b in client.batches.list()]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (BASE_DEPLOYMENT, "GlobalBatch"),
        ("no-such-deployment", "does not exist"),
    ],
)
def test_batch_needs_a_global_batch_deployment(emulator, model, expected):
    client = openai_client(emulator.url)
    batch, seen = _run(client, _batch_input([1, 2, 3], model=model))
    assert seen == ["validating", "failed"]
    assert expected in batch.errors.data[0].message
    assert batch.output_file_id is None


def test_batch_lines_must_share_one_model(emulator):
    client = openai_client(emulator.url)
    mixed = _batch_input([1, 2]) + _batch_input([3], model="other")
    batch, _ = _run(client, mixed)
    assert batch.status == "failed"
    assert batch.errors.data[0].line == 3 and "same model" in batch.errors.data[0].message


def test_a_line_whose_body_has_an_undeclared_field_fails_the_batch(emulator):
    client = openai_client(emulator.url)
    line = json.loads(_batch_input([2]))
    line["body"]["top_k"] = 5  # not a field of CreateChatCompletionRequest
    batch, seen = _run(client, _batch_input([1]) + to_jsonl([line]))
    assert seen == ["validating", "failed"]
    error = batch.errors.data[0]
    assert error.line == 2 and "field 'top_k' is not declared" in error.message and "openai-openapi.yaml" in error.message


def test_batch_with_a_fine_tuned_model_fails(emulator, small_fine_tuned_job):
    from local.emulator.clients import management_client
    from local.emulator.constants import ACCOUNT, RESOURCE_GROUP

    deploy_model(management_client(emulator.url), "ft-for-batch", small_fine_tuned_job.fine_tuned_model, "Standard")
    batch, _ = _run(openai_client(emulator.url), _batch_input([1], model="ft-for-batch"))
    assert batch.status == "failed"
    management_client(emulator.url).deployments.begin_delete(RESOURCE_GROUP, ACCOUNT, "ft-for-batch").result()


def test_batch_create_validation(emulator):
    client = openai_client(emulator.url)
    fine_tune_file = upload_processed(client, b"{}\n")
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        client.batches.create(input_file_id=fine_tune_file.id, endpoint="/chat/completions", completion_window="24h")
    assert "purpose" in wrong_purpose.value.body["message"]
    batch_file = upload_processed(client, _batch_input([1]), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        client.batches.create(input_file_id=batch_file.id, endpoint="/chat/completions", completion_window="1h")  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


def test_expired_and_cancelled_batches(emulator_factory):
    server = emulator_factory()
    client = openai_client(server.url)
    with EmulatorAdmin(server.url) as admin:
        admin.expire_next_batch()
    expired, seen = _run(client, _batch_input([1, 2, 3]))
    assert seen == ["validating", "in_progress", "expired"]
    assert expired.expired_at is not None and expired.request_counts.failed == 3
    errors = [json.loads(line) for line in client.files.content(expired.error_file_id).text.splitlines()]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}

    batch_file = upload_processed(client, _batch_input([4, 5]), purpose="batch")
    batch = client.batches.create(input_file_id=batch_file.id, endpoint="/chat/completions", completion_window="24h")
    assert client.batches.cancel(batch.id).status == "cancelling"
    done = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "cancelled" and b)
    assert done.cancelled_at >= done.cancelling_at and done.output_file_id is None
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)
