"""Score a test set against a deployment: real-time calls (bounded concurrency, resumable by deadline)
or the Batch API (base model only: fine-tuned models cannot run in batch).

Both produce ``shared.evaluation.metrics.ScoredExample`` per test item, joined by ``custom_id``. A request
that fails after the SDK's retries becomes an example with ``answer=None`` and ``error`` set; it never
aborts the evaluation. What does abort is a failure that says the whole evaluation cannot run (wrong key,
no such deployment): scoring every example as an error would turn a misconfiguration into a bad score.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from shared.aoai.errors import AoaiError, describe_error_body, describe_openai_error
from shared.aoai.files import read_file_bytes
from shared.evaluation.metrics import ScoredExample

if TYPE_CHECKING:
    from openai.types import Batch
    from openai.types.chat import ChatCompletionMessageParam

    from shared.aoai.clients import AzureOpenAIClient

TERMINAL_BATCH_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 200 * 1024 * 1024
BATCH_ENDPOINT = "/chat/completions"
BATCH_COMPLETION_WINDOW: Final = "24h"
DEFAULT_MAX_TOKENS = 20


class ScoringError(AoaiError):
    """The evaluation cannot run at all (authentication, permission, missing deployment): retry later or
    fix the configuration; no example was recorded as wrong because of it."""

    transient = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TestItem:
    """One test example: ``messages`` are the example's messages without the assistant answer,
    ``truth`` the answer (the label)."""

    __test__ = False  # not a pytest test class, despite the name

    custom_id: str
    truth: str
    messages: list[dict[str, Any]]


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


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ValueError("assistant content is neither text nor a list of text parts")


def read_test_items(lines: Iterable[bytes | str]) -> list[TestItem]:
    """Test items from the lines of ``test.jsonl`` (chat fine-tuning format). The last assistant message
    is the truth; the messages before it are the prompt. ``custom_id`` is ``t-NNNNNN`` by position among
    the non-blank lines, so it is stable for a given file. Raises ``ValueError`` naming the line."""
    items: list[TestItem] = []
    number = 0
    for line_number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw.lstrip("\ufeff")
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            messages = record["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("'messages' must be a non-empty list")
            answer_at = max(
                (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
                default=None,
            )
            if answer_at is None:
                raise ValueError("no assistant message (the expected answer)")
            truth = _text_of(messages[answer_at].get("content")).strip()
            if not truth:
                raise ValueError("the assistant answer is empty")
            prompt = [m for m in messages[:answer_at]]
            if not prompt:
                raise ValueError("no messages before the assistant answer")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"test.jsonl line {line_number}: {exc}") from exc
        items.append(TestItem(custom_id=f"t-{number:06d}", truth=truth, messages=prompt))
        number += 1
    return items


def _is_fatal(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError))


@dataclass(frozen=True)
class ChatAnswer:
    """One chat completion as a classifier sees it. ``logprobs`` is the answer's tokens as
    ``(token, logprob)`` pairs when the request asked for them and the deployment returned them."""

    answer: str | None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    logprobs: tuple[tuple[str, float], ...] | None = None

    @property
    def answer_probability(self) -> float | None:
        """exp(sum of the answer's token logprobs): the probability of the whole answer (None without
        logprobs)."""
        if not self.logprobs:
            return None
        import math

        return math.exp(sum(logprob for _, logprob in self.logprobs))


def ask_chat(
    client: AzureOpenAIClient,
    deployment: str,
    messages: list[dict[str, Any]],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    logprobs: bool = False,
) -> ChatAnswer:
    """One chat completion at temperature 0 (the SDK retries 429/5xx). ``logprobs=True`` asks for the
    answer tokens' log probabilities (``logprobs`` is in the 2024-10-21 inference spec's
    createChatCompletionRequest; ``top_logprobs`` is not needed for the answer's own probability).
    Raises the SDK's ``openai.OpenAIError`` when the request fails."""
    extra: dict[str, Any] = {"logprobs": True} if logprobs else {}
    raw = client.chat.completions.with_raw_response.create(
        model=deployment,
        # JSON messages (test.jsonl lines, shared.conversion.examples): shared.validation checks their shape.
        messages=cast("list[ChatCompletionMessageParam]", messages),
        temperature=0,
        max_tokens=max_tokens,
        **extra,
    )
    completion = raw.parse()
    # The final attempt's own round trip: waits between retries (429 storms) are not latency.
    latency_ms = raw.elapsed.total_seconds() * 1000.0
    usage = completion.usage
    choice = completion.choices[0] if completion.choices else None
    answer = choice.message.content if choice is not None and choice.message is not None else None
    tokens = None
    content = choice.logprobs.content if choice is not None and choice.logprobs is not None else None
    # The spec types logprob as a number; a token without one makes the confidence unknown, never an error.
    if content and all(t.logprob is not None for t in content):
        tokens = tuple((str(t.token), float(t.logprob)) for t in content)
    return ChatAnswer(
        answer=answer,
        latency_ms=latency_ms,
        prompt_tokens=usage.prompt_tokens or 0 if usage is not None else 0,
        completion_tokens=usage.completion_tokens or 0 if usage is not None else 0,
        finish_reason=choice.finish_reason if choice is not None else "no choices",
        logprobs=tokens,
    )


def _score_one(client: AzureOpenAIClient, deployment: str, item: TestItem, max_tokens: int) -> ScoredExample:
    import openai

    try:
        # logprobs: the answer's probability orders the report's review queue of suspect labels
        reply = ask_chat(client, deployment, item.messages, max_tokens=max_tokens, logprobs=True)
    except openai.OpenAIError as exc:
        if _is_fatal(exc):
            raise
        return ScoredExample(
            custom_id=item.custom_id, truth=item.truth, answer=None, error=describe_openai_error(exc)
        )
    error = None
    if reply.answer is None:
        error = f"no answer (finish_reason: {reply.finish_reason})"
    return ScoredExample(
        custom_id=item.custom_id,
        truth=item.truth,
        answer=reply.answer,
        latency_ms=reply.latency_ms,
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        error=error,
        confidence=reply.answer_probability,
    )


def score_realtime(
    client: AzureOpenAIClient,
    deployment: str,
    items: Sequence[TestItem],
    *,
    concurrency: int,
    deadline: float | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> list[ScoredExample]:
    """Ask ``deployment`` every item (temperature 0) with at most ``concurrency`` requests in flight.

    Returns the scored items in input order. Items are started in order and every started item finishes,
    so the result always covers a prefix of ``items``: when ``deadline`` (a ``time.monotonic()`` value)
    passes, no new request starts and the caller resumes later with ``items[len(result):]``.
    The SDK retries 429/5xx honouring ``Retry-After``; a request still failing after that is returned
    with ``answer=None`` and ``error``. Raises ``ScoringError`` (after in-flight requests finish) on
    401/403/404: the deployment cannot be scored at all right now."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if not items:
        return []
    results: dict[int, ScoredExample] = {}
    fatal: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    next_index = iter(range(len(items)))

    def worker() -> None:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            try:
                scored = _score_one(client, deployment, items[index], max_tokens)
            except Exception as exc:  # noqa: BLE001 - fatal for the whole evaluation, raised below
                with lock:
                    fatal.append(exc)
                stop.set()
                return
            with lock:
                results[index] = scored

    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="score") as pool:
        for future in [pool.submit(worker) for _ in range(min(concurrency, len(items)))]:
            future.result()
    if fatal:
        exc = fatal[0]
        status = getattr(exc, "status_code", None)
        message = describe_openai_error(exc)
        raise ScoringError(f"cannot score deployment {deployment}: {message}", status=status) from exc
    return [results[i] for i in sorted(results)]


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
