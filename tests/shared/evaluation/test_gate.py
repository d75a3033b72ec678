"""The exact McNemar test against scipy, and the promotion decision on constructed paired answers (its
rejection sentence names the model the candidate was judged against, never "the baseline")."""

import random

import pytest
from scipy.stats import binomtest

from shared.evaluation.gate import decide_promotion, mcnemar_exact_p
from shared.evaluation.metrics import ScoredExample

LABELS = ["cat", "dog", "bird"]
TWO_LABELS = ["cat", "dog"]


@pytest.mark.parametrize("b", range(0, 31, 3))
@pytest.mark.parametrize("c", [0, 1, 2, 5, 13, 30])
def test_mcnemar_matches_scipy_binomtest(b, c):
    expected = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    assert mcnemar_exact_p(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_matches_scipy_on_large_and_random_counts():
    rng = random.Random(7)
    for _ in range(30):
        b, c = rng.randint(0, 3000), rng.randint(0, 3000)
        assert mcnemar_exact_p(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9, abs=1e-300)
    assert mcnemar_exact_p(57, 2) == pytest.approx(binomtest(57, 59, 0.5).pvalue, rel=1e-12)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError, match="must be >= 0"):
        mcnemar_exact_p(-1, 3)


def _paired(n: int, both_right: int, only_candidate: int, only_baseline: int, *, prefix: str = "x"):
    """Candidate and baseline answers with exactly the given discordant pairs (the rest both wrong)."""
    candidate, baseline = [], []
    for i in range(n):
        truth = LABELS[i % 3]
        wrong = LABELS[(i + 1) % 3]
        if i < both_right:
            c_ok, b_ok = True, True
        elif i < both_right + only_candidate:
            c_ok, b_ok = True, False
        elif i < both_right + only_candidate + only_baseline:
            c_ok, b_ok = False, True
        else:
            c_ok, b_ok = False, False
        candidate.append(ScoredExample(f"{prefix}{i}", truth, truth if c_ok else wrong))
        baseline.append(ScoredExample(f"{prefix}{i}", truth, f"Label: {truth}" if b_ok else "no idea"))
    return candidate, baseline


def _decide(candidate, baseline, role="base", margin=0.01, p=0.05):
    return decide_promotion(candidate, baseline, baseline_role=role, labels=LABELS, margin=margin, p_value_threshold=p)


def test_clear_win_is_promoted_with_a_full_sentence():
    candidate, baseline = _paired(180, 110, 61, 2)  # 171/180 vs 112/180
    decision = _decide(candidate, baseline)
    assert decision.promoted
    assert decision.paired_examples == 180
    assert (decision.candidate_only_correct, decision.baseline_only_correct) == (61, 2)
    assert decision.accuracy_delta == pytest.approx((171 - 112) / 180)
    assert decision.p_value == pytest.approx(binomtest(61, 63, 0.5).pvalue)
    assert decision.reason.startswith(
        "Promoted: the candidate answered 171/180 correctly (95.0%) against the base model's 112/180 (62.2%), "
        "+32.8 points, McNemar exact p = "
    )
    assert decision.reason.endswith("< 0.05.")


def test_small_gain_below_margin_is_rejected():
    candidate, baseline = _paired(1000, 800, 16, 10)  # +0.6 points
    decision = _decide(candidate, baseline, role="incumbent")
    assert not decision.promoted
    assert decision.reason.startswith("Rejected: +0.6 points is below the required margin of 1.0 point.")
    assert "the incumbent's 810/1000" in decision.reason


def test_gain_that_may_be_chance_is_rejected():
    candidate, baseline = _paired(100, 50, 9, 5)  # +4 points, p = 0.42
    decision = _decide(candidate, baseline, role="incumbent")
    assert not decision.promoted
    assert decision.p_value == pytest.approx(binomtest(9, 14, 0.5).pvalue)
    assert decision.reason.startswith("Rejected: p = 0.42 is not below 0.05: the difference may be chance")


def test_worse_or_equal_candidate_is_rejected_even_with_zero_margin():
    worse_c, worse_b = _paired(200, 100, 5, 60)
    decision = _decide(worse_c, worse_b, margin=0.0, p=1.0)
    assert not decision.promoted and "is worse than the base model" in decision.reason
    same_c, same_b = _paired(200, 100, 10, 10)
    decision = _decide(same_c, same_b, margin=0.0, p=1.0)
    assert not decision.promoted and "is no better than the base model" in decision.reason


def test_delta_exactly_at_the_margin_passes():
    candidate, baseline = _paired(100, 50, 7, 0)  # +7 points exactly, p = 0.016
    decision = _decide(candidate, baseline, margin=0.07)
    assert decision.promoted, decision.reason
    assert not _decide(candidate, baseline, margin=0.0701).promoted


def test_only_examples_both_scored_are_paired_and_failures_count_as_wrong():
    candidate, baseline = _paired(100, 60, 30, 0)
    candidate = candidate[:-10] + [ScoredExample("extra-1", "cat", "cat")]
    baseline[0] = ScoredExample(baseline[0].custom_id, baseline[0].truth, None, error="timeout")
    decision = _decide(candidate, baseline)
    assert decision.paired_examples == 90
    assert decision.candidate_only_correct == 31  # 30 + the baseline's failed request
    assert "11 example(s) scored by only one model were left out" in decision.reason


def test_no_paired_examples_is_rejected_with_a_reason():
    candidate, _ = _paired(10, 10, 0, 0, prefix="a")
    _, baseline = _paired(10, 10, 0, 0, prefix="b")
    decision = _decide(candidate, baseline, role="incumbent")
    assert not decision.promoted and decision.paired_examples == 0
    assert "no test example was scored by both the candidate (10 scored) and the incumbent (10 scored)" in decision.reason
    decision = _decide([], [])
    assert not decision.promoted


def test_disagreeing_truths_are_an_error():
    candidate = [ScoredExample("1", "cat", "cat")]
    baseline = [ScoredExample("1", "dog", "dog")]
    with pytest.raises(ValueError, match="truth 'cat' for the candidate but 'dog' for the base"):
        _decide(candidate, baseline)


# The gate's rejection sentence names the model the candidate was judged against, never "the baseline".
def _pairs(only_candidate: int, only_baseline: int, both: int = 20):
    candidate, baseline = [], []
    for i in range(both + only_candidate + only_baseline):
        truth, wrong = TWO_LABELS[i % 2], TWO_LABELS[(i + 1) % 2]
        c_ok = i < both + only_candidate
        b_ok = i < both or i >= both + only_candidate
        candidate.append(ScoredExample(f"x{i}", truth, truth if c_ok else wrong))
        baseline.append(ScoredExample(f"x{i}", truth, truth if b_ok else wrong))
    return candidate, baseline


@pytest.mark.parametrize("role, name", [("incumbent", "only the incumbent"), ("base", "only the base model")])
def test_not_significant_rejection_names_the_incumbent_or_the_base_model(role, name):
    candidate, baseline = _pairs(only_candidate=5, only_baseline=2)
    decision = decide_promotion(
        candidate, baseline, baseline_role=role, labels=TWO_LABELS, margin=0.01, p_value_threshold=0.05
    )
    assert not decision.promoted and decision.reason.startswith("Rejected: p = ")
    assert f"(5 examples only the candidate got right, 2 {name})" in decision.reason
    assert "baseline" not in decision.reason
