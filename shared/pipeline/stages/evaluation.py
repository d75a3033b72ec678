"""``deployed`` -> ``evaluating`` -> ``evaluated``: plan the evaluation (candidate, incumbent or base
model; one evaluation per dataset at a time) and run it within the tick's deadline."""

from __future__ import annotations

from typing import Any

from shared.evaluation.metrics import compute_metrics
from shared.pipeline.classic import advance_classic
from shared.pipeline.context import Pipeline
from shared.pipeline.evaluate import (
    advance_evaluation,
    base_role,
    incumbent_role,
    load_examples,
    load_test_items,
)
from shared.pipeline.models import RoleProgress, Run, RunState
from shared.settings import Settings


def _test_items(pipeline: Pipeline, run: Run) -> list[Any]:
    cache: dict[str, list[Any]] = pipeline.__dict__.setdefault("_test_items", {})
    if run.key not in cache:
        cache[run.key] = load_test_items(pipeline, run.dataset, run.version)
    return cache[run.key]


def plan_evaluation(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Choose what answers the test set (the candidate, production when it is available, the base model)
    and move to ``evaluating``; waits while another version of the dataset is being evaluated."""

    busy = [
        other.version
        for other in pipeline.store.list(run.dataset)
        if other.version != run.version and other.state in (RunState.EVALUATING, RunState.EVALUATED)
    ]
    if busy:  # one evaluation per dataset at a time, so each is judged against the production it will replace
        if not (run.transitions and run.transitions[-1].detail.startswith("waiting for")):
            run.note(f"waiting for the evaluation of {', '.join(busy)} to finish")
            return True
        return False
    items = _test_items(pipeline, run)
    if not items:
        run.fail("evaluate", "the test split is empty: there is nothing to evaluate the candidate on")
        return True
    assert run.candidate is not None
    roles = {
        "candidate": RoleProgress(
            role="candidate",
            model=run.candidate.model,
            deployment=run.candidate.name,
            method="realtime",
            total=len(items),
        ),
    }
    production = pipeline.production(run.dataset)
    if production is not None and production.version != run.version:
        deployed = pipeline.deployments.get(production.deployment)
        if deployed is not None and deployed.succeeded:
            roles["incumbent"] = incumbent_role(production, len(items))
        else:
            run.note(
                f"the production deployment {production.deployment} is not available; "
                "the candidate is judged against the base model"
            )
    roles["base"] = base_role(settings, len(items))
    run.evaluation = roles
    against = "the incumbent " + roles["incumbent"].model if "incumbent" in roles else "the base model"
    run.transition(RunState.EVALUATING, f"{len(items)} test examples; judged against {against}")
    return True


def evaluate(pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float, **_: Any) -> bool:
    """Score what fits before ``deadline``; when every role is done and the classic baseline is settled
    (scored, skipped or failed: ``shared.pipeline.classic``, bounded, never fails the run nor enters the
    gate), record the accuracies and move to ``evaluated``."""
    # The classic baseline first: its one bounded step needs a tick's full budget, which the real-time
    # scoring below would otherwise use up. It never fails the run nor enters the gate.
    classic_moved = advance_classic(pipeline, settings, run, deadline=deadline)
    items = _test_items(pipeline, run)
    prefix = pipeline.store.side_blob_name(run.dataset, run.version, "")
    progressed = advance_evaluation(
        pipeline,
        run.evaluation,
        prefix=prefix,
        tag=f"{run.dataset}-{run.version}",
        items=items,
        deadline=deadline,
    )
    if not all(role.done for role in run.evaluation.values()) or not (run.classic and run.classic.settled):
        return progressed or classic_moved
    summary = []
    for name, role in run.evaluation.items():
        examples = load_examples(pipeline, prefix, name)
        metrics = compute_metrics(run.labels, examples)
        run.scores[name] = metrics.accuracy
        summary.append(
            f"{name} {metrics.accuracy:.1%}" + (f" ({metrics.errors} errors)" if metrics.errors else "")
        )
        if role.note:
            run.note(f"{name}: {role.note}")
    run.transition(RunState.EVALUATED, ", ".join(summary))
    return True
