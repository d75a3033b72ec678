"""The promotion gate: is the candidate better than the model it would replace, by enough, and not by chance?

The two models answered the same test examples, so the comparison is paired: McNemar's exact test looks
only at the discordant pairs (one model right, the other wrong). Under "no difference" each discordant pair
is a fair coin, so the two-sided p-value is a binomial tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Literal

from shared.evaluation.answers import label_matcher
from shared.evaluation.metrics import ScoredExample
from shared.reporting.schema import Decision

# Accuracy deltas are ratios of counts; this absorbs float noise when a delta equals the margin exactly.
_EPSILON = 1e-9


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs.

    ``min(1, 2 * P[X <= min(b, c)])`` with ``X ~ Binomial(b + c, 1/2)``, computed with exact integers
    (equal to ``scipy.stats.binomtest(b, b + c, 0.5).pvalue``). No discordant pair gives 1.0.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    if 2 * k == n:
        return 1.0
    tail = 0
    term = 1  # comb(n, 0), then comb(n, i) by the recurrence
    for i in range(k + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    return float(min(Fraction(1), Fraction(tail, 2 ** (n - 1))))


def _format_p(p: float, threshold: float) -> str:
    if p >= 0.001:
        text = f"{p:.2g}"
        if float(text) == threshold or (float(text) < threshold) != (p < threshold):
            text = f"{p:.4g}"  # rounding must not make p look equal to, or on the other side of, the threshold
        return text
    return f"{p:.1g}"


def _half_up(value: float) -> float:
    # 377/400 = 94.25% prints as 94.3%, as in the reports.
    return value + (1e-9 if value >= 0 else -1e-9)


def _percent(part: int, whole: int) -> str:
    return f"{_half_up(part / whole * 100):.1f}%"


def _points(delta: float) -> str:
    return f"{_half_up(delta * 100):+.1f} points"


def _margin_text(margin: float) -> str:
    value = margin * 100
    return f"{value:.1f} point" if abs(value - 1) < 1e-9 else f"{value:.1f} points"


def _score_line(role_name: str, cand: int, base: int, n: int) -> str:
    return (
        f"the candidate answered {cand}/{n} correctly ({_percent(cand, n)}) against {role_name} "
        f"{base}/{n} ({_percent(base, n)})"
    )


def decide_promotion(
    candidate: Sequence[ScoredExample],
    baseline: Sequence[ScoredExample],
    *,
    baseline_role: Literal["base", "incumbent"],
    labels: Sequence[str],
    margin: float,
    p_value_threshold: float,
) -> Decision:
    """Promote the candidate only if, on the examples both models were asked (paired by ``custom_id``),
    its accuracy beats the baseline's by at least ``margin`` (a fraction: 0.01 = 1 point) and McNemar's
    exact p-value is below ``p_value_threshold``.

    A failed request counts as a wrong answer for the model whose request failed. Examples present in
    only one list are left out (the decision says how many were paired). ``reason`` is one or two plain
    sentences for a person. Raises ``ValueError`` if the two lists disagree on an example's truth.
    """
    role_name = "the base model's" if baseline_role == "base" else "the incumbent's"
    baseline_by_id = {ex.custom_id: ex for ex in baseline}
    pairs = [(ex, baseline_by_id[ex.custom_id]) for ex in candidate if ex.custom_id in baseline_by_id]
    if not pairs:
        who = "base model" if baseline_role == "base" else "incumbent"
        return Decision(
            promoted=False,
            reason=(
                f"Rejected: no test example was scored by both the candidate ({len(candidate)} scored) "
                f"and the {who} ({len(baseline)} scored), so they cannot be compared."
            ),
            paired_examples=0,
            baseline_role=baseline_role,
            margin=margin,
            p_value_threshold=p_value_threshold,
        )
    for cand, base in pairs:
        if cand.truth != base.truth:
            raise ValueError(
                f"example {cand.custom_id!r} has truth {cand.truth!r} for the candidate "
                f"but {base.truth!r} for the {baseline_role}"
            )

    matcher = label_matcher(tuple(labels))

    def right(ex: ScoredExample) -> bool:
        return not ex.failed and matcher.match(ex.answer) == ex.truth

    n = len(pairs)
    cand_right = [right(c) for c, _ in pairs]
    base_right = [right(b) for _, b in pairs]
    cand_correct, base_correct = sum(cand_right), sum(base_right)
    b = sum(1 for cr, br in zip(cand_right, base_right, strict=True) if cr and not br)
    c = sum(1 for cr, br in zip(cand_right, base_right, strict=True) if br and not cr)
    delta = (cand_correct - base_correct) / n
    p = mcnemar_exact_p(b, c)
    p_text = _format_p(p, p_value_threshold)
    threshold_text = f"{p_value_threshold:g}"
    scores = _score_line(role_name, cand_correct, base_correct, n)
    unpaired = (len(candidate) - n) + (len(baseline) - n)
    unpaired_note = f" {unpaired} example(s) scored by only one model were left out." if unpaired else ""

    if delta <= 0:
        promoted = False
        verdict = "is no better than" if delta == 0 else "is worse than"
        who = "the base model" if baseline_role == "base" else "the incumbent"
        reason = f"Rejected: the candidate {verdict} {who}: {scores}, {_points(delta)}."
    elif delta + _EPSILON < margin:
        promoted = False
        reason = (
            f"Rejected: {_points(delta)} is below the required margin of {_margin_text(margin)}. "
            f"{scores[0].upper()}{scores[1:]}."
        )
    elif not p < p_value_threshold:
        promoted = False
        reason = (
            f"Rejected: p = {p_text} is not below {threshold_text}: the difference may be chance "
            f"({b} examples only the candidate got right, "
            f"{c} only the {'base model' if baseline_role == 'base' else 'incumbent'}). "
            f"{scores[0].upper()}{scores[1:]}, {_points(delta)}."
        )
    else:
        promoted = True
        reason = f"Promoted: {scores}, {_points(delta)}, McNemar exact p = {p_text} < {threshold_text}."
    return Decision(
        promoted=promoted,
        reason=reason + unpaired_note,
        accuracy_delta=delta,
        p_value=p,
        candidate_only_correct=b,
        baseline_only_correct=c,
        paired_examples=n,
        baseline_role=baseline_role,
        margin=margin,
        p_value_threshold=p_value_threshold,
    )
