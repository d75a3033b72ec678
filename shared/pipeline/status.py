"""``collect_status``: the runs, their states and scores, and production, as plain JSON-able data
(for the HTTP ``status`` function and ``visiontune status``)."""

from __future__ import annotations

from typing import Any

from shared.pipeline.context import Pipeline
from shared.pipeline.documents import ProductionRecord
from shared.pipeline.models import Run, utcnow
from shared.pipeline.reports import intake_failure
from shared.settings import Settings


def run_summary(run: Run) -> dict[str, Any]:
    """One run as the status shows it."""
    last = run.transitions[-1] if run.transitions else None
    return {
        "version": run.version,
        "state": run.state.value,
        "terminal": run.terminal,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "last_event": {"state": last.state, "at": last.at.isoformat(), "detail": last.detail}
        if last
        else None,
        "labels": len(run.labels),
        "examples": {split: info.get("examples", 0) for split, info in run.splits.items()},
        "overrides": run.overrides,
        "job_id": run.job.job_id,
        "job_status": run.job.status,
        "fine_tuned_model": run.job.fine_tuned_model,
        "trained_tokens": run.job.trained_tokens,
        "candidate_deployment": run.candidate.name if run.candidate else None,
        "candidate_deleted": bool(run.candidate and run.candidate.deleted_at),
        "evaluation": {
            role: {"method": p.method, "scored": p.scored, "total": p.total, "done": p.done}
            for role, p in run.evaluation.items()
        },
        "scores": dict(run.scores),
        "decision": run.decision.model_dump(mode="json") if run.decision else None,
        "approval": run.approval.model_dump(mode="json") if run.approval else None,
        "failure": run.failure.model_dump(mode="json") if run.failure else None,
        "retry": run.retry.model_dump(mode="json") if run.retry else None,
        "report": f"reports/{run.dataset}/{run.version}/report.html" if run.report_written_for else None,
    }


def collect_status(settings: Settings, dataset: str | None = None) -> dict[str, Any]:
    """``{"generated_at", "datasets": [{"dataset", "production", "intake_failure", "runs": [...]}]}``,
    datasets sorted by name, runs oldest first. ``dataset`` limits it to one."""
    pipeline = Pipeline(settings)
    if dataset:
        names = [dataset]
    else:
        intake_failed = {
            b.name.split("/", 1)[0]
            for b in pipeline.reports.list_blobs()
            if b.name.endswith("/intake/report.json")
        }
        names = sorted(set(pipeline.store.datasets()) | intake_failed)
    datasets = []
    for name in names:
        production = pipeline.production(name)
        runs = pipeline.store.list(name)
        failure = intake_failure(pipeline, name)
        if not runs and production is None and failure is None and dataset is None:
            continue
        datasets.append(
            {
                "dataset": name,
                "production": _production_summary(production),
                "intake_failure": failure,
                "runs": [run_summary(run) for run in runs],
            }
        )
    return {"generated_at": utcnow().isoformat(), "datasets": datasets}


def _production_summary(record: ProductionRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    stored = record.model_dump(mode="json")
    return {
        key: stored[key]
        for key in (
            "version",
            "model",
            "deployment",
            "sku",
            "promoted_at",
            "accuracy",
            "baseline_role",
            "baseline_accuracy",
            "previous_version",
        )
    } | {"retired": stored["retired"], "history_points": len(record.history)}
