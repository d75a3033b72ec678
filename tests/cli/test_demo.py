"""``visiontune demo``: its summary lines and its table say what the reports say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli.demo import _row, production_line, scheduled_line
from shared.evaluation.gate import decide_promotion
from shared.evaluation.metrics import ScoredExample
from shared.pipeline.models import Run, RunState
from shared.reporting.formatting import p_value, pct


def test_demo_summary_lines_name_the_test_set_of_each_accuracy(tmp_path):
    fixture = Path(__file__).parents[1] / "shared" / "reporting" / "fixtures" / "evaluation_regression.json"
    evaluation = json.loads(fixture.read_text())
    (tmp_path / "evaluations").mkdir()
    shutil.copy(fixture, tmp_path / "evaluations" / "20260101T000000Z.json")
    line = scheduled_line(tmp_path)
    metrics = evaluation["production"]["metrics"]
    assert f"answered {metrics['correct']}/{metrics['n']} of version {evaluation['test_set_version']}'s test set" in line
    assert ("a REGRESSION" if evaluation["regression"] else "no regression") in line
    assert line.endswith("20260101T000000Z.html")
    assert scheduled_line(tmp_path / "nowhere") is None

    production = {"model": "m-ft", "deployment": "d1", "version": "abc", "accuracy": 0.9425}
    assert production_line(production) == "production: m-ft as d1 (version abc): 94.3% when promoted, on version abc's test set"


def test_demo_table_formats_numbers_as_the_reports_do():
    labels = ["cat", "dog"]
    candidate = [ScoredExample(f"x{i}", labels[i % 2], labels[i % 2]) for i in range(96)]
    baseline = [ScoredExample(f"x{i}", labels[i % 2], labels[i % 2] if i < 73 else "owl") for i in range(96)]
    decision = decide_promotion(candidate, baseline, baseline_role="base", labels=labels, margin=0.01,
                                p_value_threshold=0.05)
    run = Run(dataset="d", version="v", state=RunState.PROMOTED, scores={"candidate": 1.0, "base": 73 / 96})
    run.decision = decision
    row = _row("v1", 96, run, 12.0)
    # the same strings the report's tiles and the gate's sentence show
    assert row["p_value"] == p_value(decision.p_value) and f"p = {row['p_value']}" in decision.reason
    assert row["baseline"] == pct(73 / 96) == "76.0%" and f"({row['baseline']})" in decision.reason
