"""``converted`` -> ``uploading`` (or ``over_budget`` / ``failed``): check the version can be trained and
fits the budget before anything is uploaded; ``recheck_over_budget`` for a re-dropped ``_READY`` marker."""

from __future__ import annotations

import time
from typing import Any

from shared.layout import training_prefix
from shared.pipeline.context import RUN_LEASE_SECONDS, Pipeline
from shared.pipeline.documents import Manifest
from shared.pipeline.models import Run, RunState, UploadedFile, utcnow
from shared.pipeline.reports import publish_index, publish_run_report
from shared.pipeline.resource_limits import make_room_for_training_files
from shared.pipeline.store import ConcurrentUpdateError
from shared.reporting.schema import Failure
from shared.settings import Settings

TRAINING_SPLITS = ("train", "validation")


# The service refuses a fine-tuning file with fewer examples than this (training or validation).
MIN_FILE_EXAMPLES = 10


def file_name(dataset: str, version: str, split: str) -> str:
    """The filename a split is uploaded under: unique per dataset version + split (find-or-create key)."""
    return f"vt-{dataset}-{version}-{split}.jsonl"


def untrainable_reason(splits: dict[str, dict[str, Any]]) -> str | None:
    """Why a converted version must not be trained (checked before anything is uploaded), or None.

    A version with no test example could never be evaluated, so it could never be promoted: training it
    would only spend money."""
    test_examples = int(splits.get("test", {}).get("examples", 0))
    if test_examples == 0:
        return (
            "the test split is empty, so the fine-tuned model could not be evaluated; nothing was uploaded. "
            "Add images (without given splits about 10% of each label go to test) or a test/<label>/ folder, "
            "and drop the _READY marker again."
        )
    return None


def fill_from_manifest(run: Run, manifest: Manifest) -> None:
    """Copy what the run needs from the version's manifest (labels, split counts, estimate)."""
    run.labels = list(manifest.labels)
    run.splits = {
        name: {"examples": split.examples, "per_label": dict(split.per_label)} for name, split in manifest.splits.items()
    }
    run.estimate = manifest.estimate.model_dump(mode="json")


def budget_check(settings: Settings, estimate: dict[str, Any]) -> tuple[int, float, str | None]:
    """(estimated training tokens, estimated USD, why it is over budget or None). The epochs are the
    configured ones when set, else the converter's estimate (the service picks epochs itself then)."""
    per_epoch = int(estimate.get("tokens_per_epoch") or 0)
    epochs = settings.n_epochs or int(estimate.get("epochs") or 1)
    tokens = per_epoch * epochs if per_epoch else int(estimate.get("training_tokens") or 0)
    usd = tokens * settings.price_training_per_1m_tokens / 1e6
    problems = []
    if tokens > settings.max_training_tokens:
        problems.append(
            f"{tokens:,} estimated training tokens is over the limit of {settings.max_training_tokens:,}"
        )
    if usd > settings.max_run_usd:
        problems.append(
            f"the estimated training cost ${usd:,.2f} is over the budget of ${settings.max_run_usd:,.2f}"
        )
    reason = None
    if problems:
        reason = (
            "; ".join(problems)
            + f" ({per_epoch:,} tokens per epoch x {epochs} epoch(s) at ${settings.price_training_per_1m_tokens:g} per 1M)."
            + " Nothing was uploaded. To train it, raise the limit (VISIONTUNE_MAX_TRAINING_TOKENS /"
            + " VISIONTUNE_MAX_RUN_USD, or"
            + ' {"max_run_usd": ..., "max_training_tokens": ...} in the _READY marker, which wins over the'
            + " settings) and drop the _READY marker again: the run is checked again and continues if it fits."
        )
    return tokens, usd, reason


def check_budget(pipeline: Pipeline, settings: Settings, run: Run, **_: Any) -> bool:
    """Fill the run from its manifest (waits until it is published), refuse a version that could never be
    evaluated, check the budget, then list the files to upload and move to ``uploading``."""

    if not run.labels:
        manifest = pipeline.manifest(run.dataset, run.version)
        if manifest is None:  # the run is created just before the version is published: wait for it
            return False
        fill_from_manifest(run, manifest)
    problem = untrainable_reason(run.splits)
    if problem is not None:
        run.fail("preflight", problem)
        return True
    tokens, usd, reason = budget_check(settings, run.estimate)
    if reason is not None:
        run.failure = Failure(stage="budget", message=reason, at=utcnow())
        run.transition(RunState.OVER_BUDGET, reason)
        return True
    files = []
    validation_examples = int(run.splits.get("validation", {}).get("examples", 0))
    for split in TRAINING_SPLITS:
        if split == "validation" and 0 < validation_examples < MIN_FILE_EXAMPLES:
            run.note(
                f"the validation split has {validation_examples} example(s), fewer than the "
                f"{MIN_FILE_EXAMPLES} a fine-tuning file needs: training without a validation file"
            )
            continue
        blob = training_prefix(run.dataset, run.version) + f"{split}.jsonl"
        client = pipeline.training.get_blob_client(blob)
        size = client.get_blob_properties().size if client.exists() else 0
        if split == "train" and not size:
            raise ValueError(f"training/{blob} is missing or empty")
        if size:
            files.append(
                UploadedFile(
                    split=split, name=file_name(run.dataset, run.version, split), blob=blob, size=size
                )
            )
    run.files = files

    quota_problem = make_room_for_training_files(pipeline, settings, run)
    if quota_problem is not None:
        run.fail("preflight", quota_problem)
        return True
    run.transition(RunState.UPLOADING, f"within budget: ~{tokens:,} training tokens, ~${usd:,.2f}")
    return True


# How long a re-dropped marker waits for another worker's lease on an over_budget run (e.g. the timer
# writing its report) before giving up (the trigger retries).
RECHECK_ATTEMPTS = 10
RECHECK_WAIT_SECONDS = 1.0


def recheck_over_budget(
    pipeline: Pipeline, dataset: str, version: str, overrides: dict[str, Any]
) -> Run | None:
    """A ``_READY`` marker was dropped again for a version whose run is ``over_budget`` (the budget is not
    part of the version, so the drop converts to the same one): check the budget again with the new
    marker's ``overrides`` and the current settings.

    Fits now: the run goes back to ``converted`` with the reason on its timeline, and the next
    ``advance_runs`` tick continues it. Still over: it stays ``over_budget`` with the new reason and its
    report is written again. The change is saved under the run's lease with If-Match, so of concurrent
    or repeated drops exactly one re-opens the run; the others find it moved on and do nothing. Any other
    state: nothing to do. Returns the run as saved or found (None when there is none); raises
    ``ConcurrentUpdateError`` when another worker kept the run leased (a trigger retry is then right)."""

    for _ in range(RECHECK_ATTEMPTS):
        run = pipeline.store.get(dataset, version)
        if run is None or run.state is not RunState.OVER_BUDGET:
            return run
        claimed = pipeline.store.claim(dataset, version, seconds=RUN_LEASE_SECONDS)
        if claimed is None:
            time.sleep(RECHECK_WAIT_SECONDS)
            continue
        changed = _recheck_budget(pipeline.settings, claimed, overrides)
        claimed.lease = None
        try:
            saved = pipeline.store.save(claimed)
        except ConcurrentUpdateError:
            continue  # someone else wrote first: read again
        if changed:
            publish_run_report(pipeline, saved)
            publish_index(pipeline, dataset)
            if saved.terminal:
                saved.report_written_for = saved.state.value
                try:
                    saved = pipeline.store.save(saved)
                except ConcurrentUpdateError:
                    pass  # report_written_for stays unset: the timer writes the report again
        return saved
    raise ConcurrentUpdateError(
        f"{dataset}/{version} stayed leased by another worker; the budget was not checked again"
    )


def _recheck_budget(settings: Settings, run: Run, overrides: dict[str, Any]) -> bool:
    """Apply a re-dropped marker's ``overrides`` to an over_budget ``run`` and check the budget again
    (see ``recheck_over_budget``). Returns True when the run changed."""

    if run.state is not RunState.OVER_BUDGET:
        return False
    previous = run.overrides
    run.overrides = dict(overrides)
    effective = run.effective_settings(settings)
    tokens, usd, reason = budget_check(effective, run.estimate)
    if reason is None:
        run.failure = None
        run.transition(
            RunState.CONVERTED,
            f"the _READY marker was dropped again: ~{tokens:,} training tokens, ~${usd:,.2f} now fit the "
            f"limits ({effective.max_training_tokens:,} tokens, ${effective.max_run_usd:,.2f}); continuing",
        )
        return True
    if run.failure is not None and run.failure.message == reason and previous == run.overrides:
        return False  # a replay of the same drop: nothing new to say
    run.failure = Failure(stage="budget", message=reason, at=utcnow())
    run.report_written_for = None
    run.note(f"the _READY marker was dropped again: still over budget: {reason}")
    return True
