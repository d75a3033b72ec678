"""``trained`` -> ``deploying`` -> ``deployed``: deploy the candidate model (non-blocking, find-or-create
by name) and poll it; a failed deployment is asked for again with backoff, a bounded number of times."""

from __future__ import annotations

from typing import Any

from shared.aoai.deployments import (
    DeploymentConflictError,
    DeploymentError,
    TransientDeploymentError,
    deployable_sku,
    deployment_name,
)
from shared.pipeline.context import Pipeline
from shared.pipeline.failures import STAGE_MIN_ATTEMPTS, record_step_error
from shared.pipeline.models import DeploymentInfo, Run, RunState, utcnow
from shared.pipeline.resource_limits import (
    deployment_operation_running,
    deployment_slot_ready,
    note_once,
    wait_reason,
)
from shared.settings import Settings


def request_deployment(pipeline: Pipeline, settings: Settings, run: Run, info: DeploymentInfo) -> bool:
    """Record the intent, then ask for the deployment (non-blocking, find-or-create by name). Gives up
    (``DeploymentError``, with the service's last message) after the stage's bounded attempts.

    ARM runs one deployment operation per account at a time (409 ``RequestConflict`` otherwise): while
    another deployment of the account is being created, updated or deleted nothing is sent, the run says
    so on its timeline and this returns False (asked again on a later tick, no attempt counted)."""

    busy = deployment_operation_running(pipeline, besides=info.name)
    if busy is not None:
        note_once(run, wait_reason(busy))
        return False

    limit = STAGE_MIN_ATTEMPTS["deploy"]
    if info.attempts >= limit:
        last = f"; last error: {info.last_error}" if info.last_error else ""
        raise DeploymentError(f"deployment {info.name} did not succeed after {info.attempts} attempts{last}")
    info.attempts += 1
    info.requested_at = info.requested_at or utcnow()
    run.intent = {"action": "deploy", "name": info.name, "at": utcnow().isoformat()}
    pipeline.store.save(run)
    try:
        state = pipeline.deployments.begin_create(
            info.name, model=info.model, sku=info.sku, capacity=settings.deployment_capacity
        )
    except DeploymentConflictError as conflict:  # another worker started one between the check and the PUT
        info.attempts -= 1
        run.intent = None
        note_once(run, f"waiting: {conflict}")
        return False
    info.state = state.provisioning_state
    info.operation_url = state.operation_url or info.operation_url
    run.intent = None
    return True


def deploy_candidate(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Ask for the candidate deployment (on a SKU the fine-tuned model can use) and move to ``deploying``.
    With every fine-tuned deployment slot of the resource taken the run waits in
    ``awaiting_deployment_slot`` (never fails for it; see ``resource_limits.deployment_slot_ready``)."""

    if run.candidate is None:
        model = str(run.job.fine_tuned_model)
        sku = deployable_sku(settings.candidate_sku, model, fallback=settings.production_sku)
        if sku != settings.candidate_sku:
            run.note(f"{settings.candidate_sku} is for the gpt-4.1 family only: {model} is deployed as {sku}")
        run.candidate = DeploymentInfo(
            name=deployment_name(run.dataset, run.version, "cand"), model=model, sku=sku
        )
    if run.candidate.requested_at is None:
        ready, waiting_for = deployment_slot_ready(pipeline, settings, run, run.candidate.name)
        if not ready:
            if run.state is RunState.AWAITING_DEPLOYMENT_SLOT:
                note_once(run, waiting_for)
            else:
                run.transition(RunState.AWAITING_DEPLOYMENT_SLOT, waiting_for)
                return True
            return False
    if not request_deployment(pipeline, settings, run, run.candidate):
        return False
    run.transition(RunState.DEPLOYING, f"{run.candidate.name} ({run.candidate.sku}): {run.candidate.state}")
    return True


def poll_candidate_deployment(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """``deployed`` once the candidate deployment succeeded; back to ``trained`` (asked again, with backoff)
    when it failed or is gone."""

    assert run.candidate is not None
    state = pipeline.deployments.get(run.candidate.name, operation_url=run.candidate.operation_url)
    if state is None:
        run.transition(RunState.TRAINED, f"{run.candidate.name} is not there; asking again")
        return True
    run.candidate.state = state.provisioning_state
    if state.succeeded:
        run.candidate.ready_at = utcnow()
        run.transition(RunState.DEPLOYED, f"{run.candidate.name} is ready")
        return True
    if state.failed:
        run.candidate.last_error = state.error or state.provisioning_state
        run.transition(RunState.TRAINED, f"{run.candidate.name} provisioning failed: {state.error}")
        # counted as a transient deploy error: backoff, and bounded by the deployment's attempts
        record_step_error(
            run,
            "deploy",
            TransientDeploymentError(f"deployment {run.candidate.name} failed: {run.candidate.last_error}"),
            settings,
        )
        return False
    return False
