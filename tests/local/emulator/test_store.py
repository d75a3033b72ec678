"""A restarted emulator on the same data dir keeps files, jobs, batches and deployments; clocks go on."""

from __future__ import annotations

import pytest

from local.emulator.admin import EmulatorAdmin
from local.emulator.clients import management_client, openai_client
from local.emulator.constants import ACCOUNT, BASE_MODEL, BATCH_DEPLOYMENT, RESOURCE_GROUP
from tests.fixtures.emulator import (
    deploy_model,
    digit_messages,
    digit_split,
    digits_examples,
    fine_tune,
    to_jsonl,
    upload_processed,
    wait_until,
)

pytestmark = pytest.mark.emulator


def test_state_survives_a_restart(emulator_factory, tmp_path):
    data_dir = tmp_path / "state"
    first = emulator_factory(data_dir)
    client = openai_client(first.url)
    train, held_out = digit_split()
    job = fine_tune(client, to_jsonl(digits_examples(train[:100])), suffix="keep", hyperparameters={"n_epochs": 2})
    assert job.status == "succeeded"
    deploy_model(management_client(first.url), "kept", job.fine_tuned_model)
    answers = [
        client.chat.completions.create(model="kept", messages=digit_messages(i), temperature=0).choices[0].message.content
        for i in held_out[:15]
    ]
    batch_line = {"custom_id": "a", "method": "POST", "url": "/chat/completions",
                  "body": {"model": BATCH_DEPLOYMENT, "messages": digit_messages(1)}}
    batch_file = upload_processed(client, to_jsonl([batch_line]), purpose="batch")
    with EmulatorAdmin(first.url) as admin:
        admin.advance_clock(0)  # the clock offset is persisted too (exercised by the second server)
    slow_job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=job.training_file)
    batch = client.batches.create(input_file_id=batch_file.id, endpoint="/chat/completions", completion_window="24h")
    files_before = {f.id for f in client.files.list()}
    first.stop()

    second = emulator_factory(data_dir)
    client = openai_client(second.url)
    assert {f.id for f in client.files.list()} >= files_before
    assert client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == job.fine_tuned_model
    kept = management_client(second.url).deployments.get(RESOURCE_GROUP, ACCOUNT, "kept")
    assert kept.properties.model.name == job.fine_tuned_model
    again = [
        client.chat.completions.create(model="kept", messages=digit_messages(i), temperature=0).choices[0].message.content
        for i in held_out[:15]
    ]
    assert again == answers
    # Jobs and batches that were under way go on from wall time.
    assert wait_until(lambda: client.fine_tuning.jobs.retrieve(slow_job.id).status == "succeeded", timeout=30)
    assert wait_until(lambda: client.batches.retrieve(batch.id).status == "completed", timeout=30)
    assert client.files.content(client.batches.retrieve(batch.id).output_file_id).text.count("\n") == 1


def test_advance_clock_moves_long_jobs_on(emulator_factory):
    server = emulator_factory(step_seconds=3600)
    client = openai_client(server.url)
    training = upload_processed(client, to_jsonl(digits_examples(digit_split()[0][:30])))
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=training.id, hyperparameters={"n_epochs": 1})
    assert client.fine_tuning.jobs.retrieve(job.id).status == "pending"
    with EmulatorAdmin(server.url) as admin:
        admin.advance_clock(2 * 3600 + 1)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
        admin.advance_clock(10 * 3600)
    assert wait_until(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "succeeded")
