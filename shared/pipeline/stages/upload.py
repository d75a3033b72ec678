"""``uploading`` -> ``training``: upload the training files (find-or-create by name and size), wait until
the service has processed them, then start the fine-tuning job (find-or-create by its training file)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from shared.aoai.files import file_state, upload_file
from shared.aoai.finetune import create_job, make_suffix
from shared.pipeline.context import Pipeline
from shared.pipeline.models import Run, RunState, utcnow
from shared.settings import Settings
from shared.storage.readers import open_blob_reader

FILE_POLL_SECONDS = 1.0


def upload_and_start_job(
    pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float, wait_for_files: float, **_: Any
) -> bool:
    """Upload the next file not uploaded yet (intent saved first), else wait up to ``wait_for_files`` for
    the service to process them and start the fine-tuning job on the base (or production) model."""

    client = pipeline.openai
    for uploaded in run.files:
        if uploaded.file_id is None:
            run.intent = {
                "action": "upload_file",
                "split": uploaded.split,
                "name": uploaded.name,
                "at": utcnow().isoformat(),
            }
            pipeline.store.save(run)
            blob = pipeline.training.get_blob_client(uploaded.blob)
            uploaded.file_id = upload_file(
                client,
                name=uploaded.name,
                size=uploaded.size,
                open_stream=partial(open_blob_reader, blob),
                purpose="fine-tune",
            )
            run.intent = None
            run.note(f"uploaded {uploaded.split} as {uploaded.file_id}")
            return True

    wait_until = min(deadline, time.monotonic() + wait_for_files)
    while True:
        # Every file has an id here: the loop above returns until each one is uploaded.
        states = {f.split: file_state(client, f.file_id) for f in run.files if f.file_id is not None}
        for uploaded in run.files:
            uploaded.status = states[uploaded.split].status
        broken = [(f, states[f.split]) for f in run.files if states[f.split].status == "error"]
        if broken:
            run.fail("upload", "; ".join(f"{f.name} ({f.file_id}): {s.error}" for f, s in broken))
            return True
        if all(s.processed for s in states.values()):
            break
        if time.monotonic() + FILE_POLL_SECONDS > wait_until:
            return False
        time.sleep(FILE_POLL_SECONDS)

    model = settings.base_model
    if settings.continue_from_production:
        production = pipeline.production(run.dataset)
        if production is not None and production.model:
            model = production.model
    run.job.model = model
    run.intent = {"action": "create_job", "model": model, "at": utcnow().isoformat()}
    pipeline.store.save(run)
    train = run.file("train")
    validation = run.file("validation")
    if train is None or train.file_id is None:
        run.fail("upload", "the run has no uploaded training file")
        return True
    job_id = create_job(
        client,
        model=model,
        training_file=train.file_id,
        validation_file=validation.file_id if validation else None,
        suffix=make_suffix(run.dataset),
        seed=settings.seed,
        n_epochs=settings.n_epochs,
        batch_size=settings.batch_size,
        learning_rate_multiplier=settings.learning_rate_multiplier,
        training_type=settings.training_type,
    )
    run.job.job_id = job_id
    run.job.started_at = utcnow()
    run.intent = None
    run.transition(RunState.TRAINING, f"fine-tuning job {job_id} on {model}")
    return True
