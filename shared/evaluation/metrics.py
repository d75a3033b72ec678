"""Metrics of one model on one test set, from its raw answers.

``compute_metrics`` turns scored examples (truth, raw answer, latency, tokens) into the report schema's
``ModelMetrics``. Conventions (they match scikit-learn's, which the tests check):

- A failed request (``answer is None`` or ``error`` set) is wrong, is counted in ``errors``, and sits in
  the confusion matrix's ``OFF_LABEL`` column (it named no label); ``off_label`` counts only answers that
  came back and name no label.
- Precision, recall and F1 use 0 where the denominator is 0 (scikit-learn's ``zero_division=0``).
- Balanced accuracy is the mean recall over the labels present in the truth.
- Macro-F1 is the mean F1 over the labels that occur in the truth or in the answers, so a label missing
  from a small test set and never answered does not drag it down (with every label present, as in a
  normal test split, it is the mean over all labels).
- Latency percentiles use linear interpolation (numpy's default) over the requests that got an answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.evaluation.answers import label_matcher
from shared.reporting.schema import (
    OFF_LABEL,
    ClassMetrics,
    ConfusionMatrix,
    LatencySummary,
    ModelMetrics,
    TokenUsage,
)


@dataclass(frozen=True)
class ScoredExample:
    """One test example as one model answered it.

    ``answer`` is the raw text the model returned, None when the request failed (then ``error`` says
    why). ``latency_ms`` is the request's wall time, None when unknown (e.g. Batch API results).
    """

    custom_id: str
    truth: str
    answer: str | None
    latency_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    confidence: float | None = None  # the model's probability of its answer (logprobs), when known

    @property
    def failed(self) -> bool:
        """True when the request got no answer at all."""
        return self.answer is None or self.error is not None


def predicted_labels(labels: Sequence[str], examples: Sequence[ScoredExample]) -> list[str | None]:
    """The label each example's answer names (None: off-label or failed), in order."""
    matcher = label_matcher(tuple(labels))
    return [None if ex.failed else matcher.match(ex.answer) for ex in examples]


def _check_inputs(labels: Sequence[str], examples: Sequence[ScoredExample]) -> None:
    if not labels:
        raise ValueError("compute_metrics needs at least one label")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if list(labels).count(label) > 1})
        raise ValueError(f"duplicate labels: {duplicates}")
    if OFF_LABEL in labels:
        raise ValueError(f"{OFF_LABEL!r} is reserved for answers that name no label")
    known = set(labels)
    seen: set[str] = set()
    for ex in examples:
        if ex.truth not in known:
            raise ValueError(f"example {ex.custom_id!r}: truth {ex.truth!r} is not one of the {len(labels)} labels")
        if ex.custom_id in seen:
            raise ValueError(f"duplicate custom_id {ex.custom_id!r}")
        seen.add(ex.custom_id)


def compute_metrics(
    labels: Sequence[str],
    examples: Sequence[ScoredExample],
    *,
    price_input_per_1m: float = 0.0,
    price_output_per_1m: float = 0.0,
    discount: float = 0.0,
) -> ModelMetrics:
    """Accuracy, balanced accuracy, macro-F1, per-class metrics, confusion matrix, off-label answers,
    latency, tokens and cost of one model's answers.

    ``labels`` fixes the class order (confusion rows; columns are ``labels + [OFF_LABEL]``). Cost is
    ``(prompt x input price + completion x output price) / 1e6 x (1 - discount)`` (discount 0.5: Batch).
    Raises ``ValueError`` when a truth is not a label or a custom_id repeats. No examples gives zeros.
    """
    import numpy as np  # lazy: the function app's cold start

    _check_inputs(labels, examples)
    n_labels = len(labels)
    column = {label: i for i, label in enumerate(labels)}
    off_column = n_labels
    predictions = predicted_labels(labels, examples)

    truth_idx = np.fromiter((column[ex.truth] for ex in examples), dtype=np.int64, count=len(examples))
    pred_idx = np.fromiter(
        (off_column if p is None else column[p] for p in predictions), dtype=np.int64, count=len(examples)
    )
    confusion = np.zeros((n_labels, n_labels + 1), dtype=np.int64)
    np.add.at(confusion, (truth_idx, pred_idx), 1)

    n = len(examples)
    true_positive = np.diag(confusion[:, :n_labels])
    support = confusion.sum(axis=1)
    predicted = confusion[:, :n_labels].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, true_positive / np.maximum(support, 1), 0.0)
        denominator = precision + recall
        f1 = np.where(denominator > 0, 2 * precision * recall / np.where(denominator > 0, denominator, 1), 0.0)

    correct = int(true_positive.sum())
    present = support > 0
    occurring = present | (predicted > 0)
    errors = sum(1 for ex in examples if ex.failed)
    off_label = sum(1 for ex, p in zip(examples, predictions, strict=True) if p is None and not ex.failed)

    latencies = [float(ex.latency_ms) for ex in examples if ex.latency_ms is not None and not ex.failed]
    if latencies:
        p50, p95, p99 = (float(v) for v in np.percentile(np.asarray(latencies), [50, 95, 99]))
        latency = LatencySummary(p50=p50, p95=p95, p99=p99, mean=float(np.mean(latencies)), samples=latencies)
    else:
        latency = LatencySummary()

    prompt_tokens = sum(int(ex.prompt_tokens) for ex in examples)
    completion_tokens = sum(int(ex.completion_tokens) for ex in examples)
    cost = (prompt_tokens * price_input_per_1m + completion_tokens * price_output_per_1m) / 1e6 * (1 - discount)

    return ModelMetrics(
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        macro_f1=float(f1[occurring].mean()) if occurring.any() else 0.0,
        off_label=off_label,
        off_label_rate=off_label / n if n else 0.0,
        errors=errors,
        per_class={
            label: ClassMetrics(
                precision=float(precision[i]), recall=float(recall[i]), f1=float(f1[i]), support=int(support[i])
            )
            for i, label in enumerate(labels)
        },
        confusion=ConfusionMatrix(
            labels=list(labels), columns=[*labels, OFF_LABEL], matrix=confusion.tolist()
        ),
        latency_ms=latency,
        tokens=TokenUsage(prompt=prompt_tokens, completion=completion_tokens, total=prompt_tokens + completion_tokens),
        cost_usd=cost,
    )
