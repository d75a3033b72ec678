"""Fine-tuning jobs: find-or-create, poll into a plain snapshot, cancel.

A job is identified by its training file: before creating one, ``create_job`` looks for a job that
already trains on that file, so a replayed trigger or a crash between "create" and "save the job id"
never starts a second (paid) job. Status handling follows Azure: ``pending`` and any status we do not
know count as still running; only ``succeeded``, ``failed`` and ``cancelled`` are terminal.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.aoai.errors import AoaiError, describe_openai_error
from shared.aoai.files import read_file_bytes
from shared.reporting.schema import ResultsRow

if TYPE_CHECKING:
    from openai import BaseModel
    from openai.types.fine_tuning import (
        FineTuningJob,
        FineTuningJobEvent,
        SupervisedHyperparametersParam,
        job_create_params,
    )
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from shared.aoai.clients import AzureOpenAIClient

TERMINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
UNSUCCESSFUL_JOB_STATUSES = frozenset({"failed", "cancelled"})
SUFFIX_MAX_CHARS = 18
SUFFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,18}$")
RESULTS_COLUMNS = (
    "step",
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "validation_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)
# The training type the service uses when a create request names none (Learn's fine-tuning how-to).
DEFAULT_TRAINING_TYPE = "standard"
# Azure emits an event per logged step: keep the newest ones so a run's state stays small.
DEFAULT_MAX_EVENTS = 200


class FineTuningError(AoaiError):
    """A fine-tuning call failed (the message carries the service's own words)."""


@dataclass(frozen=True)
class Checkpoint:
    id: str  # ftchkpt-...
    model: str  # fine_tuned_model_checkpoint: the deployable model name
    step: int | None = None


@dataclass(frozen=True)
class JobSnapshot:
    """What a poll of a fine-tuning job tells the pipeline.

    ``status`` is the service's raw status; ``terminal`` is True only for succeeded / failed / cancelled.
    ``events`` are ``"<iso time> [level] message"`` strings, oldest first (the newest ``max_events``).
    ``checkpoints`` are checkpoint ids (``ftchkpt-...``), oldest first; ``checkpoint_details`` also give
    the deployable checkpoint model names. ``results`` is ``result_files[0]`` (results.csv) parsed;
    ``results_error`` says why it could not be read, if it could not.
    """

    id: str
    status: str
    terminal: bool
    succeeded: bool
    model: str | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    checkpoint_details: list[Checkpoint] = field(default_factory=list)
    results: list[ResultsRow] = field(default_factory=list)
    results_error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    estimated_finish: datetime | None = None


def make_suffix(dataset: str) -> str:
    """A fine-tuned-model suffix for ``dataset``: at most 18 characters of letters, digits, ``-``, ``_``;
    deterministic and never empty. A name that fits is used as is; a longer one, or one that had to change
    keeps a readable prefix plus 6 hex digits of its hash, so distinct datasets keep distinct suffixes."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", dataset.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-_")
    if cleaned and cleaned == dataset and len(cleaned) <= SUFFIX_MAX_CHARS:
        return cleaned
    digest = hashlib.sha256(dataset.encode("utf-8")).hexdigest()[:6]
    head = cleaned[: SUFFIX_MAX_CHARS - len(digest) - 1].rstrip("-_")
    return f"{head}-{digest}" if head else f"vt-{digest}"


def _timestamp(value: int | None) -> datetime | None:
    if value in (None, 0):
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _all_jobs(client: AzureOpenAIClient) -> list[FineTuningJob]:
    try:
        return list(client.fine_tuning.jobs.list(limit=100))
    except Exception as exc:  # noqa: BLE001
        raise FineTuningError(f"could not list fine-tuning jobs: {describe_openai_error(exc)}") from exc


def _preferred(jobs: list[FineTuningJob]) -> FineTuningJob | None:
    """Prefer a live or succeeded job (the oldest), then the newest failed/cancelled one."""
    alive = [j for j in jobs if j.status not in UNSUCCESSFUL_JOB_STATUSES]
    if alive:
        return min(alive, key=lambda j: (j.created_at or 0, j.id))
    if jobs:
        return max(jobs, key=lambda j: (j.created_at or 0, j.id))
    return None


def find_job_for_training_file(client: AzureOpenAIClient, training_file_id: str) -> str | None:
    """The id of a job that trains on ``training_file_id`` (a running or succeeded one first; else the
    newest failed/cancelled one), or None. A failed job is returned rather than hidden: the caller
    decides whether a new job is wanted (then it uploads under a new file name)."""
    job = _preferred([j for j in _all_jobs(client) if j.training_file == training_file_id])
    return None if job is None else str(job.id)


def create_job(
    client: AzureOpenAIClient,
    *,
    model: str,
    training_file: str,
    validation_file: str | None,
    suffix: str,
    seed: int,
    n_epochs: int | None,
    batch_size: int | None,
    learning_rate_multiplier: float | None,
    training_type: str,
) -> str:
    """Find-or-create the supervised fine-tuning job for ``training_file``; returns its id.

    ``client.fine_tuning`` is the v1 API (``shared.aoai.clients``): its spec (``OpenAI.CreateFineTuningJobRequest``)
    declares ``method={"type": "supervised", "supervised": {"hyperparameters": ...}}``. Hyperparameters left
    as None are chosen by the service. ``training_type`` is sent as ``trainingType`` only when it is not
    the service's default (standard): see ``training_type_body``.
    If two callers race, both converge on the oldest live job and the newer one is cancelled.
    """
    if not SUFFIX_RE.match(suffix):
        raise ValueError(f"invalid suffix {suffix!r}: use 1-18 letters, digits, '-' or '_' (see make_suffix)")
    existing = find_job_for_training_file(client, training_file)
    if existing is not None:
        return existing

    import openai

    hyperparameters: SupervisedHyperparametersParam = {}
    if n_epochs is not None:
        hyperparameters["n_epochs"] = n_epochs
    if batch_size is not None:
        hyperparameters["batch_size"] = batch_size
    if learning_rate_multiplier is not None:
        hyperparameters["learning_rate_multiplier"] = learning_rate_multiplier
    method: job_create_params.Method = {"type": "supervised"}
    if hyperparameters:
        method["supervised"] = {"hyperparameters": hyperparameters}
    try:
        job = client.fine_tuning.jobs.create(
            model=model,
            training_file=training_file,
            validation_file=validation_file if validation_file else openai.omit,
            suffix=suffix,
            seed=seed,
            method=method,
            extra_body=training_type_body(training_type),
        )
    except openai.OpenAIError as exc:
        raise FineTuningError(f"could not create the fine-tuning job: {describe_openai_error(exc)}") from exc
    return _converge_on_oldest_job(client, training_file, created=str(job.id))


def training_type_body(training_type: str) -> dict[str, str] | None:
    """The ``trainingType`` body field, or None for standard (regional) training, the service's default.

    No spec copy declares ``trainingType``; Microsoft Learn's fine-tuning how-to documents it for global
    and developer training with 2025-04-01-preview and later, the v1 API included
    (https://learn.microsoft.com/azure/ai-foundry/openai/how-to/fine-tuning). So it is sent on the v1 API
    only, and only when it changes something.
    """
    return None if training_type == DEFAULT_TRAINING_TYPE else {"trainingType": training_type}


def _converge_on_oldest_job(client: AzureOpenAIClient, training_file: str, *, created: str) -> str:
    alive = [
        j
        for j in _all_jobs(client)
        if j.training_file == training_file and j.status not in UNSUCCESSFUL_JOB_STATUSES
    ]
    winner = _preferred(alive)
    if winner is None or winner.id == created:
        return created
    cancel_job(client, created)
    return str(winner.id)


def parse_results_csv(data: bytes | str) -> list[ResultsRow]:
    """Parse a fine-tuning ``results.csv`` (Azure serves it base64-encoded; plain CSV is accepted too).

    Empty cells become None; unknown columns are ignored; a row without a numeric step is skipped.
    Raises ``ValueError`` when the content is not a results table at all."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    text = raw.decode("utf-8-sig", "replace").strip()
    if text and not text.lower().startswith("step"):
        try:
            decoded = base64.b64decode("".join(text.split()), validate=True).decode("utf-8-sig").strip()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            decoded = ""
        if decoded.lower().startswith("step"):
            text = decoded
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "step" not in header:
        raise ValueError(f"not a results.csv (columns: {', '.join(header) or 'none'})")
    rows: list[ResultsRow] = []
    for record in reader:
        values = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k is not None}
        try:
            step = int(float(values["step"]))
        except (KeyError, ValueError):
            continue
        row: dict[str, Any] = {"step": step}
        for column in RESULTS_COLUMNS[1:]:
            cell = values.get(column, "")
            try:
                row[column] = float(cell) if cell not in ("", "nan", "NaN", "None", "null") else None
            except ValueError:
                row[column] = None
        rows.append(ResultsRow(**row))
    return rows


def _format_event(event: FineTuningJobEvent) -> str:
    at = _timestamp(event.created_at)
    when = at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else "?"
    return f"{when} [{event.level or 'info'}] {event.message or ''}"


def _events(client: AzureOpenAIClient, job_id: str, max_events: int) -> list[str]:
    # The service lists newest first: take the newest max_events (pages are fetched lazily), then sort
    # oldest first, keeping the service's order for equal times.
    events = list(itertools.islice(client.fine_tuning.jobs.list_events(job_id, limit=100), max_events))
    ordered = sorted(reversed(events), key=lambda e: e.created_at or 0)
    return [_format_event(e) for e in ordered[-max_events:]]


def _checkpoints(client: AzureOpenAIClient, job_id: str) -> list[Checkpoint]:
    found: list[FineTuningJobCheckpoint] = list(client.fine_tuning.jobs.checkpoints.list(job_id, limit=100))
    found.sort(key=lambda c: (c.step_number or 0, c.created_at or 0))
    return [Checkpoint(id=c.id, model=c.fine_tuned_model_checkpoint, step=c.step_number) for c in found]


def _job_error(job: FineTuningJob) -> str | None:
    error = job.error
    if not error:
        return None
    code, message = error.code, error.message
    if not (code or message):
        return None
    return f"{code}: {message}" if code and message else str(message or code)


def _failure_message(job: FineTuningJob, status: str, events: list[str]) -> str | None:
    if status == "succeeded":
        return None
    message = _job_error(job)
    if message is None and status == "failed":
        # Azure sometimes leaves `error` empty and says why only in an error-level event.
        errors = [e for e in events if "[error]" in e]
        message = errors[-1].split("] ", 1)[-1] if errors else "the job failed without an error message"
    return message


def job_snapshot(client: AzureOpenAIClient, job_id: str, *, max_events: int = DEFAULT_MAX_EVENTS) -> JobSnapshot:
    """Poll ``job_id``: status, model, tokens, error, events, and (once terminal) checkpoints and the
    parsed results.csv. Raises ``FineTuningError`` when the job cannot be read at all."""
    import openai

    try:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = _events(client, job_id, max_events)
    except openai.OpenAIError as exc:
        message = describe_openai_error(exc)
        raise FineTuningError(f"could not read fine-tuning job {job_id}: {message}") from exc

    status = str(job.status)
    terminal = status in TERMINAL_JOB_STATUSES
    checkpoints: list[Checkpoint] = []
    results: list[ResultsRow] = []
    results_error: str | None = None
    if terminal:
        try:
            checkpoints = _checkpoints(client, job_id)
        except openai.OpenAIError as exc:
            results_error = f"checkpoints unavailable: {describe_openai_error(exc)}"
        result_files = list(job.result_files or [])
        if result_files:
            try:
                results = parse_results_csv(read_file_bytes(client, result_files[0]))
            except (AoaiError, ValueError) as exc:
                results_error = f"results file {result_files[0]} unreadable: {exc}"

    # The v1 API reports what was asked for under ``method.supervised``; the top-level field is legacy.
    hyper: BaseModel | None = job.hyperparameters
    supervised = job.method.supervised if job.method is not None else None
    if supervised is not None and supervised.hyperparameters is not None:
        hyper = supervised.hyperparameters
    hyperparameters = hyper.model_dump(exclude_none=True) if hyper is not None else {}

    return JobSnapshot(
        id=str(job.id),
        status=status,
        terminal=terminal,
        succeeded=status == "succeeded",
        model=job.model,
        fine_tuned_model=job.fine_tuned_model,
        trained_tokens=job.trained_tokens,
        error=_failure_message(job, status, events),
        training_file=job.training_file,
        validation_file=job.validation_file,
        hyperparameters=hyperparameters,
        events=events,
        checkpoints=[c.id for c in checkpoints],
        checkpoint_details=checkpoints,
        results=results,
        results_error=results_error,
        created_at=_timestamp(job.created_at),
        finished_at=_timestamp(job.finished_at),
        estimated_finish=_timestamp(job.estimated_finish),
    )


def _cancel_failed(job_id: str, exc: BaseException) -> str:
    return f"could not cancel fine-tuning job {job_id}: {describe_openai_error(exc)}"


def cancel_job(client: AzureOpenAIClient, job_id: str) -> None:
    """Cancel a job; a job that is gone or already finished is fine."""
    import openai

    try:
        client.fine_tuning.jobs.cancel(job_id)
    except openai.NotFoundError:
        return
    except openai.APIStatusError as exc:
        if exc.status_code in (400, 409):
            try:
                if client.fine_tuning.jobs.retrieve(job_id).status in TERMINAL_JOB_STATUSES:
                    return
            except openai.OpenAIError:
                pass
        raise FineTuningError(_cancel_failed(job_id, exc)) from exc
    except openai.OpenAIError as exc:
        raise FineTuningError(_cancel_failed(job_id, exc)) from exc
