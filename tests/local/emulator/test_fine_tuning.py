"""Fine-tuning jobs through the openai SDK: status path, events, checkpoints, results.csv, errors."""

from __future__ import annotations

import csv
import io
import re
import time

import openai
import pytest

from local.emulator.admin import EmulatorAdmin
from local.emulator.clients import openai_client, v1_client
from local.emulator.constants import BASE_MODEL
from shared.aoai.finetune import RESULTS_COLUMNS
from tests.fixtures.emulator import (
    FAST_STEP_SECONDS,
    digit_split,
    digits_examples,
    fine_tune,
    to_jsonl,
    upload_processed,
)

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def training_data() -> tuple[bytes, bytes]:
    train, held_out = digit_split()
    return to_jsonl(digits_examples(train[:150])), to_jsonl(digits_examples(held_out[:40]))


def test_job_walks_every_status_and_reports_like_azure(emulator, training_data):
    files = openai_client(emulator.url)
    train = upload_processed(files, training_data[0])
    validation = upload_processed(files, training_data[1], name="validation.jsonl")
    client = v1_client(emulator.url)  # the v1 API declares `method`; Learn documents `trainingType` on it
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=train.id,
        validation_file=validation.id,
        suffix="digits-v1",
        seed=11,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 8}}},
        extra_body={"trainingType": "globalstandard"},
    )
    assert job.id.startswith("ftjob-") and job.status == "pending"
    seen = [job.status]
    while seen[-1] not in ("succeeded", "failed", "cancelled"):
        status = client.fine_tuning.jobs.retrieve(job.id).status
        if status != seen[-1]:
            seen.append(status)
        time.sleep(FAST_STEP_SECONDS / 4)
    assert seen == ["pending", "validating_files", "queued", "running", "succeeded"]

    done = client.fine_tuning.jobs.retrieve(job.id)
    assert re.fullmatch(rf"{re.escape(BASE_MODEL)}\.ft-[0-9a-f]{{32}}-digits-v1", done.fine_tuned_model)
    assert done.hyperparameters.n_epochs == 4 and done.hyperparameters.batch_size == 8
    assert done.trained_tokens > 4 * 150 * 85  # images (85 each) plus text, times epochs
    assert done.seed == 11 and done.finished_at >= done.created_at

    results = client.files.retrieve(done.result_files[0])
    assert results.filename == "results.csv" and results.purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(client.files.content(results.id).text)))
    assert tuple(rows[0].keys()) == RESULTS_COLUMNS  # the columns the pipeline reads from Azure's results.csv
    assert int(rows[-1]["step"]) == 4 * -(-150 // 8)  # steps of batch_size examples
    assert [int(r["step"]) for r in rows] == sorted({int(r["step"]) for r in rows})
    assert all(row["valid_loss"] for row in rows)
    full_valid = [row for row in rows if row["full_valid_loss"]]
    assert len(full_valid) == 4  # once per epoch
    # The learner really learns: late training loss below the first steps'.
    early = sum(float(r["train_loss"]) for r in rows[:10]) / 10
    late = sum(float(r["train_loss"]) for r in rows[-10:]) / 10
    assert late < early

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert len(checkpoints) == 3  # the last 3 epochs
    assert all(c.id.startswith("ftchkpt-") for c in checkpoints)
    steps = [c.step_number for c in checkpoints]
    assert steps == sorted(steps, reverse=True) and steps[0] == int(rows[-1]["step"])
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{steps[0]}"

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    messages = [e.message for e in events]
    assert messages[0] == "The job has successfully completed"
    assert messages[-1].startswith("Job enqueued")
    assert sum(e.type == "metrics" for e in events) == 4
    page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(page.data) == 2 and page.has_more


def test_top_level_hyperparameters_and_auto(emulator, small_fine_tuned_job):
    assert small_fine_tuned_job.hyperparameters.n_epochs == 3
    assert small_fine_tuned_job.hyperparameters.batch_size >= 1
    assert small_fine_tuned_job.fine_tuned_model.endswith("-small")


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"suffix": "this-suffix-is-far-too-long"}, "suffix"),
        ({"suffix": "bad suffix!"}, "suffix"),
        ({"model": "gpt-35-turbo-0301"}, "model"),
        ({"hyperparameters": {"n_epochs": 0}}, "n_epochs"),
        ({"extra_body": {"trainingType": "turbo"}}, "trainingType"),
        ({"method": {"type": "dpo", "dpo": {}}}, "method"),
        ({"training_file": "file-doesnotexist"}, "training_file"),
    ],
)
def test_invalid_create_requests_are_refused(emulator, small_fine_tuned_job, overrides, param):
    client = v1_client(emulator.url)
    request = {"model": BASE_MODEL, "training_file": small_fine_tuned_job.training_file, **overrides}
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(**request)
    assert refused.value.body.get("param") == param


def test_a_file_that_is_not_processed_cannot_start_a_job(emulator_factory, training_data):
    server = emulator_factory(file_processing_seconds=30)
    client = openai_client(server.url)
    pending = client.files.create(file=("train.jsonl", training_data[0]), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=pending.id)
    assert "still being processed" in refused.value.body["message"]
    assert client.files.retrieve(pending.id).status == "pending"


def test_cancel_and_list(emulator_factory, training_data):
    server = emulator_factory(step_seconds=5)
    client = openai_client(server.url)
    train = upload_processed(client, training_data[0])
    job = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=train.id)
    assert [e.message for e in client.fine_tuning.jobs.list_events(job.id)] == [
        "Job enqueued. Waiting for jobs ahead to complete."
    ]
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data == []
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
    second = client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=train.id)
    listed = [j.id for j in client.fine_tuning.jobs.list()]
    assert listed == [second.id, job.id]  # newest first
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1, after=second.id)] == [job.id]


def test_injected_job_failure(emulator_factory, training_data):
    server = emulator_factory()
    client = openai_client(server.url)
    with EmulatorAdmin(server.url) as admin:
        admin.fail_next_job("Training data contains images that violate the usage policy.", code="invalid_training_file")
    job = fine_tune(client, training_data[0])
    assert job.status == "failed"
    assert job.error.code == "invalid_training_file"
    assert "violate the usage policy" in job.error.message
    assert job.fine_tuned_model is None
    events = client.fine_tuning.jobs.list_events(job.id).data
    assert events[0].level == "error" and "violate the usage policy" in events[0].message


def test_continued_fine_tuning_starts_from_the_parent(emulator, small_fine_tuned_job, training_data):
    client = openai_client(emulator.url)
    child = fine_tune(
        client, training_data[1], model=small_fine_tuned_job.fine_tuned_model,
        hyperparameters={"n_epochs": 1}, suffix="more",
    )
    assert child.status == "succeeded", child.error
    assert child.model == small_fine_tuned_job.fine_tuned_model
    assert child.fine_tuned_model.startswith(f"{BASE_MODEL}.ft-") and child.fine_tuned_model.endswith("-more")
    rows = list(csv.DictReader(io.StringIO(client.files.content(child.result_files[0]).text)))
    # One epoch over the parent's 120 examples plus the 40 new ones.
    assert int(rows[-1]["step"]) == -(-(120 + 40) // child.hyperparameters.batch_size)


def test_job_ids_not_found(emulator):
    client = openai_client(emulator.url)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-0000")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list_events("ftjob-0000")
