"""Build the report documents (``shared.reporting.schema``) from runs and write the rendered files.

- ``publish_run_report``: ``reports/<dataset>/<version>/report.{json,md,html}``
- ``publish_index``: ``reports/<dataset>/index.{json,md,html}`` (every version, production, history)
- ``publish_intake_failure``: a dataset that could not even be converted (bad marker, too few images)
  gets ``reports/<dataset>/intake/report.*`` so the person who dropped it sees why.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.evaluation.suspects import find_suspects, line_index, thumbnails
from shared.layout import (
    REJECTED_NAME,
    dataset_prefix,
    evaluation_stem,
    evaluations_prefix,
    report_prefix,
    training_prefix,
)
from shared.pipeline.classic import classic_report
from shared.pipeline.documents import Manifest
from shared.pipeline.evaluate import load_examples, model_evaluation
from shared.pipeline.models import Run, RunState, utcnow
from shared.reporting.publish import (
    content_type,
    render_evaluation_files,
    render_index_files,
    render_report_files,
)
from shared.reporting.schema import (
    CostSummary,
    DatasetIndex,
    DatasetSummary,
    EvaluationReport,
    Failure,
    RejectedFile,
    RunIndexEntry,
    RunOutcome,
    RunReport,
    SplitSummary,
    SuspectLabel,
    TrainingSummary,
    Transition,
)
from shared.storage.readers import open_blob_reader, read_json

if TYPE_CHECKING:  # pragma: no cover
    from shared.pipeline.context import Pipeline

log = logging.getLogger(__name__)

OUTCOMES: dict[RunState, RunOutcome] = {
    RunState.PROMOTED: "promoted",
    RunState.REJECTED: "rejected",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "cancelled",
    RunState.OVER_BUDGET: "over_budget",
}
INTAKE_VERSION = "intake"
# Trained tokens below this share of the estimate suggest the service skipped examples (token counts of
# the estimate and the service differ by some percent anyway, so only a clear gap is reported).
SKIPPED_SHARE = 0.75


def _upload(pipeline: Pipeline, prefix: str, files: dict[str, bytes]) -> None:
    from azure.storage.blob import ContentSettings

    for name, data in files.items():
        pipeline.reports.upload_blob(
            prefix + name,
            data,
            overwrite=True,
            content_settings=ContentSettings(content_type=content_type(name)),
        )


def run_evaluations(pipeline: Pipeline, run: Run, labels: list[str]) -> dict[str, Any]:
    """role -> ModelEvaluation for every role of the run that has scored examples."""
    prefix = pipeline.store.side_blob_name(run.dataset, run.version, "")
    settings = run.effective_settings(pipeline.settings)
    evaluations = {}
    for name, role in run.evaluation.items():
        examples = load_examples(pipeline, prefix, name)
        if examples and labels:
            evaluations[name] = model_evaluation(settings, labels, role, examples)
    return evaluations


def _dataset_summary(pipeline: Pipeline, run: Run, manifest: Manifest | None) -> Any:
    if manifest is None:
        return None
    rejected = read_json(pipeline.training, training_prefix(run.dataset, run.version) + REJECTED_NAME) or []
    return DatasetSummary(
        labels=list(manifest.labels),
        splits={
            name: SplitSummary(examples=split.examples, per_label=dict(split.per_label))
            for name, split in manifest.splits.items()
        },
        rejected=[
            RejectedFile(
                path=str(r.get("path", "")), code=str(r.get("code", "")), reason=str(r.get("reason", ""))
            )
            for r in rejected
            if isinstance(r, dict)
        ],
        ignored=list(manifest.ignored),
        warnings=list(manifest.warnings),
    )


def _suspects(pipeline: Pipeline, run: Run, labels: list[str], manifest: Manifest | None) -> list[Any]:
    """The review queue: test images the candidate and the other model (incumbent, else base) both
    answered with the same other label, with thumbnails and source paths."""
    candidate_role = run.evaluation.get("candidate")
    other = next((r for r in ("incumbent", "base") if r in run.evaluation and run.evaluation[r].done), None)
    if not labels or candidate_role is None or not candidate_role.done or other is None:
        return []
    prefix = pipeline.store.side_blob_name(run.dataset, run.version, "")
    found = find_suspects(
        load_examples(pipeline, prefix, "candidate"), load_examples(pipeline, prefix, other), labels, other
    )
    if not found:
        return []
    test_split = manifest.splits.get("test") if manifest is not None else None
    files = test_split.files if test_split is not None else []
    wanted = {line_index(s["custom_id"]) for s in found}
    try:
        blob = pipeline.training.get_blob_client(training_prefix(run.dataset, run.version) + "test.jsonl")
        with open_blob_reader(blob) as reader:
            pictures = thumbnails(reader, wanted)
    except Exception as exc:  # noqa: BLE001 - the queue is still useful without pictures
        log.warning("%s: no thumbnails for the suspect labels: %s", run.key, exc)
        pictures = {}
    return [
        SuspectLabel(
            **s,
            source_path=files[line_index(s["custom_id"])] if line_index(s["custom_id"]) < len(files) else None,
            thumbnail=pictures.get(line_index(s["custom_id"])),
        )
        for s in found
    ]


def _hours(start: datetime | None, end: datetime | None) -> float:
    if start is None:
        return 0.0
    return max(0.0, ((end or utcnow()) - start).total_seconds() / 3600.0)


def build_run_report(pipeline: Pipeline, run: Run) -> RunReport:
    """The run's ``RunReport`` as of now."""
    settings = run.effective_settings(pipeline.settings)
    manifest = pipeline.manifest(run.dataset, run.version)
    labels = list(run.labels or (manifest.labels if manifest is not None else []))
    evaluations = run_evaluations(pipeline, run, labels)
    job = run.job
    submitted = {split: int(info.get("examples", 0)) for split, info in run.splits.items()}
    skipped_note = None
    if job.trained_tokens and run.estimate.get("tokens_per_epoch") and job.hyperparameters.get("n_epochs"):
        expected = int(run.estimate["tokens_per_epoch"]) * int(job.hyperparameters["n_epochs"])
        if job.trained_tokens < SKIPPED_SHARE * expected:
            skipped_note = (
                f"The job trained on {job.trained_tokens:,} tokens where the submitted examples come to about "
                f"{expected:,} ({1 - job.trained_tokens / expected:.0%} fewer): the service may have skipped "
                f"images (it silently drops images with people, faces, children or CAPTCHAs)."
            )
    training = (
        TrainingSummary(
            job_id=job.job_id,
            base_model=job.model or settings.base_model,
            fine_tuned_model=job.fine_tuned_model,
            status=job.status,
            hyperparameters={
                k: v for k, v in job.hyperparameters.items() if isinstance(v, (int, float, str)) or v is None
            },
            trained_tokens=job.trained_tokens,
            submitted_examples=submitted,
            skipped_note=skipped_note,
            results=job.results,
            events=job.events,
            checkpoints=job.checkpoints,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )
        if job.job_id or run.state not in (RunState.CONVERTED, RunState.OVER_BUDGET)
        else None
    )

    estimate_tokens = run.estimate.get("training_tokens")
    estimate_usd = (
        estimate_tokens * settings.price_training_per_1m_tokens / 1e6 if estimate_tokens is not None else None
    )
    training_usd = (
        job.trained_tokens * settings.price_training_per_1m_tokens / 1e6 if job.trained_tokens else None
    )
    evaluation_usd = sum(e.metrics.cost_usd for e in evaluations.values())
    classic, classic_baseline = classic_report(pipeline, run, settings, labels, evaluations.get("candidate"))
    classic_usd = classic_baseline.total_usd
    hosting_hours = sum(
        _hours(d.ready_at or d.requested_at, d.deleted_at)
        for d in (run.candidate, run.production_deployment)
        if d is not None and d.requested_at is not None and d.sku != "DeveloperTier"
    )
    hosting_usd = hosting_hours * settings.price_hosting_per_hour
    cost = CostSummary(
        estimated_training_tokens=estimate_tokens,
        estimated_training_usd=estimate_usd,
        training_usd=training_usd,
        evaluation_usd=round(evaluation_usd, 6),
        hosting_usd_per_hour=settings.price_hosting_per_hour
        if (run.candidate.sku if run.candidate else settings.candidate_sku) != "DeveloperTier"
        else 0.0,
        hosting_hours=round(hosting_hours, 4),
        classic_usd=classic_usd,
        total_usd=round((training_usd or 0.0) + evaluation_usd + hosting_usd + (classic_usd or 0.0), 4),
        budget_usd=settings.max_run_usd,
        budget_tokens=settings.max_training_tokens,
    )
    production = pipeline.production(run.dataset)
    return RunReport(
        dataset=run.dataset,
        version=run.version,
        generated_at=utcnow(),
        outcome=OUTCOMES.get(run.state, "in_progress"),
        state=run.state.value,
        decision=run.decision,
        base=evaluations.get("base"),
        candidate=evaluations.get("candidate"),
        incumbent=evaluations.get("incumbent"),
        classic=classic,
        classic_baseline=classic_baseline,
        training=training,
        dataset_summary=_dataset_summary(pipeline, run, manifest),
        cost=cost,
        failure=run.failure,
        timeline=run.transitions,
        production_model=production.model if production is not None else None,
        production_deployment=production.deployment if production is not None else None,
        suspects=_suspects(pipeline, run, labels, manifest),
    )


def publish_run_report(pipeline: Pipeline, run: Run) -> RunReport:
    """Render and write the run's report files; returns the report."""
    report = build_run_report(pipeline, run)
    _upload(pipeline, report_prefix(run.dataset, run.version), render_report_files(report))
    return report


def build_index(pipeline: Pipeline, dataset: str) -> DatasetIndex:
    """``index.json`` of a dataset: every run with its outcome and accuracy, production, history."""

    production = pipeline.production(dataset)
    entries = []
    for run in pipeline.store.list(dataset):
        entries.append(
            RunIndexEntry(
                version=run.version,
                outcome=OUTCOMES.get(run.state, "in_progress"),
                state=run.state.value,
                accuracy=_accuracy(run, "candidate"),
                baseline_accuracy=_accuracy(run, "incumbent" if "incumbent" in run.evaluation else "base"),
                created_at=run.created_at,
                report_path=f"{run.version}/report.html",
            )
        )
    history = list(production.history) if production is not None else []
    return DatasetIndex(
        dataset=dataset,
        generated_at=utcnow(),
        production_version=production.version if production is not None else None,
        production_model=production.model if production is not None else None,
        production_deployment=production.deployment if production is not None else None,
        runs=entries,
        history=history,
        regression_threshold=pipeline.settings.regression_threshold,
    )


def _accuracy(run: Run, role: str) -> float | None:
    return run.scores.get(role)


def publish_index(pipeline: Pipeline, dataset: str) -> None:
    _upload(pipeline, dataset_prefix(dataset), render_index_files(build_index(pipeline, dataset)))


def publish_evaluation_report(pipeline: Pipeline, report: EvaluationReport) -> str:
    """Write a scheduled evaluation's files; returns the blob prefix + stem they were written under."""
    _upload(pipeline, evaluations_prefix(report.dataset), render_evaluation_files(report))
    return evaluations_prefix(report.dataset) + evaluation_stem(report.generated_at)


def publish_intake_failure(pipeline: Pipeline, dataset: str, stage: str, message: str) -> None:
    """A failure before any version exists (bad marker, unusable dataset): ``reports/<dataset>/intake/``."""
    now = utcnow()
    report = RunReport(
        dataset=dataset,
        version=INTAKE_VERSION,
        generated_at=now,
        outcome="failed",
        state="failed",
        failure=Failure(stage=stage, message=message, at=now),
        timeline=[Transition(state="failed", at=now, detail=f"{stage}: {message}")],
    )
    _upload(pipeline, report_prefix(dataset, INTAKE_VERSION), render_report_files(report))


def intake_failure(pipeline: Pipeline, dataset: str) -> dict[str, Any] | None:
    """The last intake failure of a dataset (stage, message, at), if any."""
    data = read_json(pipeline.reports, report_prefix(dataset, INTAKE_VERSION) + "report.json")
    return (data or {}).get("failure")
