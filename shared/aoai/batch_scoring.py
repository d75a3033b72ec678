"""Scoring through the Batch API (base model only: fine-tuned models cannot run in batch): the input file,
find-or-create and cancel of the batch, and its output and error files joined back to the test items."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from shared.aoai.errors import AoaiError, describe_error_body, describe_openai_error
from shared.aoai.files import read_file_bytes
from shared.aoai.scoring import DEFAULT_MAX_TOKENS, TestItem
from shared.evaluation.metrics import ScoredExample

if TYPE_CHECKING:
    from openai.types import Batch

    from shared.aoai.clients import AzureOpenAIClient

TERMINAL_BATCH_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 200 * 1024 * 1024
BATCH_ENDPOINT = "/chat/completions"
BATCH_COMPLETION_WINDOW: Final = "24h"


@dataclass(frozen=True)
class BatchSnapshot:
    """A poll of a batch. ``results`` is None until the batch is terminal; then one ScoredExample per
    test item, in the items' order (items without an answer have ``answer=None`` and ``error``)."""

    id: str
    status: str
    terminal: bool
    completed: bool
    results: list[ScoredExample] | None = None
    error: str | None = None  # the batch's own errors (validation failures), if any
    request_counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    answered: int = 0  # items that got an answer


def batch_request_lines(
    items: Sequence[TestItem], batch_deployment: str, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> list[bytes]:
    """One Batch API request line per item (``{"custom_id", "method": "POST", "url": "/chat/completions",
    "body": {"model": <batch deployment>, ...}}`` + newline), UTF-8 without BOM. Raises ``ValueError`` on
    no items or duplicate custom ids (the join back by ``custom_id`` needs them unique)."""
    if not items:
        raise ValueError("a batch needs at least one item")
    seen: set[str] = set()
    lines: list[bytes] = []
    for item in items:
        if item.custom_id in seen:
            raise ValueError(f"duplicate custom_id {item.custom_id!r}")
        seen.add(item.custom_id)
        request = {
            "custom_id": item.custom_id,
            "method": "POST",
            "url": BATCH_ENDPOINT,
            "body": {
                "model": batch_deployment,
                "messages": item.messages,
                "temperature": 0,
                "max_tokens": max_tokens,
            },
        }
        lines.append(json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    return lines


def batch_input_lines(
    items: Sequence[TestItem],
    batch_deployment: str,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_requests: int = BATCH_MAX_REQUESTS,
    max_bytes: int = BATCH_MAX_BYTES,
) -> bytes:
    """The Batch API input file for ``items`` (``batch_request_lines`` joined). Raises ``ValueError`` over
    the per-file limits (Azure's: 100,000 requests, 200 MB); ``shared.aoai.limits.split_batch_lines``
    cuts a larger set into files that fit."""
    if len(items) > max_requests:
        raise ValueError(f"{len(items)} requests is over the Batch API limit of {max_requests} per file")
    data = b"".join(batch_request_lines(items, batch_deployment, max_tokens=max_tokens))
    if len(data) > max_bytes:
        raise ValueError(f"batch input of {len(data)} bytes is over the Batch API limit of {max_bytes}")
    return data


def _all_batches(client: AzureOpenAIClient) -> list[Batch]:
    try:
        return list(client.batches.list(limit=100))
    except Exception as exc:  # noqa: BLE001
        raise AoaiError(f"could not list batches: {describe_openai_error(exc)}") from exc


def _oldest(batches: list[Batch]) -> Batch | None:
    return min(batches, key=lambda b: (b.created_at or 0, b.id)) if batches else None


def submit_batch(client: AzureOpenAIClient, *, input_file_id: str, retry_unsuccessful: bool = False) -> str:
    """Find-or-create the batch for ``input_file_id`` (endpoint /chat/completions, window 24h); returns
    its id. A batch that already ended failed/expired/cancelled is returned as well, unless
    ``retry_unsuccessful``: then a new batch is created for the same input."""
    import openai

    existing = [b for b in _all_batches(client) if b.input_file_id == input_file_id]
    oldest_live = _oldest([b for b in existing if _status(b) not in ("failed", "expired", "cancelled")])
    if oldest_live is not None:
        return oldest_live.id
    if existing and not retry_unsuccessful:
        return str(max(existing, key=lambda b: (b.created_at or 0, b.id)).id)
    try:
        batch = client.batches.create(
            input_file_id=input_file_id,
            # Azure's batch spec declares "/chat/completions"; the SDK's Literal lists only OpenAI's "/v1/..." paths.
            endpoint=BATCH_ENDPOINT,  # type: ignore[arg-type]
            completion_window=BATCH_COMPLETION_WINDOW,
        )
    except openai.OpenAIError as exc:
        raise AoaiError(f"could not create the batch: {describe_openai_error(exc)}") from exc
    # Two racing callers converge on the oldest live batch; the newer one is cancelled.
    live = [
        b for b in _all_batches(client)
        if b.input_file_id == input_file_id and _status(b) not in ("failed", "expired", "cancelled")
    ]
    winner = _oldest(live)
    if winner is not None and winner.id != batch.id:
        cancel_batch(client, batch.id)
        return str(winner.id)
    return str(batch.id)


def cancel_batch(client: AzureOpenAIClient, batch_id: str) -> None:
    """Cancel a batch; one that is gone or already finished is fine."""
    import openai

    try:
        client.batches.cancel(batch_id)
    except (openai.NotFoundError, openai.BadRequestError, openai.ConflictError):
        return
    except openai.OpenAIError as exc:
        raise AoaiError(f"could not cancel batch {batch_id}: {describe_openai_error(exc)}") from exc


def _status(batch: Batch) -> str:
    status = str(batch.status)
    return "cancelled" if status == "canceled" else status


def _batch_errors(batch: Batch) -> str | None:
    data = batch.errors.data if batch.errors is not None else None
    if not data:
        return None
    parts = []
    for e in data:
        where = f" (line {e.line})" if e.line is not None else ""
        parts.append(f"{e.code or 'error'}: {e.message or ''}{where}")
    return "; ".join(parts)


def _parse_result_line(record: dict[str, Any]) -> tuple[str | None, int, int, str | None]:
    """(answer, prompt_tokens, completion_tokens, error) of one output / error file line."""
    response = record.get("response") or {}
    status = response.get("status_code")
    body = response.get("body") or {}
    if record.get("error"):
        return None, 0, 0, describe_error_body({"error": record["error"]}, status)
    if status is not None and int(status) != 200:
        return None, 0, 0, describe_error_body(body, int(status))
    usage = body.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    choices = body.get("choices") or []
    if not choices:
        return None, prompt_tokens, completion_tokens, "no answer (no choices in the batch response)"
    message = choices[0].get("message") or {}
    content = message.get("content")
    if content is None:
        reason = choices[0].get("finish_reason")
        return None, prompt_tokens, completion_tokens, f"no answer (finish_reason: {reason})"
    return str(content), prompt_tokens, completion_tokens, None


def join_batch_results(
    items: Sequence[TestItem], output: bytes | None, errors: bytes | None, *, missing_reason: str
) -> list[ScoredExample]:
    """Join batch output and error file lines (any order) to ``items`` on ``custom_id``. An answer in the
    output file wins over an error line; items in neither get ``error=missing_reason``."""
    answered: dict[str, ScoredExample] = {}
    failed: dict[str, ScoredExample] = {}
    truths = {item.custom_id: item.truth for item in items}
    for blob in (output, errors):
        for raw in (blob or b"").splitlines():
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue  # a torn line cannot be attributed to an item
            custom_id = record.get("custom_id") if isinstance(record, dict) else None
            if custom_id not in truths or custom_id in answered:
                continue
            answer, prompt_tokens, completion_tokens, error = _parse_result_line(record)
            scored = ScoredExample(
                custom_id=custom_id,
                truth=truths[custom_id],
                answer=answer,
                latency_ms=None,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                error=error,
            )
            if error is None:
                answered[custom_id] = scored
            else:
                failed.setdefault(custom_id, scored)
    return [
        answered.get(item.custom_id)
        or failed.get(item.custom_id)
        or ScoredExample(custom_id=item.custom_id, truth=item.truth, answer=None, error=missing_reason)
        for item in items
    ]


def batch_snapshot(client: AzureOpenAIClient, batch_id: str, items: Sequence[TestItem]) -> BatchSnapshot:
    """Poll ``batch_id``. Once it is terminal (completed, failed, expired, cancelled), download its output
    and error files (both may exist, also after expiry or cancellation with partial results) and return a
    ScoredExample for every item (latency None: batch has no per-request latency)."""
    import openai

    try:
        batch = client.batches.retrieve(batch_id)
    except openai.OpenAIError as exc:
        raise AoaiError(f"could not read batch {batch_id}: {describe_openai_error(exc)}") from exc
    status = _status(batch)
    terminal = status in TERMINAL_BATCH_STATUSES
    counts = batch.request_counts
    request_counts: dict[str, int] = {}
    if counts is not None:
        request_counts = {k: int(v) for k, v in counts.model_dump().items() if v is not None}
    error = _batch_errors(batch)
    output_file_id = batch.output_file_id
    error_file_id = batch.error_file_id
    results = None
    answered = 0
    if terminal:
        output = read_file_bytes(client, output_file_id) if output_file_id else None
        errors = read_file_bytes(client, error_file_id) if error_file_id else None
        reason = f"no result in the batch output (batch {status}" + (f": {error})" if error else ")")
        results = join_batch_results(items, output, errors, missing_reason=reason)
        answered = sum(1 for r in results if r.answer is not None and r.error is None)
    return BatchSnapshot(
        id=str(batch.id),
        status=status,
        terminal=terminal,
        completed=status == "completed",
        results=results,
        error=error,
        request_counts=request_counts,
        output_file_id=output_file_id,
        error_file_id=error_file_id,
        answered=answered,
    )
