"""``training`` -> ``trained`` (or ``failed``/``cancelled``): poll the fine-tuning job and copy its status,
events, checkpoints and results onto the run."""

from __future__ import annotations

from typing import Any

from shared.aoai.finetune import job_snapshot
from shared.pipeline.context import Pipeline
from shared.pipeline.models import Run, RunState, utcnow
from shared.settings import Settings


def poll_job(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Copy the job's snapshot onto the run; ``trained`` when it succeeded, the run fails when it did not."""

    snapshot = job_snapshot(pipeline.openai, str(run.job.job_id))
    job = run.job
    changed = snapshot.status != job.status
    job.status = snapshot.status
    job.events = snapshot.events
    job.checkpoints = snapshot.checkpoints
    job.results = snapshot.results
    job.trained_tokens = snapshot.trained_tokens
    job.hyperparameters = dict(snapshot.hyperparameters)
    job.error = snapshot.error
    if snapshot.created_at:
        job.started_at = snapshot.created_at
    if changed and not snapshot.terminal:
        run.note(f"job {job.job_id}: {snapshot.status}")
    if not snapshot.terminal:
        return False
    job.finished_at = snapshot.finished_at or utcnow()
    if snapshot.succeeded:
        if not snapshot.fine_tuned_model:
            raise RuntimeError(f"job {job.job_id} succeeded without a fine_tuned_model")
        job.fine_tuned_model = snapshot.fine_tuned_model
        run.transition(
            RunState.TRAINED, f"{snapshot.fine_tuned_model} ({snapshot.trained_tokens or 0:,} tokens)"
        )
    else:
        message = snapshot.error or f"the job ended {snapshot.status}"
        run.fail(
            "training",
            f"job {job.job_id} {snapshot.status}: {message}",
            cancelled=snapshot.status == "cancelled",
        )
    return True
