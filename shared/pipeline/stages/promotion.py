"""``evaluated`` -> ``promoted`` | ``rejected``: run the promotion gate on the answered examples, then
promote (deploying for production first when its SKU differs) or reject."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from shared.aoai.deployments import deployment_name
from shared.evaluation.gate import decide_promotion
from shared.events import hosting_cost_per_hour
from shared.pipeline.context import Pipeline
from shared.pipeline.evaluate import error_share, load_examples
from shared.pipeline.models import DeploymentInfo, Run, RunState, utcnow
from shared.pipeline.production import record_incumbent_measurement, record_promotion
from shared.pipeline.resource_limits import deployment_slot_ready, note_once
from shared.pipeline.stages.deploy import request_deployment
from shared.settings import Settings

MAX_ERROR_SHARE = 0.5


def decide_and_act(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Decide (first step), then reject, or promote (a step per production deployment poll); with
    ``promotion: manual`` a candidate that passes waits in ``awaiting_approval`` instead."""
    if run.decision is None:
        return _decide(pipeline, settings, run)
    if not run.decision.promoted:
        record_incumbent_measurement(pipeline, run)
        run.transition(RunState.REJECTED, run.decision.reason)
        return True
    if settings.promotion == "manual":
        cost = hosting_cost_per_hour(run, settings)
        run.transition(
            RunState.AWAITING_APPROVAL,
            f"passed the gate; waiting for `visiontune approve|reject {run.dataset} {run.version}` "
            f"(deployment {run.candidate.name if run.candidate else '?'} kept: ${cost:.2f}/hour; rejected "
            f"after {settings.approval_timeout_days:g} days without a decision)",
        )
        return True
    return _promote(pipeline, settings, run)


def await_approval(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """``awaiting_approval``: promote once approved, reject once rejected or when
    ``approval_timeout_days`` have passed without a decision (the finish step then deletes the
    candidate's deployment). Waits (False) otherwise."""
    if run.approval is not None and run.approval.approved:
        return _promote(pipeline, settings, run)
    if run.approval is not None:
        record_incumbent_measurement(pipeline, run)
        reason = f": {run.approval.reason}" if run.approval.reason else ""
        run.transition(RunState.REJECTED, f"rejected by {run.approval.by}{reason}")
        return True
    since = next(
        (t.at for t in reversed(run.transitions) if t.state == RunState.AWAITING_APPROVAL.value), utcnow()
    )
    if utcnow() - since >= timedelta(days=settings.approval_timeout_days):
        record_incumbent_measurement(pipeline, run)
        run.transition(
            RunState.REJECTED,
            f"no approval within {settings.approval_timeout_days:g} days: rejected, its deployment is deleted",
        )
        return True
    return False


def _decide(pipeline: Pipeline, settings: Settings, run: Run) -> bool:
    prefix = pipeline.store.side_blob_name(run.dataset, run.version, "")
    baseline_role: Literal["base", "incumbent"] = "incumbent" if "incumbent" in run.evaluation else "base"
    candidate = load_examples(pipeline, prefix, "candidate")
    baseline = load_examples(pipeline, prefix, baseline_role)
    for name, examples in (("candidate", candidate), (baseline_role, baseline)):
        if error_share(examples) > MAX_ERROR_SHARE:
            failed = [e for e in examples if e.failed]
            first = failed[0].error if failed else "no examples were scored"
            run.fail(
                "evaluate",
                f"{len(failed)} of {len(examples)} {name} requests got no answer, too many to "
                f"judge the candidate; first error: {first}",
            )
            return True
    # Requests that got no answer say nothing about the model: the gate pairs only answered examples.
    decision = decide_promotion(
        [e for e in candidate if not e.failed],
        [e for e in baseline if not e.failed],
        baseline_role=baseline_role,
        labels=run.labels,
        margin=settings.promotion_margin,
        p_value_threshold=settings.promotion_p_value,
    )
    run.decision = decision
    run.note(decision.reason)
    return True


def _promote(pipeline: Pipeline, settings: Settings, run: Run) -> bool:
    assert run.candidate is not None
    serving = run.candidate
    if settings.production_sku != run.candidate.sku:
        if run.production_deployment is None:
            run.production_deployment = DeploymentInfo(
                name=deployment_name(run.dataset, run.version, "prod"),
                model=run.candidate.model,
                sku=settings.production_sku,
            )
        info = run.production_deployment
        if info.ready_at is None:
            state = pipeline.deployments.get(info.name, operation_url=info.operation_url)
            if state is not None and state.failed:
                info.last_error = state.error or state.provisioning_state
                run.note(f"{info.name} provisioning failed: {info.last_error}")
            if state is None or state.failed:
                ready, waiting_for = deployment_slot_ready(pipeline, settings, run, info.name)
                if not ready:
                    note_once(run, waiting_for)
                    return False
                if not request_deployment(pipeline, settings, run, info):
                    return False
                run.note(f"deploying {info.name} ({info.sku}) for production")
                return True
            info.state = state.provisioning_state
            if not state.succeeded:
                return False
            info.ready_at = utcnow()
        serving = info
    record_promotion(pipeline, settings, run, serving)
    run.transition(RunState.PROMOTED, f"{serving.model} serves production as {serving.name}")
    return True
