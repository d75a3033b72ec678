"""Plain Markdown reports (GitHub-flavoured tables) for a terminal or a pull request.

Same facts as the HTML report, without charts. Every value that comes from users' names and files (labels,
paths, reasons, warnings, messages) is escaped: as text (``_text``: no emphasis, links, raw HTML or
autolinks can form), as a code span whose fence is longer than any backtick run inside (``_code``), or
in a fenced block likewise (``_fenced``), so a crafted file name cannot break out of where it is shown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.reporting import formatting as fmt
from shared.reporting import summary as s
from shared.reporting.schema import DatasetIndex, EvaluationReport, ModelEvaluation, RunReport

_MAX_LABEL_ROWS = 40  # per-label tables beyond this show the worst rows and say how many were left out
_MAX_REJECTED_ROWS = 50


def _text(value: object) -> str:
    """``value`` as inert Markdown text on one line: the characters that start emphasis, code, links,
    images, raw HTML, autolinks, entities, strikethrough or table cells are backslash-escaped, and so is a
    first character that would start a heading, list or quote. (``javascript:`` and the like stay plain
    text: without ``[...](...)`` or ``<...>`` nothing turns them into a link.)"""
    text = " ".join(str(value).replace("\r", " ").split("\n"))
    escaped = "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)
    stripped = escaped.lstrip(" ")
    if stripped[:1] in ("#", "+", "-", "=") or _ORDERED_ITEM.match(stripped):
        indent = len(escaped) - len(stripped)
        escaped = escaped[:indent] + "\\" + stripped
    return escaped


_MARKDOWN_SPECIAL = frozenset("\\`*_[]<>|&~")
_ORDERED_ITEM = re.compile(r"^\d{1,9}[.)]")


def _cell(value: object) -> str:
    return _text(value)


def _code(value: object) -> str:
    """``value`` as one inline code span that cannot be closed early (CommonMark: a longer fence)."""
    text = " ".join(str(value).splitlines())
    run = current = 0
    for ch in text:
        current = current + 1 if ch == "`" else 0
        run = max(run, current)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fenced(value: object) -> list[str]:
    """``value`` as a fenced code block whose fence is longer than any backtick run inside."""
    text = str(value)
    run = current = 0
    for ch in text:
        current = current + 1 if ch == "`" else 0
        run = max(run, current)
    fence = "`" * max(3, run + 1)
    return [fence, text, fence]


def _text_keep_bold(value: str) -> str:
    """Like ``_text``, but a leading ``**Title.**`` that the report itself writes stays bold."""
    if value.startswith("**"):
        end = value.find("**", 2)
        if end > 2:
            return f"**{_text(value[2:end])}**" + _text(value[end + 2 :])
    return _text(value)


def _table(header: list[str], rows: Sequence[Sequence[object]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _model_titles(models: list[ModelEvaluation]) -> list[str]:
    return [f"{s.ROLE_TITLES[m.role]} ({m.method})" for m in models]


def _comparison(models: list[ModelEvaluation], titles: list[str], focus: ModelEvaluation | None = None,
                baseline: ModelEvaluation | None = None, delta_title: str = "") -> list[str]:
    rows = []
    comparison = s.comparison_rows(models, focus, baseline)
    with_delta = any(row.delta for row in comparison)
    for row in comparison:
        cells = [row.metric, *[f"**{v}**" if i in row.best else v for i, v in enumerate(row.values)]]
        rows.append(cells + [row.delta or "—"] if with_delta else cells)
    lines = _table(["Metric", *titles, *([delta_title or "Change"] if with_delta else [])], rows)
    # The bold markers were escaped by _cell; restore them (values never contain '*').
    return [line.replace("\\*\\*", "**") for line in lines]


def _models_list(models: list[ModelEvaluation]) -> list[str]:
    return [f"- **{s.ROLE_TITLES[m.role]}**: {_code(m.model)}" + (f" (deployment {_code(m.deployment)})" if m.deployment else "")
            for m in models] + [""]


def _per_class(models: list[ModelEvaluation], baseline: ModelEvaluation | None) -> list[str]:
    rows = s.per_class_rows(models, baseline)
    if not rows:
        return []
    shown = rows[:_MAX_LABEL_ROWS]
    lines = ["## Per-class F1", ""]
    if len(rows) > len(shown):
        lines += [f"The {len(shown)} weakest of {len(rows)} classes (by the candidate's F1); the HTML report lists all.", ""]
    table = [[r.label, r.support, *[fmt.pct(v, 0) for v in r.f1], fmt.points(r.delta) if r.delta is not None else "—"]
             for r in shown]
    lines += _table(["Class", "Support", *[s.ROLE_TITLES[m.role] for m in models], "Δ F1 vs baseline"], table)
    improved, worsened = s.biggest_changes(rows)
    if improved or worsened:
        lines += ["Biggest changes against the baseline: "
                  + ", ".join(f"{_text(r.label)} {fmt.points(r.delta)}" for r in improved[:5] + worsened[:5]) + ".", ""]
    return lines


def _confusions(model: ModelEvaluation) -> list[str]:
    top = s.top_confusions(model.metrics.confusion, 15)
    if not top:
        return ["## Top confusions", "", "No confusions: every answer was right.", ""]
    rows = [[c.truth, c.answer, c.count, fmt.pct(c.share, 0)] for c in top]
    return ["## Top confusions (candidate)" if model.role == "candidate" else f"## Top confusions ({model.role})", "",
            *_table(["Truth", "Answered", "Count", "Share of truth"], rows)]


def _training(report: RunReport) -> list[str]:
    t = report.training
    if t is None:
        return []
    lines = ["## Training", ""]
    facts = [
        ("Job", t.job_id), ("Base model", t.base_model), ("Fine-tuned model", t.fine_tuned_model),
        ("Status", t.status), ("Trained tokens", fmt.count(t.trained_tokens) if t.trained_tokens else None),
        ("Duration", fmt.duration(t.started_at, t.finished_at) if t.started_at and t.finished_at else None),
        ("Hyperparameters", ", ".join(f"{k}={v}" for k, v in t.hyperparameters.items()) or None),
    ]
    lines += [f"- {k}: {_code(v)}" if k in ("Job", "Fine-tuned model") else f"- {k}: {_text(v)}" for k, v in facts if v]
    lines.append("")
    skipped = s.skipped_images(report)
    if skipped:
        lines += _table(["Split", "Submitted", "Used by the service", "Skipped"],
                        [[sp, fmt.count(sub), fmt.count(u), fmt.count(k)] for sp, sub, u, k in skipped])
    if t.skipped_note:
        lines += [f"> {_text(t.skipped_note)}", ""]
    final = s.training_final_sentence(t.results)
    if final is not None:
        lines += [_text(final), ""]
    return lines


def _dataset(report: RunReport) -> list[str]:
    d = report.dataset_summary
    if d is None:
        return []
    lines = ["## Dataset", "", f"{len(d.labels)} labels."
             + "".join(f" {split}: {fmt.count(sp.examples)}." for split, sp in d.splits.items()), ""]
    splits = list(d.splits)
    if len(d.labels) <= _MAX_LABEL_ROWS:
        lines += _table(["Label", *splits], [[label, *[d.splits[sp].per_label.get(label, 0) for sp in splits]]
                                             for label in d.labels])
    else:
        for sp in splits:
            counts = sorted(d.splits[sp].per_label.get(label, 0) for label in d.labels)
            if counts:
                lines.append(f"- {sp}: {counts[0]}–{counts[-1]} examples per label (median {counts[len(counts) // 2]})")
        lines.append("")
    if d.rejected:
        lines += [f"### Rejected files ({len(d.rejected)})", ""]
        lines += _table(["Code", "Files", "Example reason"], [list(g) for g in s.rejected_by_code(report)], "lrl")
        shown = d.rejected[:_MAX_REJECTED_ROWS]
        lines += _table(["File", "Reason"], [[r.path, r.reason] for r in shown], "ll")
        if len(d.rejected) > len(shown):
            lines += [f"…and {len(d.rejected) - len(shown)} more.", ""]
    if d.ignored:
        lines += [f"Ignored {len(d.ignored)} file(s) that are not images: "
                  + ", ".join(_code(p) for p in d.ignored[:10]) + (" …" if len(d.ignored) > 10 else ""), ""]
    lines += [f"> Warning: {_text(w)}" for w in d.warnings] + ([""] if d.warnings else [])
    return lines


def _cost(report: RunReport) -> list[str]:
    c = report.cost
    rows = [
        ["Training (estimate)", fmt.usd(c.estimated_training_usd),
         f"{fmt.count(c.estimated_training_tokens)} tokens" if c.estimated_training_tokens else ""],
        ["Training (billed)", fmt.usd(c.training_usd),
         f"{fmt.count(report.training.trained_tokens)} tokens" if report.training and report.training.trained_tokens else ""],
        ["Evaluation", fmt.usd(c.evaluation_usd), ""],
        *([["Classic baseline", fmt.usd_fine(c.classic_usd), "training and scoring on the function instance"]]
          if c.classic_usd is not None else []),
        ["Hosting so far", fmt.usd(s.hosting_usd(report)),
         f"{c.hosting_hours:.1f} h × {fmt.usd(c.hosting_usd_per_hour)}/h"
         if c.hosting_hours is not None and c.hosting_usd_per_hour is not None else ""],
        ["Total", fmt.usd(c.total_usd), ""],
    ]
    lines = ["## Cost", "", *_table(["Item", "USD", "Detail"], rows, "lrl")]
    for what, estimate, limit, ratio, over in s.budget_lines(report):
        lines.append(f"- Budget, {what.lower()}: estimate {estimate} against a limit of {limit}"
                     + (" — **over budget**" if over else f" ({fmt.pct(ratio, 0)} of it)" if ratio is not None else ""))
    return lines + ([""] if s.budget_lines(report) else [])


def suspects_markdown(report: RunReport) -> list[str]:
    """The review queue of suspect labels as a Markdown section (no pictures: see the HTML report)."""
    if not report.suspects:
        return []
    other = report.suspects[0].other_role
    lines = ["## Suspect labels", "",
             f"{len(report.suspects)} test image(s) that the candidate and the {other} model both answered with "
             "the same other label: check their labels first (most confident first; thumbnails in report.html).", ""]
    lines += _table(["Image", "Labelled", "Both say", "Confidence", "Candidate", other.capitalize()], [
        [x.source_path or x.custom_id, x.label, x.answer,
         "—" if x.confidence is None else f"{x.confidence:.0%}", x.candidate_answer, x.other_answer]
        for x in report.suspects
    ], "lllrll")
    return lines


def _classic(report: RunReport) -> list[str]:
    if report.classic_baseline is None:
        return []
    lines = ["## Classic baseline", ""]
    missing = s.classic_missing(report)
    if missing:
        return lines + [missing, ""]
    verdict = report.classic_baseline.verdict
    if verdict is not None:
        lines += [f"**{verdict.sentence}**", ""]
    lines += [("A CPU model trained on the same training split and scored on the same test images; it never "
               "takes part in the promotion decision."), ""]
    return lines + _table(["", "Classic baseline"], [[k, v] for k, v in s.classic_facts(report)], "ll")


def render_run_markdown(report: RunReport) -> str:
    """The run report as Markdown: decision, comparison, per-class F1, confusions, training, dataset,
    cost and timeline."""
    title = s.OUTCOME_TITLES.get(report.outcome, report.outcome)
    headline = s.headline(report)
    verdict = headline if headline.startswith(title) else f"**{title}.** {headline}"
    if report.failure is not None:  # the failure's message may quote names and text from the user's files
        verdict = _text_keep_bold(verdict)
    lines = [f"# visiontune · {_text(report.dataset)} · {_text(report.version)}", "", verdict, ""]
    classic_verdict = report.classic_baseline.verdict if report.classic_baseline else None
    if classic_verdict is not None:
        lines += [classic_verdict.sentence, ""]
    lines += [f"Generated {fmt.when(report.generated_at)}; state {_code(report.state)}.", ""]
    if report.failure is not None:
        lines += ["## Failure", "", f"- Stage: {_code(report.failure.stage)}", f"- At: {fmt.when(report.failure.at)}", "",
                  *_fenced(report.failure.message), ""]
    if report.decision is not None:
        d = report.decision
        lines += ["## Decision", ""]
        lines += _table(["Gate", "Value"], [
            ["Compared with", d.baseline_role or "—"],
            ["Paired test examples", fmt.count(d.paired_examples)],
            ["Accuracy change", fmt.points(d.accuracy_delta)],
            ["Required margin", fmt.points(d.margin).replace("+", "")],
            ["McNemar exact p", fmt.p_value(d.p_value)],
            ["p-value threshold", f"{d.p_value_threshold:g}"],
            ["Only the candidate right", fmt.count(d.candidate_only_correct)],
            ["Only the baseline right", fmt.count(d.baseline_only_correct)],
        ])
    if report.production_model:
        lines += [f"Production after this run: {_code(report.production_model)}"
                  + (f" (deployment {_code(report.production_deployment)})" if report.production_deployment else ""), ""]
    models = s.run_models(report)
    if models:
        baseline = s.baseline_of(report)
        lines += ["## Models", "", *_models_list(models), "## Side by side", "",
                  *_comparison(models, _model_titles(models), report.candidate, baseline,
                               "Candidate vs " + (baseline.role if baseline else "baseline"))]
        lines += _per_class(models, baseline)
        focus = report.candidate or models[-1]
        lines += _confusions(focus)
    lines += _classic(report)
    lines += _training(report)
    lines += _dataset(report)
    lines += _cost(report)
    lines += suspects_markdown(report)
    if report.timeline:
        lines += ["## Timeline", "", *_table(["When", "State", "Detail"],
                                              [[fmt.when(t.at), t.state, t.detail] for t in report.timeline], "lll")]
    return "\n".join(lines).rstrip() + "\n"


def render_evaluation_markdown(report: EvaluationReport) -> str:
    """A scheduled evaluation as Markdown: production (and base) on the latest test set, regression flag."""
    status = "**Regression**" if report.regression else "No regression"
    lines = [f"# visiontune · {_text(report.dataset)} · scheduled evaluation", "",
             f"Generated {fmt.when(report.generated_at)} on the test set of version {_code(report.test_set_version)}.", ""]
    accuracy = report.production.metrics.accuracy if report.production else None
    text = f"{status}: production accuracy {fmt.pct(accuracy)}"
    if report.previous_accuracy is not None and accuracy is not None:
        text += (f", previously {fmt.pct(report.previous_accuracy)} ({fmt.points(accuracy - report.previous_accuracy)}; "
                 f"threshold {fmt.points(report.regression_threshold).replace('+', '')})")
    lines += [text + ".", ""]
    if report.note:
        lines += [_text(report.note), ""]
    pairs = s.evaluation_models(report)
    if pairs:
        models = [m for _, m in pairs]
        lines += ["## Models", "", *[f"- **{t}**: {_code(m.model)}" for t, m in pairs], "",
                  "## Side by side", "", *_comparison(models, [t for t, _ in pairs], report.production, report.base,
                                                        "Production vs base")]
        if report.production is not None:
            lines += _confusions(report.production)
    return "\n".join(lines).rstrip() + "\n"


def render_index_markdown(index: DatasetIndex) -> str:
    """The dataset's index as Markdown: production, every version, production accuracy over time."""
    lines = [f"# visiontune · {_text(index.dataset)}", "", f"Generated {fmt.when(index.generated_at)}.", ""]
    if index.production_model:
        lines += [f"Production: {_code(index.production_model)} from version {_code(index.production_version)}"
                  + (f" (deployment {_code(index.production_deployment)})" if index.production_deployment else "") + ".", ""]
    else:
        lines += ["Nothing is in production yet.", ""]
    if index.runs:
        lines += ["## Versions", "", *_table(
            ["Version", "Outcome", "State", "Accuracy", "Baseline", "Created", "Report"],
            [[r.version, r.outcome, r.state, fmt.pct(r.accuracy), fmt.pct(r.baseline_accuracy), fmt.when(r.created_at),
              r.report_path or ""] for r in index.runs], "lllrrll")]
    if index.history:
        lines += ["## Production accuracy over time", "", *_table(
            ["When", "Version", "Accuracy", "Source", "Regression"],
            [[fmt.when(h.at), h.version, fmt.pct(h.accuracy), h.source, "yes" if h.regression else ""]
             for h in index.history], "llrll")]
    return "\n".join(lines).rstrip() + "\n"
