"""The pipeline's side of Azure OpenAI's per-resource limits (the planning itself is ``shared.aoai.limits``):

- the fine-tuning file quota (1 GB in total, 512 MB per file, 50 files): checked before anything is
  uploaded, counting what is on the resource; files of finished runs are deleted first when that makes
  room, otherwise the run stops with what to cut and how;
- fine-tuned deployment slots (5 per resource): a run that needs one waits in ``awaiting_deployment_slot``;
  a previous production deployment kept for its rollback window may be retired early to free one;
- one deployment operation per account at a time (ARM's 409 ``RequestConflict``): every deployment write
  and delete first checks that no other deployment operation is running, and waits otherwise.
"""

from __future__ import annotations

import logging

from shared.aoai.deployments import DeploymentState
from shared.aoai.files import delete_file, list_files
from shared.aoai.limits import Expendable, RemoteFile, plan_deployment_slot, plan_fine_tune_files
from shared.pipeline.context import Pipeline
from shared.pipeline.models import Run
from shared.settings import Settings

log = logging.getLogger(__name__)


def note_once(run: Run, detail: str) -> None:
    """Add ``detail`` to the run's timeline unless it is already the last entry (a run that waits says
    so once, not on every tick)."""
    if not (run.transitions and run.transitions[-1].detail == detail):
        run.note(detail)


# --- one deployment operation per account --------------------------------------------------------
def deployment_operation_running(pipeline: Pipeline, *, besides: str | None = None) -> DeploymentState | None:
    """A deployment of the account (other than ``besides``) whose create, update or delete is still
    running; ARM answers any other deployment write or delete with 409 ``RequestConflict`` meanwhile."""
    state = pipeline.deployments.operation_in_progress()
    if state is None or state.name == besides:
        return None
    return state


def wait_reason(state: DeploymentState) -> str:
    return (
        f"waiting: deployment {state.name} is {str(state.provisioning_state).lower()}, and Azure allows one "
        "deployment operation per account at a time"
    )


# --- fine-tuning file quota ----------------------------------------------------------------------
def _files_of_finished_runs(pipeline: Pipeline) -> set[str]:
    """Ids of fine-tuning files that belong to runs that have ended (their cleanup may not have run)."""
    ids: set[str] = set()
    for run in pipeline.store.list():
        if run.terminal:
            ids.update(f.file_id for f in run.files if f.file_id and not f.deleted)
    return ids


def make_room_for_training_files(pipeline: Pipeline, settings: Settings, run: Run) -> str | None:
    """Check the files ``run`` is about to upload against the resource's fine-tuning file quota, counting
    the files already there. When deleting files of finished runs makes room they are deleted (and said on
    the timeline); when nothing can make room, returns the failure message (how much to cut and how)."""
    needed = {f.name: f.size for f in run.files if f.file_id is None}
    if not needed:
        return None
    expendable = _files_of_finished_runs(pipeline)
    remote = [
        RemoteFile(id=f.id, name=str(f.filename), bytes=int(f.bytes or 0), expendable=f.id in expendable)
        for f in list_files(pipeline.openai, purpose="fine-tune")
        if str(getattr(f, "status", "")) not in ("deleted", "deleting")
    ]
    plan = plan_fine_tune_files(
        needed,
        remote,
        max_total_bytes=settings.fine_tune_files_max_bytes,
        max_file_bytes=settings.fine_tune_file_max_bytes,
        max_files=settings.fine_tune_files_max_count,
    )
    if not plan.fits:
        return plan.problem
    for file_id in plan.delete:
        delete_file(pipeline.openai, file_id)
    if plan.delete:
        run.note(
            f"deleted {len(plan.delete)} fine-tuning file(s) of finished runs to stay inside the resource's "
            f"{settings.fine_tune_files_max_bytes / 1024**2:,.0f} MB file quota: {', '.join(plan.delete)}"
        )
    return None


# --- fine-tuned deployment slots ------------------------------------------------------------------
def expendable_deployments(pipeline: Pipeline) -> list[Expendable]:
    """Previous production deployments still kept for their rollback window (every dataset): they hold a
    fine-tuned deployment slot but serve nothing."""
    found: list[Expendable] = []
    for dataset in pipeline.store.datasets():
        record = pipeline.production(dataset)
        for entry in record.retired if record is not None else []:
            name = entry.deployment
            if name and entry.deleted_at is None and record is not None and name != record.deployment:
                found.append(Expendable(deployment=name, dataset=dataset, retired_at=entry.retired_at))
    return found


def retire_early(pipeline: Pipeline, expendable: Expendable, reason: str) -> None:
    """Delete a rollback-window deployment before its time and record it in its dataset's production.json."""
    pipeline.deployments.delete(expendable.deployment)
    pipeline.record_deleted_deployments(expendable.dataset, [expendable.deployment], early=reason)


def deployment_slot_ready(pipeline: Pipeline, settings: Settings, run: Run, name: str) -> tuple[bool, str]:
    """Is there a fine-tuned deployment slot for deployment ``name`` of ``run``
    (``VISIONTUNE_MAX_FINE_TUNED_DEPLOYMENTS``; Azure: 5 per resource)? When all are taken and a previous
    production deployment is only kept for its rollback window, the oldest such one is deleted now (the
    slot is free once ARM has deleted it, on a later tick). Returns (ready, what the run waits for)."""
    deployments = pipeline.deployments.list()
    plan = plan_deployment_slot(
        name,
        [(d.name, d.model) for d in deployments],
        expendable_deployments(pipeline),
        limit=settings.max_fine_tuned_deployments,
    )
    if plan.free:
        return True, ""
    taken = f"all {plan.limit} fine-tuned deployment slots of the resource are taken ({', '.join(plan.holders)})"
    if plan.retire is None:
        return False, f"{taken}; waiting for one to be deleted"
    busy = deployment_operation_running(pipeline)
    if busy is not None:
        return False, f"{taken}; {wait_reason(busy)}"
    retire_early(
        pipeline,
        plan.retire,
        f"retired before the end of its rollback window to free a deployment slot for {run.key}",
    )
    log.info("%s: retired %s early to free a deployment slot", run.key, plan.retire.deployment)
    return False, (
        f"{taken}; deleting {plan.retire.deployment} (the previous production model of {plan.retire.dataset}, "
        "kept for rollback) early to free one"
    )
