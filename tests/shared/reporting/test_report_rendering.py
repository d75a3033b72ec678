"""Render every fixture report to JSON, Markdown and HTML; check content, safety and self-containment."""

import functools
import importlib.util
import json
import re
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest

from shared.layout import evaluation_stem
from shared.reporting.html import render_evaluation_html, render_index_html, render_run_html
from shared.reporting.markdown import render_run_markdown
from shared.reporting.publish import (
    content_type,
    render_evaluation_files,
    render_index_files,
    render_report_files,
)
from shared.reporting.schema import OFF_LABEL, DatasetIndex, EvaluationReport, RunReport

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
RUN_FIXTURES = sorted(p.name for p in FIXTURES.glob("run_*.json"))
REPO = HERE.parents[2]

# Anything that would make a browser fetch something: absolute or protocol-relative URLs, CSS imports/urls.
EXTERNAL = [
    re.compile(r"https?://", re.I),
    re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?://|(?!data:)[a-z][a-z0-9+.-]*:)""", re.I),
    re.compile(r"@import", re.I),
    re.compile(r"""url\(\s*['"]?(?!#|data:)""", re.I),
    re.compile(r"<link\b", re.I),
    re.compile(r"<script\b[^>]*\bsrc", re.I),
    re.compile(r"<iframe\b", re.I),
]


def load_run(name: str) -> RunReport:
    return RunReport.model_validate_json((FIXTURES / name).read_text(encoding="utf-8"))


@functools.cache
def rendered(name: str) -> dict[str, bytes]:
    """The report files of one fixture, rendered once per test session (charts take a while)."""
    return render_report_files(load_run(name))


def assert_self_contained(html: str) -> None:
    for pattern in EXTERNAL:
        found = pattern.search(html)
        assert found is None, f"external reference {found.group(0)!r} near {html[max(0, found.start() - 80):found.end() + 80]!r}"


def test_fixtures_are_what_the_generator_builds():
    spec = importlib.util.spec_from_file_location("make_report_fixtures", HERE / "make_report_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.build_all()
    assert sorted(built) == sorted(p.name for p in FIXTURES.glob("*.json"))
    for name, text in built.items():
        assert (FIXTURES / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run .venv/bin/python tests/shared/reporting/make_report_fixtures.py"
        )


def test_fixtures_cover_the_required_cases():
    reports = {name: load_run(name) for name in RUN_FIXTURES}
    assert {len(r.dataset_summary.labels) for r in reports.values()} >= {2, 10, 120}
    assert {r.outcome for r in reports.values()} >= {"promoted", "rejected", "failed", "over_budget"}
    assert any(r.incumbent is not None and r.outcome == "promoted" for r in reports.values())


@pytest.mark.parametrize("name", RUN_FIXTURES)
def test_run_report_files(name):
    report = load_run(name)
    files = rendered(name)
    assert sorted(files) == ["report.html", "report.json", "report.md"]
    assert RunReport.model_validate_json(files["report.json"]) == report
    html, markdown = files["report.html"].decode("utf-8"), files["report.md"].decode("utf-8")
    assert_self_contained(html)
    assert_self_contained(markdown)
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    assert f'class="verdict {report.outcome}"' in html
    assert report.dataset in html and report.version in html and report.dataset in markdown

    if report.decision is not None:
        sentence = report.decision.reason.split(": ", 1)[1]
        assert sentence[1:60] in html and report.decision.reason in markdown
        assert 'id="comparison"' in html and 'data-chart="per-class-f1"' in html and 'data-chart="confusion"' in html
        for model in (report.base, report.candidate, report.incumbent):
            if model is not None:
                assert model.model in html and model.model in markdown
        assert "| Accuracy |" in markdown and "## Per-class F1" in markdown and "## Top confusions" in markdown
    if report.training and report.training.results:
        assert 'data-chart="training"' in html
    if report.candidate and report.candidate.metrics.latency_ms.samples:
        assert 'data-chart="latency"' in html
    if report.failure is not None and report.outcome == "failed":
        assert 'id="failure-stage"' in html and report.failure.stage in html
        assert report.failure.message.split(":")[0] in html and report.failure.message in markdown
    if report.outcome == "over_budget":
        assert 'id="budget"' in html
        for text in ("61,200,000", "50,000,000", "$1,530", "$500.00"):
            assert text in html and text in markdown
        assert "over budget" in markdown
    if report.dataset_summary and report.dataset_summary.rejected:
        assert report.dataset_summary.rejected[0].reason in html
        assert "Rejected files" in markdown
    if report.training and report.training.used_examples:
        assert "What the service used" in html and "Used by the service" in markdown


def test_rendering_is_deterministic():
    assert render_report_files(load_run("run_2_classes.json")) == rendered("run_2_classes.json")


def test_120_classes_stay_readable():
    report = load_run("run_120_classes.json")
    html = rendered("run_120_classes.json")["report.html"].decode()
    # The heatmap shows only the most-confused classes (20 rows + an "other" column), every class is in the table.
    figure = html[html.index('data-chart="confusion"'):]
    figure = figure[: figure.index("</figure>")]
    assert "The 20 most-confused classes" in figure
    assert len(re.findall(r"<svg", html)) >= 4
    table = html[html.index("All 120 classes"):]
    for label in report.dataset_summary.labels:
        assert f"<td>{label}</td>" in table, label
    # the F1 chart lists the 30 weakest, not all 120
    f1 = html[html.index('data-chart="per-class-f1"'):]
    f1 = f1[: f1.index("</figure>")]
    assert "F1 of the 30 weakest of 120 classes" in f1
    assert len(html) < 600_000


def test_labels_are_escaped_in_html_and_markdown():
    report = load_run("run_2_classes.json")
    evil = '<img src=x onerror="alert(1)">|**x**'
    data = json.loads(report.model_dump_json().replace('"cat"', json.dumps(evil)))
    report = RunReport.model_validate(data)
    html = render_run_html(report)
    assert "<img" not in html and "&lt;img src=x" in html
    markdown = render_run_markdown(report)
    assert "\\<img src=x onerror=\"alert(1)\"\\>\\|\\*\\*x\\*\\*" in markdown


def test_charts_are_inline_svg_without_ids_that_collide():
    html = rendered("run_10_classes.json")["report.html"].decode()
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html and "<metadata" not in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, sorted(duplicates)[:10]


def test_evaluation_and_index_files():
    evaluation = EvaluationReport.model_validate_json((FIXTURES / "evaluation_regression.json").read_text())
    files = render_evaluation_files(evaluation)
    stem = evaluation_stem(evaluation.generated_at)
    assert re.fullmatch(r"\d{8}T\d{6}Z", stem)
    assert sorted(files) == [f"{stem}.html", f"{stem}.json", f"{stem}.md"]
    html = files[f"{stem}.html"].decode()
    assert_self_contained(html)
    assert evaluation.regression and 'class="verdict failed"' in html and "Regression" in html
    assert "**Regression**" in files[f"{stem}.md"].decode()

    index = DatasetIndex.model_validate_json((FIXTURES / "index.json").read_text())
    files = render_index_files(index)
    assert sorted(files) == ["index.html", "index.json", "index.md"]
    html = files["index.html"].decode()
    assert_self_contained(html)
    assert 'data-chart="history"' in html
    assert html.count('class="pill regression"') == sum(h.regression for h in index.history) > 0
    for run in index.runs:
        assert f'href="{run.report_path}"' in html
    scheduled = next(h for h in index.history if h.source == "scheduled")
    assert f'href="evaluations/{evaluation_stem(scheduled.at)}.html"' in html
    assert DatasetIndex.model_validate_json(files["index.json"]) == index


def test_minimal_reports_render():
    from datetime import datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    for outcome in ("in_progress", "cancelled"):
        html = render_run_html(RunReport(dataset="d", version="v1", generated_at=now, outcome=outcome, state="training"))
        assert_self_contained(html)
        assert f'class="verdict {outcome}"' in html
    html = render_evaluation_html(EvaluationReport(dataset="d", generated_at=now, test_set_version="v1",
                                                   regression_threshold=0.02))
    assert "Nothing is in production" in html
    html = render_index_html(DatasetIndex(dataset="d", generated_at=now))
    assert "Nothing in production yet" in html and "No runs yet" in html


def test_content_types():
    assert content_type("report.html") == "text/html; charset=utf-8"
    assert content_type("20260101T000000Z.json").startswith("application/json")
    assert content_type("report.md").startswith("text/markdown")


def test_off_label_column_is_named():
    report = load_run("run_120_classes.json")
    assert report.candidate.metrics.confusion.columns[-1] == OFF_LABEL


def test_importing_the_pipeline_api_does_not_load_heavy_libraries():
    code = (
        "import sys, shared.reporting.publish, shared.evaluation.metrics, shared.evaluation.gate, "
        "shared.reporting.html, shared.reporting.charts, shared.reporting.markdown;"
        "heavy = [m for m in ('matplotlib', 'numpy', 'jinja2') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
