"""The classic baseline of a run: a CPU model (``shared.evaluation.classic``) trained on the version's
``train.jsonl`` and scored on its ``test.jsonl``, the exact images the fine-tune saw, so the report can say
what the fine-tune buys over it and at what price.

It runs inside the evaluation, as one bounded step per run:

- It starts only in a tick with (nearly) its whole time budget left (``classic_max_seconds``, capped at
  ``eval_tick_seconds``), never runs past the tick's deadline, and gives up with a stated reason when the
  training split would not fit its memory budget or the measured feature speed says the step would not
  fit its time budget.
- The attempt is saved on the run before the work starts and the result (``classic.json``, a side blob)
  is written before the run records it, so a crash is resumed without double work: a result already
  written is adopted; a step that never finished is tried again at most ``MAX_ATTEMPTS`` times (an
  instance that runs out of memory dies without a Python error), then skipped with that reason.
- Nothing here fails a run or touches the promotion gate: any error settles the baseline as ``failed``
  with the error as the reason, and the report says why it is missing.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from typing import TYPE_CHECKING, Any

from shared.errors import VisiontuneError
from shared.evaluation.classic import (
    CLASSIFIER_DESCRIPTION,
    FEATURE_DIMS,
    FEATURES_DESCRIPTION,
    MODEL_NAME,
    ClassicDataError,
    decode_data_url,
    fit_classic,
    image_features,
    iter_split,
    training_bytes,
)
from shared.evaluation.metrics import ScoredExample, compute_metrics
from shared.layout import training_prefix
from shared.pipeline.models import ClassicProgress, Run, utcnow
from shared.pipeline.store import ConcurrentUpdateError
from shared.reporting.formatting import pct, points, usd, usd_fine
from shared.reporting.schema import ClassicBaseline, ClassicVerdict, ModelEvaluation
from shared.settings import FLEX_PRICE_SOURCE, Settings
from shared.storage.readers import open_blob_reader

if TYPE_CHECKING:  # pragma: no cover
    from shared.pipeline.context import Pipeline

log = logging.getLogger(__name__)

SIDE_BLOB = "classic.json"
# Enough to survive a few restarts that had nothing to do with it; few enough to stop an out-of-memory loop.
MAX_ATTEMPTS = 4
HOURS_PER_MONTH = 730  # Azure's pricing calculator month
# The step starts only with this share of its budget left in the tick (the first step of a fresh tick has
# all of it but the milliseconds the tick took to get there).
START_SHARE = 0.9
# Feature extraction may use at most this share of the time budget (fitting needs the rest).
FEATURE_SHARE = 0.6
# Images measured before the feature speed is trusted for a projection.
PROJECTION_SAMPLE = 16


class ClassicBudgetError(VisiontuneError, RuntimeError):
    """The dataset is too large for the classic baseline's time or memory budget (the message says which)."""


def time_budget(settings: Settings) -> float:
    """Seconds one classic step may take: its own budget, never more than a tick's evaluation budget."""
    return min(settings.classic_max_seconds, settings.eval_tick_seconds)


def memory_problem(settings: Settings, train_examples: int) -> str | None:
    """Why fitting on ``train_examples`` images would not fit the memory budget, or None."""
    needed = training_bytes(train_examples)
    limit = settings.classic_max_memory_mb * 1024 * 1024
    if needed <= limit:
        return None
    return (
        f"fitting on {train_examples:,} training images x {FEATURE_DIMS:,} features needs about "
        f"{needed / 2**20:,.0f} MB, over the classic baseline's memory budget of {settings.classic_max_memory_mb:,} MB "
        "(VISIONTUNE_CLASSIC_MAX_MEMORY_MB)"
    )


def _side_name(pipeline: Pipeline, run: Run) -> str:
    return pipeline.store.side_blob_name(run.dataset, run.version, SIDE_BLOB)


def load_result(pipeline: Pipeline, run: Run) -> dict[str, Any] | None:
    """The stored result of the run's classic baseline (``classic.json``), or None."""
    data: dict[str, Any] | None = pipeline.store.read_document(_side_name(pipeline, run))
    return data


# --- the pipeline step --------------------------------------------------------------------------------
def advance_classic(pipeline: Pipeline, settings: Settings, run: Run, *, deadline: float) -> bool:
    """Train and score the run's classic baseline when it is due and fits before ``deadline``
    (``time.monotonic()``). Mutates ``run.classic`` (the caller saves the run; the attempt is saved here
    before the work). Never raises, except ``ConcurrentUpdateError`` (the run was taken over). Returns True
    when the baseline's state changed."""
    if run.classic is None:
        run.classic = ClassicProgress()
    progress = run.classic
    if progress.settled:
        return False
    if not settings.classic_baseline:
        return _settle(progress, "disabled", "turned off (VISIONTUNE_CLASSIC_BASELINE=false)")
    try:
        if load_result(pipeline, run) is not None:  # written before a crash: adopt it
            return _settle(progress, "scored", None)
        if progress.attempts >= MAX_ATTEMPTS:
            return _settle(
                progress,
                "skipped",
                f"it did not finish in {progress.attempts} attempts: the function instance stopped during the "
                "step (most likely out of memory or time); lower VISIONTUNE_CLASSIC_MAX_MEMORY_MB or use larger "
                "instances",
            )
        train_examples = int(run.splits.get("train", {}).get("examples", 0))
        problem = memory_problem(settings, train_examples)
        if problem is not None:
            return _settle(progress, "skipped", f"the dataset is too large for the budget: {problem}")
        left = deadline - time.monotonic()
        if left < START_SHARE * time_budget(settings):
            return False  # too little of this tick left: the next one starts with a full budget
        budget = min(time_budget(settings), left)
        progress.attempts += 1
        progress.started_at = utcnow()
        pipeline.store.save(run)  # the attempt is on record before the work
        result = train_and_score(pipeline, run, seconds=budget)
        pipeline.store.write_document(_side_name(pipeline, run), result)
        return _settle(progress, "scored", None)
    except ConcurrentUpdateError:
        raise
    except ClassicBudgetError as error:
        return _settle(progress, "skipped", f"the dataset is too large for the budget: {error}")
    except Exception as error:  # noqa: BLE001 - a baseline must never fail the run; the report says why
        log.exception("%s: the classic baseline failed", run.key)
        return _settle(progress, "failed", f"{type(error).__name__}: {error}")


def _settle(progress: ClassicProgress, status: str, reason: str | None) -> bool:
    progress.status = status  # type: ignore[assignment]
    progress.reason = reason
    progress.finished_at = utcnow()
    return True


def train_and_score(pipeline: Pipeline, run: Run, *, seconds: float) -> dict[str, Any]:
    """Read the version's training split, fit the classic model, score every test image one at a time
    (latency per image: decode, features, predict). Raises ``ClassicBudgetError`` as soon as the measured
    speed says the step would take longer than ``seconds``. Returns the ``classic.json`` document."""
    import numpy as np

    prefix = training_prefix(run.dataset, run.version)
    n_train = int(run.splits.get("train", {}).get("examples", 0))
    n_test = int(run.splits.get("test", {}).get("examples", 0))
    started = time.perf_counter()
    feature_seconds = 0.0
    measured = 0

    def check_time() -> None:
        elapsed = time.perf_counter() - started
        if elapsed > seconds:
            raise ClassicBudgetError(f"it ran past its time budget of {seconds:,.0f} s (VISIONTUNE_CLASSIC_MAX_SECONDS)")
        if measured >= PROJECTION_SAMPLE:
            per_image = feature_seconds / measured
            projected = per_image * (n_train + n_test)
            if projected > FEATURE_SHARE * seconds:
                raise ClassicBudgetError(
                    f"features for {n_train + n_test:,} images would take about {projected:,.0f} s at the measured "
                    f"{per_image * 1000:,.1f} ms per image, more than {FEATURE_SHARE:.0%} of the time budget of "
                    f"{seconds:,.0f} s (VISIONTUNE_CLASSIC_MAX_SECONDS)"
                )

    rows = np.empty((max(n_train, 1), FEATURE_DIMS), dtype=np.float32)
    labels: list[str] = []
    skipped_lines = 0
    with open_blob_reader(pipeline.training.get_blob_client(prefix + "train.jsonl")) as reader:
        for _, label, url in iter_split(reader):
            t0 = time.perf_counter()
            try:
                features = image_features(decode_data_url(url))
            except (ClassicDataError, OSError, ValueError):
                skipped_lines += 1  # one bad image costs the baseline one example, nothing more
                continue
            feature_seconds += time.perf_counter() - t0
            measured += 1
            if len(labels) == rows.shape[0]:  # the manifest undercounted: grow
                rows = np.concatenate([rows, np.empty_like(rows)])
            rows[len(labels)] = features
            labels.append(label)
            if measured % PROJECTION_SAMPLE == 0:
                check_time()
    if not labels:
        raise ValueError("the training split has no usable image")
    model = fit_classic(rows[: len(labels)], labels, seed=0)
    del rows
    train_seconds = time.perf_counter() - started
    check_time()

    examples: list[ScoredExample] = []
    score_started = time.perf_counter()
    with open_blob_reader(pipeline.training.get_blob_client(prefix + "test.jsonl")) as reader:
        for custom_id, truth, url in iter_split(reader):
            t0 = time.perf_counter()
            try:
                [answer] = model.predict(image_features(decode_data_url(url)))
            except (ClassicDataError, OSError, ValueError) as error:
                examples.append(ScoredExample(custom_id=custom_id, truth=truth, answer=None, error=str(error)))
                continue
            latency = (time.perf_counter() - t0) * 1000.0
            feature_seconds += latency / 1000.0
            measured += 1
            examples.append(ScoredExample(custom_id=custom_id, truth=truth, answer=answer, latency_ms=latency))
            if len(examples) % PROJECTION_SAMPLE == 0:
                check_time()
    score_seconds = time.perf_counter() - score_started
    return {
        "features": FEATURES_DESCRIPTION,
        "classifier": CLASSIFIER_DESCRIPTION,
        "feature_dims": FEATURE_DIMS,
        "train_examples": len(labels),
        "skipped_train_lines": skipped_lines,
        "iterations": model.iterations,
        "converged": model.converged,
        "train_seconds": round(train_seconds, 4),
        "score_seconds": round(score_seconds, 4),
        "examples": [dataclasses.asdict(e) for e in examples],
    }


# --- the report ---------------------------------------------------------------------------------------
def classic_verdict(
    fine_tune_accuracy: float, classic_accuracy: float, *, hosting_usd_per_hour: float, classic_usd: float
) -> ClassicVerdict:
    """The verdict line: how many points the fine-tune buys over the classic model and what hosting it
    costs a month (``hosting_usd_per_hour`` x 730 h)."""
    delta = fine_tune_accuracy - classic_accuracy
    monthly = hosting_usd_per_hour * HOURS_PER_MONTH
    accuracies = f"{pct(fine_tune_accuracy)} vs {pct(classic_accuracy)}"
    hosting = f"{usd(monthly)} a month to host ({usd(hosting_usd_per_hour)}/h x {HOURS_PER_MONTH} h)"
    classic_cost = f"the classic model cost {usd_fine(classic_usd)} to train and score"
    if points(delta) in ("+0.0 pts", "-0.0 pts"):
        sentence = (
            f"The fine-tune buys nothing over the classic baseline ({accuracies}) and costs {hosting}; "
            f"{classic_cost}."
        )
    elif delta > 0:
        sentence = (
            f"The fine-tune buys {points(delta)} of accuracy over the classic baseline ({accuracies}) for "
            f"{hosting}; {classic_cost}."
        )
    else:
        sentence = (
            f"The fine-tune is {points(-delta).lstrip('+')} less accurate than the classic baseline "
            f"({accuracies}) and costs {hosting}; {classic_cost}."
        )
    return ClassicVerdict(
        fine_tune_accuracy=fine_tune_accuracy,
        classic_accuracy=classic_accuracy,
        points=delta,
        hosting_usd_per_hour=hosting_usd_per_hour,
        hours_per_month=HOURS_PER_MONTH,
        hosting_usd_per_month=monthly,
        classic_usd=classic_usd,
        sentence=sentence,
    )


def _not_run_reason(run: Run) -> str:
    if run.failure is not None:
        return f"the run stopped before its evaluation ({run.failure.stage}: {run.failure.message})"
    if not run.terminal:
        return f"the run has not reached its evaluation yet (state {run.state.value})"
    return "this run was evaluated before the pipeline had a classic baseline"


def classic_report(
    pipeline: Pipeline,
    run: Run,
    settings: Settings,
    labels: list[str],
    fine_tune: ModelEvaluation | None,
) -> tuple[ModelEvaluation | None, ClassicBaseline]:
    """The classic baseline's metrics (None when missing) and its summary with cost, latency and verdict
    (or the reason it is missing). Never raises: a report is always written."""
    progress = run.classic
    if progress is None:
        return None, ClassicBaseline(status="not_run", reason=_not_run_reason(run))
    if progress.status != "scored":
        reason = progress.reason or "training and scoring have not run yet"
        return None, ClassicBaseline(status=progress.status, reason=reason)
    try:
        return _scored_report(pipeline, run, settings, labels, fine_tune)
    except Exception as error:  # noqa: BLE001 - a report without the baseline beats no report
        log.exception("%s: reading the classic baseline failed", run.key)
        return None, ClassicBaseline(status="failed", reason=f"its result could not be read: {error}")


def _scored_report(
    pipeline: Pipeline, run: Run, settings: Settings, labels: list[str], fine_tune: ModelEvaluation | None
) -> tuple[ModelEvaluation | None, ClassicBaseline]:
    result = load_result(pipeline, run)
    if result is None:
        return None, ClassicBaseline(status="failed", reason=f"its result ({SIDE_BLOB}) is missing")
    examples: list[ScoredExample] = [ScoredExample(**e) for e in result.get("examples", [])]
    memory_gb = settings.instance_memory_mb / 1024
    price = settings.price_flex_per_gb_second
    train_seconds = float(result.get("train_seconds") or 0.0)
    score_seconds = float(result.get("score_seconds") or 0.0)
    train_usd = train_seconds * memory_gb * price
    score_usd = score_seconds * memory_gb * price
    metrics = compute_metrics(labels, examples)
    metrics.cost_usd = round(score_usd, 8)
    latencies = [e.latency_ms for e in examples if e.latency_ms is not None]
    evaluation = ModelEvaluation(role="classic", model=MODEL_NAME, method="cpu", metrics=metrics)
    summary = ClassicBaseline(
        status="scored",
        features=result.get("features"),
        classifier=result.get("classifier"),
        feature_dims=result.get("feature_dims"),
        train_examples=result.get("train_examples"),
        skipped_train_lines=int(result.get("skipped_train_lines") or 0),
        test_examples=len(examples),
        iterations=result.get("iterations"),
        converged=result.get("converged"),
        train_seconds=train_seconds,
        score_seconds=score_seconds,
        latency_ms_per_image=statistics.fmean(latencies) if latencies else None,
        memory_gb=memory_gb,
        gb_seconds=round((train_seconds + score_seconds) * memory_gb, 4),
        price_per_gb_second=price,
        price_source=FLEX_PRICE_SOURCE,
        train_usd=round(train_usd, 8),
        score_usd=round(score_usd, 8),
        total_usd=round(train_usd + score_usd, 8),
    )
    if fine_tune is not None:
        summary.verdict = classic_verdict(
            fine_tune.metrics.accuracy,
            metrics.accuracy,
            hosting_usd_per_hour=settings.price_hosting_per_hour,
            classic_usd=train_usd + score_usd,
        )
    return evaluation, summary
