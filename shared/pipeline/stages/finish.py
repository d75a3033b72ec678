"""A terminal run (``promoted``, ``rejected``, ``failed``, ``cancelled``, ``over_budget``): delete what
it created that costs money (deployments first, then a running job, then its files), then write its
report and the dataset's index, one bounded step at a time."""

from __future__ import annotations

from typing import Any

from shared.aoai.files import delete_file
from shared.aoai.finetune import TERMINAL_JOB_STATUSES, cancel_job
from shared.pipeline.context import Pipeline
from shared.pipeline.models import DeploymentInfo, Run, RunState, utcnow
from shared.pipeline.reports import publish_index, publish_run_report
from shared.pipeline.resource_limits import deployment_operation_running, note_once, wait_reason
from shared.settings import Settings


def deployments_to_delete(run: Run) -> list[DeploymentInfo]:
    live = run.live_deployments()
    if run.state is RunState.PROMOTED:
        serving = run.production_deployment if run.production_deployment is not None else run.candidate
        return [d for d in live if d is not serving]
    return live


def files_to_delete(run: Run) -> list[str]:
    ids = [f.file_id for f in run.files if f.file_id and not f.deleted]
    for role in run.evaluation.values():
        ids.extend(role.remote_files)
    return ids


def job_to_cancel(run: Run) -> bool:
    return (
        bool(run.job.job_id)
        and run.state is not RunState.PROMOTED
        and (run.job.status not in TERMINAL_JOB_STATUSES)
        and run.state in (RunState.FAILED, RunState.CANCELLED)
    )


def finish(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Delete what a finished run no longer needs (deployments first: they cost by the hour), cancel a
    job still running, delete its files from the resource (file quota), then write the report + index."""
    if job_to_cancel(run):
        cancel_job(pipeline.openai, str(run.job.job_id))
        run.job.status = "cancelled"
        run.note(f"cancelled job {run.job.job_id}")
        return True
    for info in deployments_to_delete(run):
        busy = deployment_operation_running(pipeline, besides=info.name)
        if busy is not None:  # ARM: one deployment operation per account at a time
            note_once(run, wait_reason(busy))
            return False
        pipeline.deployments.delete(info.name)
        info.deleted_at = utcnow()
        run.note(f"deleted deployment {info.name}")
        return True
    if files_to_delete(run):
        for uploaded in run.files:
            if uploaded.file_id and not uploaded.deleted:
                delete_file(pipeline.openai, uploaded.file_id)
                uploaded.deleted = True
        for role in run.evaluation.values():
            for file_id in list(role.remote_files):
                delete_file(pipeline.openai, file_id)
                role.remote_files.remove(file_id)
        run.note("deleted the run's files from the Azure OpenAI resource")
        return True
    if run.report_written_for != run.state.value:
        publish_run_report(pipeline, run)
        run.report_written_for = run.state.value
        pipeline.store.save(run)
        publish_index(pipeline, run.dataset)
        return True
    return False
