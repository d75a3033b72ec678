"""Move runs forward in bounded steps: upload -> fine-tune -> deploy -> evaluate -> decide -> promote or
reject -> clean up and report. This module is the driver (leases, the step loop, error recording); each
stage lives in ``shared.pipeline.stages``, production.json bookkeeping in ``shared.pipeline.production``.

Every step follows the same rules (the architecture note's):
- the run is leased (``RunStore.claim``) so two workers never advance it at once; the lease is short and
  renewed by a heartbeat while the steps run (``RunStore.keep_lease``), so a killed worker delays its
  run by at most ``RUN_LEASE_SECONDS`` and a long step is never taken over;
- intent is saved before a remote side effect and the result right after; every remote create is a
  find-or-create (a file by name and size, a job by its training file, a deployment by its name, a batch
  by its input file), so a crash between the two saves is resumed without a duplicate;
- a transient error schedules a retry with backoff (Retry-After honoured), a permanent one or the last
  attempt fails the run with the stage and the service's message; a terminal run then deletes what it
  created that costs money (deployments, running jobs, files) and writes its report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from shared.pipeline.context import RUN_LEASE_RENEW_SECONDS, RUN_LEASE_SECONDS, Pipeline
from shared.pipeline.failures import record_step_error, retry_due
from shared.pipeline.models import RetryState, Run, RunState, utcnow
from shared.pipeline.production import retire_due_deployments
from shared.pipeline.scheduled import continue_scheduled_evaluations
from shared.pipeline.stages.budget import check_budget
from shared.pipeline.stages.deploy import deploy_candidate, poll_candidate_deployment
from shared.pipeline.stages.evaluation import evaluate, plan_evaluation
from shared.pipeline.stages.finish import deployments_to_delete, files_to_delete, finish, job_to_cancel
from shared.pipeline.stages.job import poll_job
from shared.pipeline.stages.promotion import await_approval, decide_and_act
from shared.pipeline.stages.upload import upload_and_start_job
from shared.pipeline.store import ConcurrentUpdateError
from shared.settings import Settings
from shared.telemetry import note, run_scope, set_run_state, step

log = logging.getLogger(__name__)

STEPS_PER_TICK = 60
# One timer tick works at most this many evaluation budgets (``eval_tick_seconds``) over all runs.
TICK_BUDGET_FACTOR = 2

# The stage name a live state's errors are recorded under (retry bounds, the failure's stage).
STAGES = {
    RunState.CONVERTED: "budget",
    RunState.UPLOADING: "upload",
    RunState.TRAINING: "training",
    RunState.TRAINED: "deploy",
    RunState.AWAITING_DEPLOYMENT_SLOT: "deploy",
    RunState.DEPLOYING: "deploy",
    RunState.DEPLOYED: "evaluate",
    RunState.EVALUATING: "evaluate",
    RunState.EVALUATED: "promote",
    RunState.AWAITING_APPROVAL: "approval",
}

# One step of a live run: ``handler(pipeline, settings, run, deadline=..., wait_for_files=...)`` returns
# whether it progressed (False: it waits on something remote).
StepHandler = Callable[..., bool]
HANDLERS: dict[RunState, StepHandler] = {
    RunState.CONVERTED: check_budget,
    RunState.UPLOADING: upload_and_start_job,
    RunState.TRAINING: poll_job,
    RunState.TRAINED: deploy_candidate,
    RunState.AWAITING_DEPLOYMENT_SLOT: deploy_candidate,
    RunState.DEPLOYING: poll_candidate_deployment,
    RunState.DEPLOYED: plan_evaluation,
    RunState.EVALUATING: evaluate,
    RunState.EVALUATED: decide_and_act,
    RunState.AWAITING_APPROVAL: await_approval,
}


def advance_all_runs(settings: Settings) -> dict[str, str]:
    """One timer tick: advance every run that has work left (each within ``eval_tick_seconds``), delete
    production deployments whose rollback window has passed, and continue scheduled evaluations.
    One run's trouble never stops the others. Returns ``{"<dataset>/<version>": state}`` of what it touched.

    Every record of a run's work carries its dataset, version and (current) state (``telemetry.step``);
    runs left for the next tick are a count on the invocation's summary (``runs_waiting_for_next_tick``)."""

    pipeline = Pipeline(settings)
    touched: dict[str, str] = {}
    tick_deadline = time.monotonic() + TICK_BUDGET_FACTOR * settings.eval_tick_seconds
    # Quick steps first (polls, deploys, cleanup), then the evaluations, which use what time is left.
    runs = sorted(
        (r for r in pipeline.store.list(unsettled_only=True) if needs_work(r)),
        key=lambda r: r.state is RunState.EVALUATING,
    )
    for run in runs:
        deadline = min(time.monotonic() + settings.eval_tick_seconds, tick_deadline)
        if deadline <= time.monotonic():
            log.debug("tick budget used up; %s waits for the next tick", run.key)
            note(runs_waiting_for_next_tick=1)
            continue
        with step("advance", run.dataset, run.version, run.state.value):
            try:
                result = advance_run(pipeline, run.dataset, run.version, deadline=deadline)
            except Exception:  # noqa: BLE001 - isolate runs; the error is logged and retried next tick
                log.exception("advancing %s failed", run.key)
                continue
        if result is not None:
            touched[result.key] = result.state.value
    for dataset in pipeline.store.datasets():
        with run_scope(dataset):
            try:
                retire_due_deployments(pipeline, dataset)
            except Exception:  # noqa: BLE001
                log.exception("retiring old production deployments of %s failed", dataset)
    try:
        continue_scheduled_evaluations(pipeline)
    except Exception:  # noqa: BLE001
        log.exception("continuing scheduled evaluations failed")
    return touched


def needs_work(run: Run) -> bool:
    """True while a run is live, or terminal with cleanup or its final report still to do."""
    if not run.terminal:
        return True
    return bool(
        deployments_to_delete(run)
        or files_to_delete(run)
        or job_to_cancel(run)
        or run.report_written_for != run.state.value
    )


def advance_run(
    pipeline: Pipeline, dataset: str, version: str, *, deadline: float, wait_for_files: float = 0.0
) -> Run | None:
    """Advance one run until it waits on something remote, hits ``deadline`` (``time.monotonic()``), or
    is done. ``wait_for_files``: seconds to wait for uploaded files to be processed (the training trigger
    waits a little so the job starts without waiting for the next tick). Returns the run as saved, or None
    when another worker holds it."""
    run = pipeline.store.claim(dataset, version, seconds=RUN_LEASE_SECONDS)
    if run is None:
        return None
    set_run_state(run.state.value)
    try:
        with pipeline.store.keep_lease(run, seconds=RUN_LEASE_SECONDS, every=RUN_LEASE_RENEW_SECONDS):
            _advance_claimed(pipeline, run, deadline=deadline, wait_for_files=wait_for_files)
        run.lease = None
        return pipeline.store.save(run)
    except ConcurrentUpdateError:
        log.warning("%s was changed by another worker; leaving it to them", run.key)
        return None


def _advance_claimed(pipeline: Pipeline, run: Run, *, deadline: float, wait_for_files: float) -> None:
    """The step loop of a run this worker holds the lease of (saved after every step)."""
    for _ in range(STEPS_PER_TICK):
        if not retry_due(run) or time.monotonic() >= deadline:
            break
        settings = run.effective_settings(pipeline.settings)
        retry_before = run.retry
        try:
            progressed = _step(pipeline, settings, run, deadline=deadline, wait_for_files=wait_for_files)
            if run.retry is not None and run.retry is retry_before:
                # The step worked: retries are bounded per run of consecutive failures, not per stage
                # lifetime (a 4 h training must not fail after a few blips hours apart).
                run.retry = None
        except ConcurrentUpdateError:
            raise
        except Exception as error:  # noqa: BLE001 - classified and recorded on the run
            if run._lease_lost:  # whatever failed, this copy must not be saved over the new holder's
                raise ConcurrentUpdateError(f"{run.key}: its lease was lost") from error
            progressed = _record_error(run, error, settings)
        pipeline.store.save(run)
        set_run_state(run.state.value)  # the records of the next step carry the state it starts from
        if not progressed:
            break


def _record_error(run: Run, error: Exception, settings: Settings) -> bool:
    if run.terminal:  # cleanup of a finished run: log, keep the run as it is, try again next tick
        log.warning("%s: cleanup failed (will retry): %s", run.key, error)
        run.note(f"cleanup: {error}")
        run.retry = RetryState(
            stage="cleanup",
            attempts=1,
            next_attempt_at=utcnow() + timedelta(seconds=settings.retry_base_seconds),
            last_error=str(error),
        )
        return False
    stage = STAGES.get(run.state, run.state.value)
    log.warning("%s: %s step failed: %s", run.key, stage, error)
    return record_step_error(run, stage, error, settings)  # failed -> progressed (cleanup follows)


def _step(
    pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float, wait_for_files: float
) -> bool:
    if run.terminal:
        return finish(pipeline, settings, run)
    return HANDLERS[run.state](pipeline, settings, run, deadline=deadline, wait_for_files=wait_for_files)
