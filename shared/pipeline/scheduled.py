"""Scheduled re-evaluation of production: each dataset's production model and the base model answer the
latest test set again; the result is a report under ``reports/<dataset>/evaluations/<stamp>.*`` and a point
in the production history, flagged as a regression when accuracy fell by more than
``regression_threshold`` since the previous point.

The work is resumable like a run's evaluation: a document ``runs/<dataset>/_scheduled/<stamp>.json``
holds the progress (scored examples in side blobs next to it); ``evaluate_production`` starts one per
dataset and does what fits in ``eval_tick_seconds``; ``advance_runs`` ticks continue the rest. A worker
holds an evaluation under the same short, renewed lease as a run (``advance_scheduled_evaluation``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shared.aoai.files import delete_file
from shared.events import REGRESSION_EVENT, EventPublisher, cloud_event
from shared.layout import evaluation_stem, scheduled_prefix, side_prefix
from shared.pipeline.context import RUN_LEASE_RENEW_SECONDS, RUN_LEASE_SECONDS, Pipeline
from shared.pipeline.documents import ProductionRecord, ScheduledEvaluation
from shared.pipeline.evaluate import (
    advance_evaluation,
    base_role,
    incumbent_role,
    load_examples,
    load_test_items,
    model_evaluation,
)
from shared.pipeline.models import RoleProgress, utcnow
from shared.pipeline.reports import publish_evaluation_report, publish_index
from shared.pipeline.stored import ConcurrentUpdateError
from shared.reporting.schema import EvaluationReport, ProductionHistoryPoint
from shared.settings import Settings
from shared.telemetry import note

log = logging.getLogger(__name__)


def evaluate_production(settings: Settings) -> list[str]:
    """Start a re-evaluation for every dataset that has a production model (unless one is still running)
    and advance all unfinished ones. Returns the names of the evaluation documents it started."""
    pipeline = Pipeline(settings)
    started = []
    for dataset in pipeline.store.datasets():
        production = pipeline.production(dataset)
        if production is None:
            continue
        if any(not doc.done for doc in _documents(pipeline, dataset)):
            log.debug("%s: a scheduled evaluation is still running; not starting another", dataset)
            note(evaluations_still_running=1)
            continue
        runs = pipeline.store.list(dataset)
        test_version = runs[-1].version if runs else production.version
        items = load_test_items(pipeline, dataset, test_version)
        if not items:
            log.warning("%s: the latest test set (%s) is empty; nothing to evaluate", dataset, test_version)
            continue
        now = utcnow()
        document = ScheduledEvaluation(
            id=evaluation_stem(now),
            dataset=dataset,
            created_at=now,
            test_set_version=test_version,
            production_version=production.version,
            roles={"incumbent": incumbent_role(production, len(items)), "base": base_role(settings, len(items))},
        )
        try:
            pipeline.store.write(document)  # If-None-Match *
        except ConcurrentUpdateError:
            continue  # the same second's evaluation already started elsewhere
        started.append(document.document_name)
    continue_scheduled_evaluations(pipeline)
    return started


def _document_names(pipeline: Pipeline, dataset: str) -> list[str]:
    return [
        name
        for name in pipeline.store.list_documents(scheduled_prefix(dataset))
        if name.endswith(".json") and ".d/" not in name
    ]


def _documents(pipeline: Pipeline, dataset: str) -> list[ScheduledEvaluation]:
    documents = (pipeline.store.read(name, ScheduledEvaluation) for name in _document_names(pipeline, dataset))
    return [doc for doc in documents if doc is not None]


def continue_scheduled_evaluations(pipeline: Pipeline) -> None:
    """Advance every unfinished scheduled evaluation (each within ``eval_tick_seconds``)."""
    for dataset in pipeline.store.datasets():
        for name in _document_names(pipeline, dataset):
            try:
                advance_scheduled_evaluation(pipeline, name)
            except ConcurrentUpdateError:
                log.debug("%s is being advanced by another worker", name)
                note(evaluations_busy_elsewhere=1)


def advance_scheduled_evaluation(pipeline: Pipeline, name: str) -> ScheduledEvaluation | None:
    """Advance the scheduled evaluation ``name`` for up to ``eval_tick_seconds`` under its lease: the
    runs' short lease (``RunStore.claim_document``), renewed while the work runs (``keep_lease``), so a
    long step keeps it and a killed worker delays the evaluation by at most ``RUN_LEASE_SECONDS``.
    Returns the document as saved, or None when it is done or another worker holds it. Raises
    ``ConcurrentUpdateError`` when the lease was lost on the way (nothing more was written)."""

    store = pipeline.store
    doc = store.claim_document(name, ScheduledEvaluation, seconds=RUN_LEASE_SECONDS, when=lambda d: not d.done)
    if doc is None:
        return None
    settings = pipeline.settings
    roles = doc.roles
    prefix = side_prefix(name)
    with store.keep_lease(doc, seconds=RUN_LEASE_SECONDS, every=RUN_LEASE_RENEW_SECONDS):
        items = load_test_items(pipeline, doc.dataset, doc.test_set_version)
        deadline = time.monotonic() + settings.eval_tick_seconds
        try:
            advance_evaluation(
                pipeline, roles, prefix=prefix, tag=f"{doc.dataset}-sched-{doc.id}", items=items, deadline=deadline
            )
        except ConcurrentUpdateError:
            raise
        except Exception as error:  # noqa: BLE001 - recorded; the next tick tries again
            if doc._lease_lost:
                raise ConcurrentUpdateError(f"{name}: its lease was lost") from error
            log.warning("%s: scheduled evaluation step failed: %s", name, error)
            doc.last_error = str(error)
            doc.errors += 1
            if doc.errors >= settings.max_step_attempts:
                doc.failed = f"gave up after {doc.errors} attempts: {error}"
                doc.report = _finish_evaluation(pipeline, doc, prefix, failure=doc.failed)
                doc.done = True
        if not doc.done and all(progress.done for progress in roles.values()):
            doc.report = _finish_evaluation(pipeline, doc, prefix)
            doc.done = True
        if doc.done:
            _delete_remote_files(pipeline, roles)
    doc.lease = None
    return store.write(doc)


def _delete_remote_files(pipeline: Pipeline, roles: dict[str, RoleProgress]) -> None:
    for progress in roles.values():
        for file_id in list(progress.remote_files):
            try:
                delete_file(pipeline.openai, file_id)
                progress.remote_files.remove(file_id)
            except Exception as error:  # noqa: BLE001 - a leftover batch file is only quota, retried never
                log.warning("could not delete file %s: %s", file_id, error)


def _finish_evaluation(pipeline: Pipeline, doc: ScheduledEvaluation, prefix: str, failure: str | None = None) -> str:
    """Write the evaluation report, add the point to the production history, refresh the index. With
    ``failure`` (production could not be evaluated at all) the report says so and is flagged."""
    settings = pipeline.settings
    dataset, roles, test_set = doc.dataset, doc.roles, doc.test_set_version
    run = pipeline.store.get(dataset, test_set)
    labels = list(run.labels) if run else []
    evaluations = {}
    for role, progress in roles.items():
        examples = load_examples(pipeline, prefix, role)
        if progress.done or examples:
            evaluations[role] = model_evaluation(settings, labels, progress, examples)
    production = pipeline.production(dataset)
    if failure is not None and (not roles["incumbent"].done or "incumbent" not in evaluations):
        report = EvaluationReport(
            dataset=dataset,
            generated_at=utcnow(),
            test_set_version=test_set,
            production=None,
            base=evaluations.get("base") if roles["base"].done else None,
            previous_accuracy=None,
            regression=True,
            regression_threshold=settings.regression_threshold,
            note=f"Production ({roles['incumbent'].model} on {roles['incumbent'].deployment}) could not be "
            f"evaluated: {failure}",
        )
        path = publish_evaluation_report(pipeline, report)
        publish_index(pipeline, dataset)
        log.error("%s: production could not be evaluated: %s", dataset, failure)
        _announce_regression(settings, report, path)
        return path
    history = production.history if production is not None else []
    # Only a measurement on the same test set is comparable (a newer test set has other, maybe harder, images).
    same_set = [p for p in history if p.test_set_version == test_set]
    previous = same_set[-1].accuracy if same_set else None
    current = evaluations["incumbent"].metrics.accuracy
    drop = None if previous is None else previous - current
    regression = drop is not None and drop > settings.regression_threshold
    note = (
        f"Production ({roles['incumbent'].model}) answered {current:.1%} of {evaluations['incumbent'].metrics.n} "
        f"test examples of version {test_set} correctly"
        + (
            f", against {previous:.1%} at the previous measurement on the same test set"
            if previous is not None
            else "; this is the first measurement on this test set, so there is nothing to compare it with"
        )
        + (
            f": a regression of {(drop or 0.0) * 100:.1f} points, beyond the "
            f"{settings.regression_threshold * 100:.1f}-point threshold."
            if regression
            else "."
        )
    )
    notes = [p.note for p in roles.values() if p.note]
    report = EvaluationReport(
        dataset=dataset,
        generated_at=utcnow(),
        test_set_version=test_set,
        production=evaluations["incumbent"],
        base=evaluations.get("base"),
        previous_accuracy=previous,
        regression=regression,
        regression_threshold=settings.regression_threshold,
        note=" ".join([note, *notes]),
    )
    path = publish_evaluation_report(pipeline, report)
    point = ProductionHistoryPoint(
        at=report.generated_at,
        version="",
        model="",
        accuracy=current,
        source="scheduled",
        regression=regression,
        test_set_version=test_set,
    )

    def add_point(record: ProductionRecord | None) -> ProductionRecord | None:
        if record is None:
            return None
        record.history.append(point.model_copy(update={"version": record.version, "model": record.model}))
        return record

    try:
        pipeline.update_production(dataset, add_point)
    except ConcurrentUpdateError as error:  # the report stands; only the history misses this point
        log.warning("%s: the measurement was not added to the production history: %s", dataset, error)
    publish_index(pipeline, dataset)
    if regression:
        log.warning("%s: production accuracy fell from %.3f to %.3f", dataset, previous, current)
        _announce_regression(settings, report, path)
    return path


def _announce_regression(settings: Settings, report: Any, path: str) -> None:
    """The ``visiontune.production.regression`` event (never raises)."""
    production = report.production
    data = {
        "dataset": report.dataset,
        "test_set_version": report.test_set_version,
        "accuracy": production.metrics.accuracy if production is not None else None,
        "previous_accuracy": report.previous_accuracy,
        "threshold": report.regression_threshold,
        "detail": report.note,
        "report": path,
    }
    EventPublisher(settings).publish(
        cloud_event(
            REGRESSION_EVENT,
            report.dataset,
            data,
            at=report.generated_at,
            key=f"{report.dataset}/regression/{report.generated_at.isoformat()}",
        )
    )
