"""Self-contained HTML reports: one file, inline CSS and SVG charts, no external URL of any kind.

They open offline, from a blob URL or an e-mail attachment. Rendered with jinja2 (autoescape on) from
the schema models; charts come from ``charts`` (matplotlib, imported lazily). A chart that cannot be
drawn is replaced by a note saying why, so a report is always written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

from shared.layout import evaluation_stem
from shared.reporting import charts
from shared.reporting import formatting as fmt
from shared.reporting import summary as s
from shared.reporting.schema import DatasetIndex, EvaluationReport, ModelEvaluation, RunReport

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
FULL_CONFUSION_MAX = 15  # above this many labels the heatmap shows the most-confused labels only
HEATMAP_LABELS = 20
F1_CHART_ALL_MAX = 40  # above this many labels the F1 chart shows the weakest classes only
F1_CHART_WORST = 30
LABEL_CHART_MAX = 30
REJECTED_ROWS = 200


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=fmt.pct, points=fmt.points, ms=fmt.ms, usd=fmt.usd, usd_fine=fmt.usd_fine, count=fmt.count, when=fmt.when,
        p_value=fmt.p_value,
    )
    env.globals.update(role_title=s.ROLE_TITLES, outcome_title=s.OUTCOME_TITLES)
    return env


def _render(template: str, **context: Any) -> str:
    rendered: str = _environment().get_template(template).render(**context)
    return rendered


def _chart(name: str, function: Callable[..., str], *args: Any, **kwargs: Any) -> Markup:
    """The chart's SVG as safe markup, or a short note when it cannot be drawn."""
    from markupsafe import Markup, escape

    try:
        return Markup(function(*args, **kwargs))
    except Exception as error:  # a report without one chart beats no report
        logger.exception("chart %s failed", name)
        return Markup(f'<p class="note">The {escape(name)} chart could not be drawn: {escape(str(error))}</p>')


def _series_name(model: ModelEvaluation) -> str:
    return s.ROLE_TITLES[model.role]


def _per_class_context(models: list[ModelEvaluation], baseline: ModelEvaluation | None) -> dict[str, Any]:
    rows = s.per_class_rows(models, baseline)
    if not rows:
        return {"rows": [], "chart": None}
    shown = rows if len(rows) <= F1_CHART_ALL_MAX else rows[:F1_CHART_WORST]
    labels = [r.label for r in shown]
    series = [(m.role, _series_name(m), [r.f1[i] for r in shown]) for i, m in enumerate(models)]
    title = ("F1 per class, weakest first" if len(shown) == len(rows)
             else f"F1 of the {len(shown)} weakest of {len(rows)} classes")
    improved, worsened = s.biggest_changes(rows, 6)
    focus = next((m for m in models if m.role == "candidate"), models[-1])
    focus_f1 = sorted(focus.metrics.per_class[r.label].f1 for r in rows)
    return {
        "rows": rows,
        "partial": len(shown) < len(rows),
        "chart": _chart("per-class F1", charts.per_class_f1_chart, labels, series, title=title),
        "improved": improved,
        "worsened": worsened,
        "focus": focus,
        "perfect": sum(1 for f in focus_f1 if f >= 0.9999),
        "below_half": sum(1 for f in focus_f1 if f < 0.5),
        "median_f1": focus_f1[len(focus_f1) // 2],
    }


def _confusion_context(model: ModelEvaluation | None, name: str | None = None) -> dict[str, Any] | None:
    if model is None:
        return None
    name = (name or _series_name(model)).lower()
    confusion = model.metrics.confusion
    top = s.top_confusions(confusion, 15)
    if len(confusion.labels) <= FULL_CONFUSION_MAX:
        chart = _chart("confusion", charts.confusion_heatmap, confusion, title=f"Confusion matrix ({name})")
        partial = False
    else:
        labels = s.most_confused_labels(confusion, HEATMAP_LABELS)
        if len(labels) < 2:
            labels = confusion.labels[:HEATMAP_LABELS]
        labels.sort(key=confusion.labels.index)  # keep the dataset's order so neighbours stay together
        chart = _chart("confusion", charts.confusion_heatmap, s.sub_confusion(confusion, labels),
                       title=f"The {len(labels)} most-confused classes ({name})")
        partial = True
    return {"model": model, "top": top, "chart": chart, "partial": partial, "n_labels": len(confusion.labels)}


def _latency_chart(models: list[tuple[str, str, ModelEvaluation]]) -> Markup | None:
    series = [(role, name, m.metrics.latency_ms.samples) for role, name, m in models if m.metrics.latency_ms.samples]
    if not series:
        return None
    return _chart("latency", charts.latency_histogram, series)


def _dataset_context(report: RunReport) -> dict[str, Any] | None:
    d = report.dataset_summary
    if d is None:
        return None
    splits = list(d.splits)
    chart = None
    if 0 < len(d.labels) <= LABEL_CHART_MAX:
        chart = _chart("examples per label", charts.label_counts_chart, d.labels,
                       [(sp, [d.splits[sp].per_label.get(label, 0) for label in d.labels]) for sp in splits])
    spread = {}
    for sp in splits:
        counts = sorted(d.splits[sp].per_label.get(label, 0) for label in d.labels)
        if counts:
            spread[sp] = (counts[0], counts[len(counts) // 2], counts[-1])
    return {
        "summary": d, "splits": splits, "chart": chart, "spread": spread,
        "rejected_groups": s.rejected_by_code(report), "rejected_rows": d.rejected[:REJECTED_ROWS],
        "rejected_more": max(0, len(d.rejected) - REJECTED_ROWS),
    }


def _training_context(report: RunReport) -> dict[str, Any] | None:
    t = report.training
    if t is None:
        return None
    return {
        "t": t,
        "chart": _chart("training curves", charts.training_curves, t.results) if t.results else None,
        "skipped": s.skipped_images(report),
        "final": s.training_final_sentence(t.results),
        "duration": fmt.duration(t.started_at, t.finished_at),
    }


def render_run_html(report: RunReport) -> str:
    """The run report as one self-contained HTML page."""
    models = s.run_models(report)
    baseline = s.baseline_of(report)
    focus = report.candidate
    comparison = s.comparison_rows(models, focus, baseline) if models else []
    return _render(
        "run.html.j2",
        report=report,
        headline=s.verdict_sentence(report),
        models=models,
        baseline=baseline,
        comparison=comparison,
        has_delta=any(row.delta for row in comparison),
        per_class=_per_class_context(models, baseline) if models else None,
        confusion=_confusion_context(report.candidate or (models[-1] if models else None)),
        latency_chart=_latency_chart([(m.role, _series_name(m), m) for m in models]),
        latency_missing=[m for m in models if not m.metrics.latency_ms.samples],
        training=_training_context(report),
        dataset=_dataset_context(report),
        budget=s.budget_lines(report),
        hosting_usd=s.hosting_usd(report),
        classic_facts=s.classic_facts(report),
        classic_missing=s.classic_missing(report),
    )


def render_evaluation_html(report: EvaluationReport) -> str:
    """A scheduled evaluation of production as one self-contained HTML page."""
    pairs = s.evaluation_models(report)
    models = [m for _, m in pairs]
    comparison = s.comparison_rows(models, report.production, report.base) if models else []
    return _render(
        "evaluation.html.j2",
        report=report,
        pairs=pairs,
        comparison=comparison,
        has_delta=any(row.delta for row in comparison),
        accuracy=report.production.metrics.accuracy if report.production else None,
        confusion=_confusion_context(report.production, "production"),
        latency_chart=_latency_chart([("production" if m is report.production else "base", t, m) for t, m in pairs]),
    )


def render_index_html(index: DatasetIndex) -> str:
    """The dataset's index page: production, every version, production accuracy over time."""
    history = sorted(index.history, key=lambda h: h.at)
    chart = None
    if history:
        chart = _chart("production accuracy", charts.accuracy_over_time,
                       [(h.at, h.accuracy, h.regression, h.version) for h in history],
                       regression_threshold=index.regression_threshold,
                       test_sets=[h.test_set_version for h in history])
    production = next((r for r in index.runs if r.version == index.production_version), None)
    return _render(
        "index.html.j2",
        index=index,
        runs=sorted(index.runs, key=lambda r: (r.created_at is None, r.created_at), reverse=True),
        history=list(reversed(history)),
        regressions=[h for h in history if h.regression],
        latest=history[-1] if history else None,
        production=production,
        chart=chart,
        evaluation_href=lambda h: f"evaluations/{evaluation_stem(h.at)}.html" if h.source == "scheduled" else None,
    )
