"""compute_metrics against scikit-learn on random answers (including off-label and failed requests)."""

import random

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from shared.evaluation.metrics import ScoredExample, compute_metrics
from shared.reporting.schema import OFF_LABEL

pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


def _random_examples(rng: random.Random, labels: list[str], n: int, *, missing_label: str | None = None):
    truths = [label for label in labels if label != missing_label]
    examples = []
    for i in range(n):
        truth = rng.choice(truths)
        roll = rng.random()
        error = None
        if roll < 0.55:
            answer = rng.choice([truth, f"{truth}.", f"Label: {truth}"])
        elif roll < 0.85:
            answer = rng.choice(labels)
        elif roll < 0.95:
            answer = rng.choice(["no idea", "cat or dog", ""])
        else:
            answer, error = None, "500 Internal Server Error"
        latency = None if error else rng.lognormvariate(7.3, 0.3)
        examples.append(ScoredExample(f"id-{i}", truth, answer, latency, rng.randint(90, 400), rng.randint(1, 9), error))
    return examples


def _sklearn_view(labels, examples):
    """y_true / y_pred as sklearn sees them: an off-label or failed answer is the OFF_LABEL class."""
    normalise = {label.lower(): label for label in labels}
    y_pred = []
    for ex in examples:
        text = (ex.answer or "").strip().removeprefix("Label: ").rstrip(".").lower()
        y_pred.append(OFF_LABEL if ex.error or ex.answer is None else normalise.get(text, OFF_LABEL))
    return [ex.truth for ex in examples], y_pred


@pytest.mark.parametrize(("n_labels", "n", "seed"), [(2, 50, 1), (10, 400, 2), (120, 2000, 3), (7, 30, 4)])
def test_metrics_match_sklearn(n_labels, n, seed):
    rng = random.Random(seed)
    labels = [f"class {i}" for i in range(n_labels)]
    missing = labels[-1] if n_labels > 5 else None  # a label absent from the truth
    examples = _random_examples(rng, labels, n, missing_label=missing)
    metrics = compute_metrics(labels, examples, price_input_per_1m=2.5, price_output_per_1m=10.0, discount=0.5)
    y_true, y_pred = _sklearn_view(labels, examples)

    assert metrics.n == n
    assert metrics.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert metrics.correct == sum(t == p for t, p in zip(y_true, y_pred, strict=True))
    assert metrics.balanced_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    occurring = sorted((set(y_true) | set(y_pred)) - {OFF_LABEL})
    assert metrics.macro_f1 == pytest.approx(f1_score(y_true, y_pred, labels=occurring, average="macro", zero_division=0))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for i, label in enumerate(labels):
        got = metrics.per_class[label]
        assert (got.precision, got.recall, got.f1, got.support) == pytest.approx(
            (precision[i], recall[i], f1[i], support[i])
        ), label
    expected_matrix = confusion_matrix(y_true, y_pred, labels=[*labels, OFF_LABEL])[:n_labels]
    assert metrics.confusion.columns == [*labels, OFF_LABEL]
    assert np.array_equal(np.asarray(metrics.confusion.matrix), expected_matrix)

    failed = [ex for ex in examples if ex.error]
    assert metrics.errors == len(failed) > 0
    assert metrics.off_label == sum(p == OFF_LABEL for p in y_pred) - len(failed)
    assert metrics.off_label_rate == pytest.approx(metrics.off_label / n)

    latencies = [ex.latency_ms for ex in examples if ex.latency_ms is not None]
    assert metrics.latency_ms.samples == latencies
    assert metrics.latency_ms.p50 == pytest.approx(np.percentile(latencies, 50))
    assert metrics.latency_ms.p95 == pytest.approx(np.percentile(latencies, 95))
    assert metrics.latency_ms.p99 == pytest.approx(np.percentile(latencies, 99))
    assert metrics.latency_ms.mean == pytest.approx(np.mean(latencies))

    prompt = sum(ex.prompt_tokens for ex in examples)
    completion = sum(ex.completion_tokens for ex in examples)
    assert (metrics.tokens.prompt, metrics.tokens.completion, metrics.tokens.total) == (prompt, completion, prompt + completion)
    assert metrics.cost_usd == pytest.approx((prompt * 2.5 + completion * 10.0) / 1e6 * 0.5)


def test_no_examples_gives_zeros_not_an_error():
    metrics = compute_metrics(["a", "b"], [])
    assert (metrics.n, metrics.accuracy, metrics.macro_f1, metrics.latency_ms.p50) == (0, 0.0, 0.0, None)
    assert metrics.confusion.matrix == [[0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    ("labels", "examples", "message"),
    [
        (["a", "b"], [ScoredExample("1", "c", "a")], "truth 'c' is not one of the 2 labels"),
        (["a", "b"], [ScoredExample("1", "a", "a"), ScoredExample("1", "b", "b")], "duplicate custom_id '1'"),
        (["a", "a"], [], "duplicate labels"),
        ([], [], "at least one label"),
        (["a", OFF_LABEL], [], "reserved"),
    ],
)
def test_bad_input_is_named(labels, examples, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        compute_metrics(labels, examples)
