"""``retry_run``: a failed or cancelled run starts again from the stage it stopped in, reusing what
exists: the uploaded files (unless cleanup deleted them), a job that is still running, and above all a
fine-tuned model that was paid for (a run that failed at ``deploy``, e.g. with ``QuotaExceeded``, goes back
to ``trained`` and deploys again). Triggered by dropping the dataset's ``_READY`` marker (or archive)
again, or by ``visiontune retry DATASET VERSION``.

Where it restarts (``retry_point``):
- the job succeeded (a fine-tuned model exists): ``trained`` -> deploy, evaluate (finished evaluation
  roles are kept; unfinished ones start again, their batch files were deleted by the cleanup);
- a job is still running: ``training`` (polled again);
- files are planned but no usable job: ``uploading`` (files the cleanup deleted are uploaded again);
- nothing uploaded yet: ``converted`` (the budget is checked again).
"""

from __future__ import annotations

import logging
import time

from shared.aoai.finetune import TERMINAL_JOB_STATUSES
from shared.pipeline.context import RUN_LEASE_SECONDS, Pipeline
from shared.pipeline.models import JobInfo, Run, RunState
from shared.pipeline.store import ConcurrentUpdateError

log = logging.getLogger(__name__)

RETRYABLE_STATES = frozenset({RunState.FAILED, RunState.CANCELLED})
CLAIM_ATTEMPTS = 10
CLAIM_WAIT_SECONDS = 1.0


def retry_point(run: Run) -> RunState:
    """The state a failed or cancelled ``run`` restarts in (see the module docstring)."""
    if run.job.fine_tuned_model and run.job.status == "succeeded":
        return RunState.TRAINED
    if run.job.job_id and run.job.status not in TERMINAL_JOB_STATUSES:
        return RunState.TRAINING
    if run.files:
        return RunState.UPLOADING
    return RunState.CONVERTED


def reopen_for_retry(run: Run, reason: str) -> RunState:
    """Put a failed or cancelled ``run`` back in its ``retry_point``, forgetting only what cannot be
    reused. Returns the new state. ``ValueError`` if the run is not failed or cancelled."""
    if run.state not in RETRYABLE_STATES:
        raise ValueError(f"{run.key} is {run.state.value}; only failed or cancelled runs can be retried")
    target = retry_point(run)
    previous = run.failure
    if target in (RunState.UPLOADING, RunState.CONVERTED):
        for uploaded in run.files:
            if uploaded.deleted or uploaded.status == "error":  # gone, or refused: upload again
                uploaded.file_id, uploaded.status, uploaded.deleted = None, None, False
        run.job = JobInfo()  # the failed or cancelled job is not reused: a new one is started
    if target is RunState.TRAINED:
        for attribute in ("candidate", "production_deployment"):
            info = getattr(run, attribute)
            if info is not None and info.deleted_at is not None:
                setattr(run, attribute, None)  # deleted by the cleanup: deploy again (same name)
        run.evaluation = {role: p for role, p in run.evaluation.items() if p.done}
        run.decision = None
    run.intent = None
    run.failure = None
    run.report_written_for = None
    was = f"{run.state.value} at {previous.stage}" if previous else run.state.value
    run.transition(target, f"retry ({reason}): was {was}; restarting from {target.value}")
    return target


def retry_run(pipeline: Pipeline, dataset: str, version: str, reason: str) -> Run | None:
    """Reopen ``dataset``/``version`` for a retry if it is failed or cancelled, under its lease (If-Match,
    so of concurrent retries exactly one reopens it). Returns the run as saved or found (None: no run).
    Raises ``ConcurrentUpdateError`` when another worker kept it leased."""
    for _ in range(CLAIM_ATTEMPTS):
        run = pipeline.store.get(dataset, version)
        if run is None or run.state not in RETRYABLE_STATES:
            return run
        claimed = pipeline.store.claim(dataset, version, seconds=RUN_LEASE_SECONDS)
        if claimed is None:
            time.sleep(CLAIM_WAIT_SECONDS)
            continue
        if claimed.state not in RETRYABLE_STATES:
            return claimed
        target = reopen_for_retry(claimed, reason)
        claimed.lease = None
        try:
            saved = pipeline.store.save(claimed)
        except ConcurrentUpdateError:
            continue
        log.info("%s: retrying from %s (%s)", saved.key, target.value, reason)
        return saved
    raise ConcurrentUpdateError(f"{dataset}/{version} stayed leased by another worker; it was not retried")
