"""What a reader meets first: the verdict's wording, navigation back to the index, a training caption
that reads true, and a production history that does not draw a trend across two test sets."""

import re
from pathlib import Path

from shared.evaluation.gate import decide_promotion
from shared.evaluation.metrics import ScoredExample
from shared.reporting.html import render_index_html, render_run_html
from shared.reporting.markdown import render_run_markdown
from shared.reporting.schema import DatasetIndex, ResultsRow, RunReport
from shared.reporting.summary import training_final_sentence, verdict_sentence

FIXTURES = Path(__file__).parent / "fixtures"


def _run(name: str) -> RunReport:
    return RunReport.model_validate_json((FIXTURES / name).read_text(encoding="utf-8"))


def _not_significant_reason() -> str:
    labels = ["cat", "dog"]
    candidate, baseline = [], []
    for i in range(30):
        truth, wrong = labels[i % 2], labels[(i + 1) % 2]
        candidate.append(ScoredExample(f"x{i}", truth, truth if i < 25 else wrong))
        baseline.append(ScoredExample(f"x{i}", truth, truth if i < 22 else wrong))
    return decide_promotion(
        candidate, baseline, baseline_role="incumbent", labels=labels, margin=0.01, p_value_threshold=0.05
    ).reason


def test_verdict_keeps_a_p_value_lower_case_and_capitalises_words():
    report = _run("run_rejected.json")
    reason = _not_significant_reason()
    assert reason.startswith("Rejected: p = ")
    rejected = report.model_copy(update={"decision": report.decision.model_copy(update={"reason": reason})})
    assert verdict_sentence(rejected).startswith("p = ")
    assert re.search(r'id="decision-reason">p = ', render_run_html(rejected))
    # an ordinary sentence still starts with a capital
    promoted = _run("run_2_classes.json")
    assert verdict_sentence(promoted).startswith("The candidate answered")


def test_every_run_report_links_back_to_the_dataset_index():
    for name in ("run_2_classes.json", "run_rejected.json", "run_failed.json", "run_over_budget.json"):
        html = render_run_html(_run(name))
        assert '<a href="../index.html" id="index-link">All versions and history</a>' in html, name


def test_training_caption_prefers_the_full_validation_and_never_prints_minus_zero():
    rows = [ResultsRow(step=s, train_loss=2.0 / s, train_mean_token_accuracy=0.5, valid_loss=9.0,
                       validation_mean_token_accuracy=0.5) for s in range(1, 50)]
    rows.append(ResultsRow(step=50, train_loss=-0.0, train_mean_token_accuracy=1.0, valid_loss=13.8,
                           validation_mean_token_accuracy=0.5, full_valid_loss=1.30507,
                           full_valid_mean_token_accuracy=0.91538))
    text = training_final_sentence(rows)
    assert text == ("Final step 50: training loss 0.000, training token accuracy 100.0%; "
                    "full validation set (step 50): loss 1.305, token accuracy 91.5%.")
    # without a full validation, the last batch is shown and called noisy
    text = training_final_sentence(rows[:-1])
    assert "last validation batch: loss 9.000, token accuracy 50.0% (one small batch, so noisy)" in text
    assert training_final_sentence([]) is None

    report = _run("run_10_classes.json")
    sentence = training_final_sentence(report.training.results)
    assert sentence and sentence in render_run_markdown(report)
    assert f'<span id="training-final">{sentence}</span>' in render_run_html(report)


def test_index_breaks_the_production_line_where_the_test_set_changes():
    index = DatasetIndex.model_validate_json((FIXTURES / "index.json").read_text(encoding="utf-8"))
    assert len(index.history) >= 2
    history = [
        point.model_copy(update={"test_set_version": "aaaa1111" if i < len(index.history) - 1 else "bbbb2222"})
        for i, point in enumerate(sorted(index.history, key=lambda p: p.at))
    ]
    html = render_index_html(index.model_copy(update={"history": history}))
    assert "test set bbbb2222" in html  # the marker on the chart
    assert "<th>Test set</th>" in html and "<td>aaaa1111</td>" in html
    same = [p.model_copy(update={"test_set_version": "aaaa1111"}) for p in history]
    assert "test set aaaa1111" not in render_index_html(index.model_copy(update={"history": same}))
