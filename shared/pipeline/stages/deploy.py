"""``trained`` -> ``deploying`` -> ``deployed``: deploy the candidate model (non-blocking, find-or-create
by name) and poll it; a failed deployment is asked for again with backoff, a bounded number of times."""

from __future__ import annotations

from typing import Any

from shared.pipeline.context import Pipeline
from shared.pipeline.failures import STAGE_MIN_ATTEMPTS, record_step_error
from shared.pipeline.models import DeploymentInfo, Run, RunState, utcnow
from shared.settings import Settings


def request_deployment(pipeline: Pipeline, settings: Settings, run: Run, info: DeploymentInfo) -> None:
    """Record the intent, then ask for the deployment (non-blocking, find-or-create by name). Gives up
    (``DeploymentError``, with the service's last message) after the stage's bounded attempts."""
    from shared.aoai.deployments import DeploymentError

    limit = STAGE_MIN_ATTEMPTS["deploy"]
    if info.attempts >= limit:
        last = f"; last error: {info.last_error}" if info.last_error else ""
        raise DeploymentError(f"deployment {info.name} did not succeed after {info.attempts} attempts{last}")
    info.attempts += 1
    info.requested_at = info.requested_at or utcnow()
    run.intent = {"action": "deploy", "name": info.name, "at": utcnow().isoformat()}
    pipeline.store.save(run)
    state = pipeline.deployments.begin_create(
        info.name, model=info.model, sku=info.sku, capacity=settings.deployment_capacity
    )
    info.state = state.provisioning_state
    info.operation_url = state.operation_url or info.operation_url
    run.intent = None


def deploy_candidate(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Ask for the candidate deployment (on a SKU the fine-tuned model can use) and move to ``deploying``."""
    from shared.aoai.deployments import deployable_sku, deployment_name

    if run.candidate is None:
        model = str(run.job.fine_tuned_model)
        sku = deployable_sku(settings.candidate_sku, model, fallback=settings.production_sku)
        if sku != settings.candidate_sku:
            run.note(f"{settings.candidate_sku} is for the gpt-4.1 family only: {model} is deployed as {sku}")
        run.candidate = DeploymentInfo(
            name=deployment_name(run.dataset, run.version, "cand"), model=model, sku=sku
        )
    request_deployment(pipeline, settings, run, run.candidate)
    run.transition(RunState.DEPLOYING, f"{run.candidate.name} ({run.candidate.sku}): {run.candidate.state}")
    return True


def poll_candidate_deployment(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """``deployed`` once the candidate deployment succeeded; back to ``trained`` (asked again, with backoff)
    when it failed or is gone."""
    from shared.aoai.deployments import TransientDeploymentError

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
