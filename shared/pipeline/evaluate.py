"""Evaluation in bounded, resumable steps: every model (role) answers one test split; the scored examples
are kept in side blobs in the runs container and picked up again on the next tick.

- Real-time roles (candidate, incumbent, and the base model when no batch deployment is configured) are
  scored at bounded concurrency until the tick's deadline; each tick continues with what is left. Requests
  that failed after the SDK's retries are asked once more in a second pass; what still fails is counted
  as an error in the metrics (and left out of the paired comparison by the gate's caller).
- The base model on a ``GlobalBatch`` deployment goes through the Batch API: upload the input (find or
  create), submit (find or create), poll. A batch that ends ``expired``/``failed``/``cancelled`` keeps the
  answers it has; the rest are scored in real time on the base deployment when there is one.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from shared.aoai.batch_scoring import batch_request_lines, batch_snapshot, submit_batch
from shared.aoai.files import file_state, upload_file
from shared.aoai.limits import BatchLineTooLargeError, split_batch_lines
from shared.aoai.realtime_scoring import score_realtime
from shared.aoai.scoring import TestItem, read_test_items
from shared.errors import VisiontuneError
from shared.evaluation.metrics import ScoredExample, compute_metrics
from shared.layout import training_prefix
from shared.pipeline.documents import ProductionRecord
from shared.pipeline.models import BatchPart, RoleProgress
from shared.reporting.schema import ModelEvaluation
from shared.settings import Settings
from shared.storage.readers import open_blob_reader

if TYPE_CHECKING:  # pragma: no cover
    from shared.pipeline.context import Pipeline

log = logging.getLogger(__name__)

ROLE_ORDER = ("candidate", "incumbent", "base")


MIN_CHUNK = 8


class ScoringStalledError(VisiontuneError, RuntimeError):
    """A deployment answered none of a chunk of requests (after the SDK's retries): retry the step later."""

    transient = True


class EvaluationSetupError(VisiontuneError, ValueError):
    """The evaluation cannot be planned (e.g. no way to score the base model is configured)."""


def load_test_items(pipeline: Pipeline, dataset: str, version: str) -> list[TestItem]:
    """The test split of a converted version, streamed line by line from the training container."""
    blob = pipeline.training.get_blob_client(training_prefix(dataset, version) + "test.jsonl")
    with open_blob_reader(blob) as reader:
        return read_test_items(reader)


def base_role(settings: Settings, total: int) -> RoleProgress:
    """How the base model is scored: Batch on the GlobalBatch deployment, else real time on the base one."""
    method: Literal["batch", "realtime"]
    if settings.batch_deployment:
        deployment, method = settings.batch_deployment, "batch"
    elif settings.base_deployment:
        deployment, method = settings.base_deployment, "realtime"
    else:
        raise EvaluationSetupError(
            "no way to score the base model: set AZURE_OPENAI_BATCH_DEPLOYMENT (a GlobalBatch deployment) or "
            "AZURE_OPENAI_BASE_DEPLOYMENT"
        )
    return RoleProgress(role="base", model=settings.base_model, deployment=deployment, method=method, total=total)


def incumbent_role(production: ProductionRecord, total: int) -> RoleProgress:
    """How the model serving production (``production.json``) is scored: real time on its deployment."""
    return RoleProgress(
        role="incumbent",
        model=production.model,
        deployment=production.deployment,
        method="realtime",
        total=total,
        incumbent_version=production.version,
    )


# --- side blobs -------------------------------------------------------------------------------------
def _side_name(prefix: str, role: str) -> str:
    return f"{prefix}eval-{role}.json"


def load_examples(pipeline: Pipeline, prefix: str, role: str) -> list[ScoredExample]:
    """The examples ``role`` has scored so far (side blob ``<prefix>eval-<role>.json``)."""

    data = pipeline.store.read_document(_side_name(prefix, role))
    return [ScoredExample(**item) for item in (data or {}).get("examples", [])]


def _save_examples(pipeline: Pipeline, prefix: str, role: str, examples: Sequence[ScoredExample]) -> None:
    pipeline.store.write_document(
        _side_name(prefix, role), {"examples": [dataclasses.asdict(e) for e in examples]}
    )


# --- stepping ---------------------------------------------------------------------------------------
def advance_evaluation(
    pipeline: Pipeline,
    roles: dict[str, RoleProgress],
    *,
    prefix: str,
    tag: str,
    items: Sequence[TestItem],
    deadline: float,
) -> bool:
    """Do what can be done before ``deadline`` (a ``time.monotonic()`` value) on every unfinished role.
    Mutates ``roles`` (the caller saves them). Returns True when anything moved."""
    progressed = False
    for name in sorted(roles, key=lambda r: ROLE_ORDER.index(r) if r in ROLE_ORDER else 99):
        role = roles[name]
        if role.done:
            continue
        if time.monotonic() >= deadline:
            break
        if role.method == "batch" and role.batch_status not in _BATCH_TERMINAL:
            progressed |= _batch_step(pipeline, role, prefix=prefix, tag=tag, items=items)
        else:
            progressed |= _realtime_step(pipeline, role, prefix=prefix, items=items, deadline=deadline)
    return progressed


_BATCH_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled", "input_error"})


def _realtime_deployment(pipeline: Pipeline, role: RoleProgress) -> str | None:
    if role.method == "batch":  # the batch is over: what it did not answer goes to the base deployment
        return pipeline.settings.base_deployment
    return role.deployment


def _realtime_step(
    pipeline: Pipeline, role: RoleProgress, *, prefix: str, items: Sequence[TestItem], deadline: float
) -> bool:
    done = load_examples(pipeline, prefix, role.role)
    done_ids = {e.custom_id for e in done}
    remaining = [i for i in items if i.custom_id not in done_ids]
    if not remaining:
        failed = [e for e in done if e.failed]
        if failed and not role.retried_errors:
            role.retried_errors = True
            kept = [e for e in done if not e.failed]
            _save_examples(pipeline, prefix, role.role, kept)
            role.scored = len(kept)
            return True
        role.done = True
        role.scored = len(done)
        return True
    deployment = _realtime_deployment(pipeline, role)
    if deployment is None:  # a batch without a real-time fallback: what it did not answer stays an error
        role.done = True
        return True
    concurrency = pipeline.settings.eval_concurrency
    chunk = max(2 * concurrency, MIN_CHUNK)
    progressed = False
    while remaining and time.monotonic() < deadline:
        part, remaining = remaining[:chunk], remaining[chunk:]
        scored = score_realtime(pipeline.openai, deployment, part, concurrency=concurrency, deadline=deadline)
        if len(scored) == len(part) and all(e.failed for e in scored):
            # A whole chunk without one answer: the deployment is down, not the examples hard. Keep nothing
            # from the chunk and let the run retry later (bounded), instead of hammering it to the end.
            raise ScoringStalledError(
                f"{role.role}: {len(part)} requests in a row to {deployment} got no answer; first error: "
                f"{scored[0].error}"
            )
        if scored:
            done.extend(scored)
            _save_examples(pipeline, prefix, role.role, done)
            role.scored = len(done)
            progressed = True
        if len(scored) < len(part):  # the deadline stopped it: resume next tick
            break
    return progressed


def _plan_batch_parts(pipeline: Pipeline, role: RoleProgress, items: Sequence[TestItem]) -> None:
    """Cut the test set into Batch API input files within the per-file limits (settings
    ``VISIONTUNE_BATCH_FILE_MAX_BYTES`` / ``_MAX_REQUESTS``; Azure: 200 MB and 100,000 requests, Learn
    "Azure OpenAI quotas and limits", batch limits). A single request too large for any file sends the
    role to real-time scoring, with a note."""
    if role.batch_input_file is not None:  # a run planned before batch files were split: one part
        role.batch_parts = [
            BatchPart(start=0, stop=len(items), input_file=role.batch_input_file, batch_id=role.batch_id,
                      status=role.batch_status)
        ]  # fmt: skip
        return
    settings = pipeline.settings
    sizes = [len(line) for line in batch_request_lines(items, str(role.deployment))]
    try:
        ranges = split_batch_lines(
            sizes, max_bytes=settings.batch_file_max_bytes, max_requests=settings.batch_file_max_requests
        )
    except BatchLineTooLargeError as error:
        role.batch_status = "input_error"
        role.note = f"{error}: the base model was scored in real time instead of with the Batch API"
        return
    role.batch_parts = [BatchPart(start=r.start, stop=r.stop) for r in ranges]
    if len(ranges) > 1:
        role.note = (
            f"the test set ({len(items):,} requests, {sum(sizes) / 1024**2:,.1f} MB) is over the Batch API's "
            f"per-file limits ({settings.batch_file_max_requests:,} requests, "
            f"{settings.batch_file_max_bytes / 1024**2:,.0f} MB): sent as {len(ranges)} batch files, "
            "joined back by custom_id"
        )


def _batch_step(
    pipeline: Pipeline, role: RoleProgress, *, prefix: str, tag: str, items: Sequence[TestItem]
) -> bool:
    """One move of a role scored with the Batch API: plan the files, upload one, submit one, or poll;
    once every file's batch has ended, join all answers by ``custom_id``."""
    client = pipeline.openai
    if not role.batch_parts:
        _plan_batch_parts(pipeline, role, items)
        return True
    several = len(role.batch_parts) > 1
    for number, part in enumerate(role.batch_parts):
        if part.input_file is None:
            data = b"".join(batch_request_lines(items[part.start : part.stop], str(role.deployment)))
            name = f"vt-{tag}-base-batch" + (f"-{number + 1}of{len(role.batch_parts)}" if several else "") + ".jsonl"
            part.input_file = upload_file(
                client, name=name, size=len(data), open_stream=partial(io.BytesIO, data), purpose="batch"
            )
            role.remote_files.append(part.input_file)
            return True
    moved = False
    for part in role.batch_parts:
        if part.status in _BATCH_TERMINAL:
            continue
        if part.batch_id is None:
            if part.input_file is None:  # every part's file is uploaded above before any batch is created
                continue
            state = file_state(client, part.input_file)
            if state.status == "pending":
                continue
            if state.status == "error":
                part.status = "input_error"
                role.note = f"a batch input file was rejected ({state.error}); its requests were scored in real time"
                moved = True
                continue
            part.batch_id = submit_batch(client, input_file_id=str(part.input_file))
            moved = True
            continue
        snapshot = batch_snapshot(client, part.batch_id, items[part.start : part.stop])
        if snapshot.status != part.status:
            part.status = snapshot.status
            moved = True
    statuses = [part.status for part in role.batch_parts]
    if not all(status in _BATCH_TERMINAL for status in statuses):
        role.batch_status = next(s for s in statuses if s not in _BATCH_TERMINAL) or "validating"
        return moved
    results = []
    errors = []
    for part in role.batch_parts:
        if part.batch_id is None:  # its input was rejected: nothing answered
            continue
        snapshot = batch_snapshot(client, part.batch_id, items[part.start : part.stop])
        results.extend(snapshot.results or [])
        if snapshot.error:
            errors.append(snapshot.error)
        for file_id in (snapshot.output_file_id, snapshot.error_file_id):
            if file_id and file_id not in role.remote_files:
                role.remote_files.append(file_id)
    answered = [r for r in results if not r.failed]
    fallback = pipeline.settings.base_deployment
    worst = [s for s in statuses if s != "completed"]
    role.batch_status = worst[0] if worst else "completed"
    if len(answered) < len(items):
        missing = len(items) - len(answered)
        why = f"batch {role.batch_status}" + (f" ({'; '.join(errors)})" if errors else "")
        role.note = ((role.note + "; ") if role.note and several else "") + (
            f"{why}: {len(answered)}/{len(items)} answered; the other {missing} "
            + (f"were scored in real time on {fallback}" if fallback else "count as errors (no real-time base deployment)")
        )
    # Keep the answers; the unanswered are re-asked in real time (or kept as errors without a fallback).
    kept = answered if fallback else results
    _save_examples(pipeline, prefix, role.role, kept)
    role.scored = len(kept)
    role.retried_errors = True  # the real-time pass after a batch is the retry
    return True


# --- results ----------------------------------------------------------------------------------------
def model_evaluation(
    settings: Settings, labels: Sequence[str], role: RoleProgress, examples: Sequence[ScoredExample]
) -> ModelEvaluation:
    """The report's ``ModelEvaluation`` of one role (metrics, tokens, cost; Batch at its discount)."""
    metrics = compute_metrics(
        labels,
        examples,
        price_input_per_1m=settings.price_input_per_1m_tokens,
        price_output_per_1m=settings.price_output_per_1m_tokens,
        discount=settings.batch_discount if role.method == "batch" else 0.0,
    )
    return ModelEvaluation(
        role=role.role, model=role.model, deployment=role.deployment, method=role.method, metrics=metrics
    )


def error_share(examples: Sequence[Any]) -> float:
    """Fraction of examples that got no answer at all."""
    return sum(1 for e in examples if e.failed) / len(examples) if examples else 1.0
