"""Production bookkeeping per dataset: ``production.json`` (what serves, its history of measurements, the
previous deployments kept for the rollback window), each write guarded by the document's ETag."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.pipeline.context import Pipeline
from shared.pipeline.models import DeploymentInfo, Run, utcnow
from shared.pipeline.resource_limits import deployment_operation_running
from shared.pipeline.store import ConcurrentUpdateError
from shared.reporting.schema import ProductionHistoryPoint
from shared.settings import Settings

log = logging.getLogger(__name__)


def record_promotion(pipeline: Pipeline, settings: Settings, run: Run, serving: DeploymentInfo) -> None:
    """Make ``serving`` the dataset's production (production.json, ETag-guarded); the previous production
    deployment is kept for the rollback window, then deleted by ``retire_due_deployments``."""

    for _ in range(10):
        record, etag = pipeline.production(run.dataset)
        if record and record.get("version") == run.version:
            return  # already promoted (a replay after a crash)
        now = utcnow()
        retired = list((record or {}).get("retired", []))
        if record:
            retired.append(
                {
                    "version": record.get("version"),
                    "model": record.get("model"),
                    "deployment": record.get("deployment"),
                    "retired_at": now.isoformat(),
                    "delete_after": (now + timedelta(hours=settings.rollback_window_hours)).isoformat(),
                    "deleted_at": None,
                }
            )
        accuracy = run.scores.get("candidate", 0.0)
        history = list((record or {}).get("history", []))
        history.append(
            history_point(
                ProductionHistoryPoint(
                    at=now, version=run.version, model=serving.model, accuracy=accuracy, source="run"
                ),
                run.version,
            )
        )
        baseline_role = run.decision.baseline_role if run.decision else None
        new_record = {
            "dataset": run.dataset,
            "version": run.version,
            "model": serving.model,
            "deployment": serving.name,
            "sku": serving.sku,
            "promoted_at": now.isoformat(),
            "accuracy": accuracy,
            "baseline_role": baseline_role,
            "baseline_accuracy": run.scores.get(baseline_role or "base"),
            "reason": run.decision.reason if run.decision else "",
            "previous_version": (record or {}).get("version"),
            "retired": retired,
            "history": history,
        }
        try:
            pipeline.write_production(run.dataset, new_record, etag)
            return
        except ConcurrentUpdateError:
            continue
    raise ConcurrentUpdateError(f"{run.dataset}/production.json kept changing")


def history_point(point: Any, test_set_version: str) -> dict[str, Any]:
    """A production history entry for production.json: the report schema's point plus the dataset version
    whose test split was measured (only measurements on the same test set are compared)."""
    return {**point.model_dump(mode="json"), "test_set_version": test_set_version}


def record_incumbent_measurement(pipeline: Pipeline, run: Run) -> None:
    """A rejected run measured production (the incumbent) on its own, newer test set: add that point to
    the production history, so later scheduled evaluations compare like with like."""

    incumbent = run.evaluation.get("incumbent")
    if incumbent is None or "incumbent" not in run.scores:
        return
    for _ in range(10):
        record, etag = pipeline.production(run.dataset)
        if not record or record.get("version") != incumbent.incumbent_version:
            return  # production changed meanwhile: the measurement is of a model no longer serving
        history = record.setdefault("history", [])
        if any(p.get("test_set_version") == run.version and p.get("source") == "run" for p in history):
            return
        history.append(
            history_point(
                ProductionHistoryPoint(
                    at=utcnow(),
                    version=str(record["version"]),
                    model=incumbent.model,
                    accuracy=run.scores["incumbent"],
                    source="run",
                ),
                run.version,
            )
        )
        try:
            pipeline.write_production(run.dataset, record, etag)
            return
        except ConcurrentUpdateError:
            continue


def retire_due_deployments(pipeline: Pipeline, dataset: str) -> list[str]:
    """Delete previous production deployments whose rollback window has passed; returns their names."""

    record, etag = pipeline.production(dataset)
    if not record:
        return []
    now = utcnow()
    deleted = []
    for entry in record.get("retired", []):
        if entry.get("deleted_at") or not entry.get("deployment"):
            continue
        if datetime.fromisoformat(entry["delete_after"]) > now or entry["deployment"] == record.get(
            "deployment"
        ):
            continue

        if deployment_operation_running(pipeline, besides=entry["deployment"]) is not None:
            break  # ARM: one deployment operation per account at a time; the next tick deletes it
        pipeline.deployments.delete(entry["deployment"])
        entry["deleted_at"] = now.isoformat()
        deleted.append(entry["deployment"])
    if deleted:
        try:
            pipeline.write_production(dataset, record, etag)
        except ConcurrentUpdateError:
            pass  # someone promoted meanwhile; the deletions are idempotent and get recorded next tick
        log.info("%s: deleted retired production deployment(s) %s", dataset, ", ".join(deleted))
    return deleted
