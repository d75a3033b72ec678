"""Real-time scoring: one chat completion at a time (``ask_chat``), and a test set scored with bounded
concurrency that stops at a deadline and resumes (``score_realtime``)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from shared.aoai.errors import describe_openai_error
from shared.aoai.scoring import DEFAULT_MAX_TOKENS, ScoringError, TestItem
from shared.evaluation.metrics import ScoredExample

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from shared.aoai.clients import AzureOpenAIClient


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
