"""Production bookkeeping per dataset: ``production.json`` (``ProductionRecord``: what serves, its history of
measurements, the previous deployments kept for the rollback window), every change a read-modify-write
under the document's ETag (``Pipeline.update_production``)."""

from __future__ import annotations

import logging
from datetime import timedelta

from shared.pipeline.context import Pipeline
from shared.pipeline.documents import ProductionRecord, RetiredDeployment
from shared.pipeline.models import DeploymentInfo, Run, utcnow
from shared.pipeline.resource_limits import deployment_operation_running
from shared.reporting.schema import ProductionHistoryPoint
from shared.settings import Settings

log = logging.getLogger(__name__)


def record_promotion(pipeline: Pipeline, settings: Settings, run: Run, serving: DeploymentInfo) -> None:
    """Make ``serving`` the dataset's production (production.json, ETag-guarded); the previous production
    deployment is kept for the rollback window, then deleted by ``retire_due_deployments``."""

    def promote(record: ProductionRecord | None) -> ProductionRecord | None:
        if record is not None and record.version == run.version:
            return None  # already promoted (a replay after a crash)
        now = utcnow()
        retired = list(record.retired) if record is not None else []
        if record is not None:
            retired.append(
                RetiredDeployment(
                    version=record.version,
                    model=record.model,
                    deployment=record.deployment,
                    retired_at=now,
                    delete_after=now + timedelta(hours=settings.rollback_window_hours),
                )
            )
        accuracy = run.scores.get("candidate", 0.0)
        history = list(record.history) if record is not None else []
        history.append(
            ProductionHistoryPoint(
                at=now,
                version=run.version,
                model=serving.model,
                accuracy=accuracy,
                source="run",
                test_set_version=run.version,
            )
        )
        baseline_role = run.decision.baseline_role if run.decision else None
        return ProductionRecord(
            dataset=run.dataset,
            version=run.version,
            model=serving.model,
            deployment=serving.name,
            sku=serving.sku,
            promoted_at=now,
            accuracy=accuracy,
            baseline_role=baseline_role,
            baseline_accuracy=run.scores.get(baseline_role or "base"),
            reason=run.decision.reason if run.decision else "",
            previous_version=record.version if record is not None else None,
            retired=retired,
            history=history,
        )

    pipeline.update_production(run.dataset, promote)


def record_incumbent_measurement(pipeline: Pipeline, run: Run) -> None:
    """A rejected run measured production (the incumbent) on its own, newer test set: add that point to
    the production history, so later scheduled evaluations compare like with like."""

    incumbent = run.evaluation.get("incumbent")
    if incumbent is None or "incumbent" not in run.scores:
        return

    def add_point(record: ProductionRecord | None) -> ProductionRecord | None:
        if record is None or record.version != incumbent.incumbent_version:
            return None  # production changed meanwhile: the measurement is of a model no longer serving
        if any(p.test_set_version == run.version and p.source == "run" for p in record.history):
            return None
        record.history.append(
            ProductionHistoryPoint(
                at=utcnow(),
                version=record.version,
                model=incumbent.model,
                accuracy=run.scores["incumbent"],
                source="run",
                test_set_version=run.version,
            )
        )
        return record

    pipeline.update_production(run.dataset, add_point)


def retire_due_deployments(pipeline: Pipeline, dataset: str) -> list[str]:
    """Delete previous production deployments whose rollback window has passed; returns their names."""

    record = pipeline.production(dataset)
    if record is None:
        return []
    now = utcnow()
    deleted: list[str] = []
    for entry in record.retired:
        if entry.deleted_at or not entry.deployment:
            continue
        if entry.delete_after > now or entry.deployment == record.deployment:
            continue
        if deployment_operation_running(pipeline, besides=entry.deployment) is not None:
            break  # ARM: one deployment operation per account at a time; the next tick deletes it
        pipeline.deployments.delete(entry.deployment)
        deleted.append(entry.deployment)
    if deleted:
        pipeline.record_deleted_deployments(dataset, deleted)
        log.info("%s: deleted retired production deployment(s) %s", dataset, ", ".join(deleted))
    return deleted
