"""The gate's rejection sentence names the model the candidate was judged against, never "the baseline"."""

import pytest

from shared.evaluation.gate import decide_promotion
from shared.evaluation.metrics import ScoredExample

LABELS = ["cat", "dog"]


def _pairs(only_candidate: int, only_baseline: int, both: int = 20):
    candidate, baseline = [], []
    for i in range(both + only_candidate + only_baseline):
        truth, wrong = LABELS[i % 2], LABELS[(i + 1) % 2]
        c_ok = i < both + only_candidate
        b_ok = i < both or i >= both + only_candidate
        candidate.append(ScoredExample(f"x{i}", truth, truth if c_ok else wrong))
        baseline.append(ScoredExample(f"x{i}", truth, truth if b_ok else wrong))
    return candidate, baseline


@pytest.mark.parametrize("role, name", [("incumbent", "only the incumbent"), ("base", "only the base model")])
def test_not_significant_rejection_names_the_incumbent_or_the_base_model(role, name):
    candidate, baseline = _pairs(only_candidate=5, only_baseline=2)
    decision = decide_promotion(
        candidate, baseline, baseline_role=role, labels=LABELS, margin=0.01, p_value_threshold=0.05
    )
    assert not decision.promoted and decision.reason.startswith("Rejected: p = ")
    assert f"(5 examples only the candidate got right, 2 {name})" in decision.reason
    assert "baseline" not in decision.reason
