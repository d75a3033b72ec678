"""What the two ways of scoring a test set share: the test items read from ``test.jsonl`` and the error
that stops an evaluation.

A deployment is scored in real time (``shared.aoai.realtime_scoring``: bounded concurrency, resumable by
deadline) or through the Batch API (``shared.aoai.batch_scoring``: base model only, fine-tuned models
cannot run in batch). Both produce ``shared.evaluation.metrics.ScoredExample`` per test item, joined by
``custom_id``. A request that fails after the SDK's retries becomes an example with ``answer=None`` and
``error`` set; it never aborts the evaluation. What does abort is a failure that says the whole evaluation
cannot run (wrong key, no such deployment): scoring every example as an error would turn a
misconfiguration into a bad score.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.aoai.errors import AoaiError

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
