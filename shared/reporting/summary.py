"""What a report says, computed once from the schema and shared by the Markdown and HTML renderers.

Pure functions over ``schema`` models: the side-by-side comparison, top confusions, per-class changes,
the headline and verdict sentences (numbers are written by ``shared.reporting.formatting``). No rendering
here, so both formats state the same facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.reporting.formatting import count, loss, ms, ms_precise, pct, points, usd, usd_fine
from shared.reporting.schema import (
    OFF_LABEL,
    ConfusionMatrix,
    EvaluationReport,
    ModelEvaluation,
    ResultsRow,
    RunReport,
)

ROLE_ORDER = ("base", "incumbent", "candidate", "classic")
ROLE_TITLES = {
    "base": "Base", "incumbent": "Incumbent", "candidate": "Candidate", "production": "Production",
    "classic": "Classic",
}

OUTCOME_TITLES = {
    "promoted": "Promoted",
    "rejected": "Rejected",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "over_budget": "Stopped: over budget",
    "in_progress": "In progress",
}


# --- the models in a report ----------------------------------------------------------------------------
def run_models(report: RunReport) -> list[ModelEvaluation]:
    """The evaluated models of a run in display order: base, incumbent, candidate, then the classic baseline
    (missing ones left out)."""
    by_role = {
        "base": report.base, "incumbent": report.incumbent, "candidate": report.candidate, "classic": report.classic,
    }
    return [model for r in ROLE_ORDER if (model := by_role[r]) is not None]


def evaluation_models(report: EvaluationReport) -> list[tuple[str, ModelEvaluation]]:
    """(title, evaluation) of a scheduled evaluation: base first, then production."""
    out: list[tuple[str, ModelEvaluation]] = []
    if report.base is not None:
        out.append(("Base", report.base))
    if report.production is not None:
        out.append(("Production", report.production))
    return out


def baseline_of(report: RunReport) -> ModelEvaluation | None:
    """The model the candidate was judged against (the decision's baseline, else incumbent, else base)."""
    role = report.decision.baseline_role if report.decision else None
    if role == "base":
        return report.base
    if role == "incumbent":
        return report.incumbent
    return report.incumbent or report.base


# --- side-by-side comparison ---------------------------------------------------------------------------
@dataclass
class ComparisonRow:
    metric: str
    values: list[str]
    best: set[int] = field(default_factory=set)  # indexes of the best value(s), when "best" means something
    hint: str = ""
    delta: str = ""  # focus model minus baseline, formatted ("+7.2 pts", "-120 ms"); "" when not meaningful
    delta_good: bool | None = None  # True: the change is an improvement


def _row(
    metric: str,
    models: list[ModelEvaluation],
    get: Callable[[ModelEvaluation], float | int | None],
    fmt: Callable[..., str],
    better: str | None,
    hint: str = "",
    pair: tuple[int, int] | None = None,
    delta_fmt: Callable[[float], str] | None = None,
) -> ComparisonRow:
    raw = [get(m) for m in models]
    best: set[int] = set()
    present = [v for v in raw if v is not None]
    if better and len(present) > 1 and len(set(present)) > 1:
        target = max(present) if better == "higher" else min(present)
        best = {i for i, v in enumerate(raw) if v == target}
    row = ComparisonRow(metric, [fmt(v) for v in raw], best, hint)
    if pair is not None and delta_fmt is not None:
        focus, baseline = raw[pair[0]], raw[pair[1]]
        if focus is not None and baseline is not None:
            change = focus - baseline
            row.delta = delta_fmt(change)
            if better and abs(change) > 1e-12:
                row.delta_good = (change > 0) == (better == "higher")
    return row


def _signed_ms(value: float) -> str:
    return f"{value:+,.0f} ms"


def _signed_usd(value: float) -> str:
    return ("+" if value >= 0 else "-") + usd(abs(value))


def _signed_count(value: float) -> str:
    return f"{value:+,.0f}"


def comparison_rows(
    models: list[ModelEvaluation], focus: ModelEvaluation | None = None, baseline: ModelEvaluation | None = None
) -> list[ComparisonRow]:
    """The side-by-side table: one row per metric, one value per model; ``best`` marks the winner, and
    ``delta`` is ``focus - baseline`` when both are given (the candidate against what it was judged by)."""
    m = models
    positions = {id(model): i for i, model in enumerate(models)}
    pair = None
    if focus is not None and baseline is not None and focus is not baseline:
        if id(focus) in positions and id(baseline) in positions:
            pair = (positions[id(focus)], positions[id(baseline)])
    return [
        _row("Accuracy", m, lambda e: e.metrics.accuracy, pct, "higher", pair=pair, delta_fmt=points),
        _row("Correct", m, lambda e: e.metrics.correct, count, "higher",
             hint="answers matching the truth", pair=pair, delta_fmt=_signed_count),
        _row("Balanced accuracy", m, lambda e: e.metrics.balanced_accuracy, pct, "higher",
             hint="mean recall per class", pair=pair, delta_fmt=points),
        _row("Macro-F1", m, lambda e: e.metrics.macro_f1, pct, "higher", pair=pair, delta_fmt=points),
        _row("Off-label rate", m, lambda e: e.metrics.off_label_rate, pct, "lower",
             hint="answers that name no label", pair=pair, delta_fmt=points),
        _row("Failed requests", m, lambda e: e.metrics.errors, count, "lower", pair=pair, delta_fmt=_signed_count),
        _row("Latency p50", m, lambda e: e.metrics.latency_ms.p50, ms, "lower", pair=pair, delta_fmt=_signed_ms),
        _row("Latency p95", m, lambda e: e.metrics.latency_ms.p95, ms, "lower", pair=pair, delta_fmt=_signed_ms),
        _row("Latency p99", m, lambda e: e.metrics.latency_ms.p99, ms, "lower", pair=pair, delta_fmt=_signed_ms),
        _row("Prompt tokens", m, lambda e: e.metrics.tokens.prompt, count, None),
        _row("Completion tokens", m, lambda e: e.metrics.tokens.completion, count, None),
        _row("Evaluation cost", m, lambda e: e.metrics.cost_usd, usd, None, pair=pair, delta_fmt=_signed_usd),
        _row("Test examples", m, lambda e: e.metrics.n, count, None),
    ]


# --- where the models differ ---------------------------------------------------------------------------
@dataclass
class Confusion:
    truth: str
    answer: str
    count: int
    share: float  # of the truth's support


def top_confusions(confusion: ConfusionMatrix, limit: int = 15) -> list[Confusion]:
    """The most frequent wrong (truth, answer) pairs, off-label answers included, largest first."""
    out: list[Confusion] = []
    for i, truth in enumerate(confusion.labels):
        row = confusion.matrix[i]
        support = sum(row)
        for j, answer in enumerate(confusion.columns):
            if answer != truth and row[j] > 0:
                out.append(Confusion(truth, answer, row[j], row[j] / support if support else 0.0))
    out.sort(key=lambda c: (-c.count, -c.share, c.truth, c.answer))
    return out[:limit]


def most_confused_labels(confusion: ConfusionMatrix, limit: int) -> list[str]:
    """Up to ``limit`` labels involved in the most errors (as truth or as wrong answer), most first."""
    errors = {label: 0 for label in confusion.labels}
    for i, truth in enumerate(confusion.labels):
        for j, answer in enumerate(confusion.columns):
            if answer != truth and confusion.matrix[i][j]:
                errors[truth] += confusion.matrix[i][j]
                if answer in errors:
                    errors[answer] += confusion.matrix[i][j]
    ranked = sorted(confusion.labels, key=lambda label: (-errors[label], label))
    return [label for label in ranked if errors[label] > 0][:limit]


def sub_confusion(confusion: ConfusionMatrix, labels: list[str]) -> ConfusionMatrix:
    """The confusion matrix restricted to ``labels`` (rows and columns) plus an "other" column that holds
    answers outside them (other labels and off-label), so every row still sums to its support."""
    index = {label: i for i, label in enumerate(confusion.columns)}
    keep = [index[label] for label in labels]
    matrix = []
    for label in labels:
        row = confusion.matrix[confusion.labels.index(label)]
        kept = [row[j] for j in keep]
        matrix.append([*kept, sum(row) - sum(kept)])
    other = "(other / off-label)" if len(labels) < len(confusion.labels) else OFF_LABEL
    return ConfusionMatrix(labels=list(labels), columns=[*labels, other], matrix=matrix)


@dataclass
class ClassRow:
    label: str
    support: int
    f1: list[float | None]  # per model, in the models' order
    delta: float | None  # candidate F1 - baseline F1


def per_class_rows(models: list[ModelEvaluation], baseline: ModelEvaluation | None) -> list[ClassRow]:
    """Per-class F1 of every model, sorted by the candidate's (else the last model's) F1, worst first."""
    if not models:
        return []
    focus = next((m for m in models if m.role == "candidate"), models[-1])
    labels = list(focus.metrics.per_class)
    rows = []
    for label in labels:
        f1 = [m.metrics.per_class[label].f1 if label in m.metrics.per_class else None for m in models]
        focus_f1 = focus.metrics.per_class[label].f1
        base_f1 = (
            baseline.metrics.per_class[label].f1
            if baseline is not None and baseline is not focus and label in baseline.metrics.per_class
            else None
        )
        rows.append(
            ClassRow(label, focus.metrics.per_class[label].support, f1,
                     None if base_f1 is None else focus_f1 - base_f1)
        )
    rows.sort(key=lambda r: (r.f1[models.index(focus)] or 0.0, r.label))
    return rows


def biggest_changes(rows: list[ClassRow], limit: int = 8) -> tuple[list[ClassRow], list[ClassRow]]:
    """(most improved, most worsened) classes by candidate-minus-baseline F1; only real changes."""
    changed = [(r, r.delta) for r in rows if r.delta is not None and abs(r.delta) > 1e-12]
    improved = sorted(((r, d) for r, d in changed if d > 0), key=lambda p: (-p[1], p[0].label))[:limit]
    worsened = sorted(((r, d) for r, d in changed if d < 0), key=lambda p: (p[1], p[0].label))[:limit]
    return [r for r, _ in improved], [r for r, _ in worsened]


def rejected_by_code(report: RunReport) -> list[tuple[str, int, str]]:
    """(code, count, one example reason) of the files the converter rejected, most common first."""
    if report.dataset_summary is None:
        return []
    groups: dict[str, list[str]] = {}
    for item in report.dataset_summary.rejected:
        groups.setdefault(item.code, []).append(item.reason)
    return sorted(((code, len(r), r[0]) for code, r in groups.items()), key=lambda g: (-g[1], g[0]))


def skipped_images(report: RunReport) -> list[tuple[str, int, int | None, int | None]]:
    """(split, submitted, used, skipped) per split; used/skipped None when the service did not say."""
    if report.training is None:
        return []
    out = []
    for split, submitted in report.training.submitted_examples.items():
        used = report.training.used_examples.get(split)
        out.append((split, submitted, used, None if used is None else submitted - used))
    return out


def classic_missing(report: RunReport) -> str | None:
    """Why the report has no classic baseline ("The classic baseline is missing: ..."), or None when it has one
    (or the report predates it)."""
    baseline = report.classic_baseline
    if baseline is None or report.classic is not None:
        return None
    what = {"disabled": "is off", "skipped": "was skipped", "failed": "failed", "pending": "has not run yet",
            "not_run": "did not run"}.get(baseline.status, "is missing")
    return f"The classic baseline {what}: {baseline.reason or 'no reason was recorded'}."


def classic_facts(report: RunReport) -> list[tuple[str, str]]:
    """(fact, value) rows about the classic baseline: what it is, its cost and latency."""
    b = report.classic_baseline
    if b is None or report.classic is None:
        return []
    rows = [
        ("Features", f"{b.features} ({count(b.feature_dims)} values per image)" if b.features else "—"),
        ("Classifier", b.classifier or "—"),
        ("Training images", count(b.train_examples)
         + (f" ({count(b.skipped_train_lines)} without a usable image left out)" if b.skipped_train_lines else "")),
        ("Training", f"{b.train_seconds:,.1f} s, {usd_fine(b.train_usd)}" if b.train_seconds is not None else "—"),
        ("Scoring", f"{count(b.test_examples)} images in {b.score_seconds:,.1f} s, {usd_fine(b.score_usd)}"
         if b.score_seconds is not None else "—"),
        ("Latency per image", ms_precise(b.latency_ms_per_image) + " mean (decode, features, predict; one CPU core)"),
        ("Compute", f"{b.gb_seconds:,.1f} GB-s ({b.memory_gb:g} GB instance) x ${b.price_per_gb_second:.6f} per GB-s"
         if b.gb_seconds is not None and b.memory_gb is not None and b.price_per_gb_second is not None else "—"),
        ("Price source", b.price_source or "—"),
    ]
    if b.converged is False:
        rows.append(("Note", f"the solver stopped at its iteration limit ({b.iterations}) before converging"))
    return rows


def hosting_usd(report: RunReport) -> float | None:
    """Hosting cost so far: deployment hours x price per hour, when both are known."""
    cost = report.cost
    if cost.hosting_usd_per_hour is None or cost.hosting_hours is None:
        return None
    return cost.hosting_usd_per_hour * cost.hosting_hours


def budget_lines(report: RunReport) -> list[tuple[str, str, str, float | None, bool]]:
    """(what, estimate, limit, estimate/limit, over) for the token and dollar budgets that are set."""
    cost = report.cost
    out = []
    if cost.budget_tokens is not None and cost.estimated_training_tokens is not None:
        ratio = cost.estimated_training_tokens / cost.budget_tokens if cost.budget_tokens else None
        out.append(("Training tokens", count(cost.estimated_training_tokens), count(cost.budget_tokens), ratio,
                    cost.estimated_training_tokens > cost.budget_tokens))
    if cost.budget_usd is not None and cost.estimated_training_usd is not None:
        ratio = cost.estimated_training_usd / cost.budget_usd if cost.budget_usd else None
        out.append(("Training cost", usd(cost.estimated_training_usd), usd(cost.budget_usd), ratio,
                    cost.estimated_training_usd > cost.budget_usd))
    return out


def headline(report: RunReport) -> str:
    """One sentence: what happened to this run."""
    if report.failure is not None and report.outcome in ("failed", "cancelled"):
        return f"{OUTCOME_TITLES[report.outcome]} during {report.failure.stage}: {report.failure.message}"
    if report.decision is not None:
        return report.decision.reason
    if report.outcome == "over_budget":
        over = [f"the estimated {what.lower()} ({estimate}) exceed{'s' if what.endswith('cost') else ''} the limit of {limit}"
                for what, estimate, limit, _, is_over in budget_lines(report) if is_over]
        if over:
            return "Stopped before uploading anything: " + ", and ".join(over) + "."
        return "Stopped before uploading anything: the run is over budget."
    if report.outcome == "in_progress":
        return f"The run is in progress (state: {report.state})."
    return f"{OUTCOME_TITLES.get(report.outcome, report.outcome)} (state: {report.state})."


def verdict_sentence(report: RunReport) -> str:
    """The headline without a leading "Promoted: " / "Rejected: " (the banner already says it)."""
    text = headline(report)
    for prefix in ("Promoted: ", "Rejected: "):
        if text.startswith(prefix):
            rest = text[len(prefix):]
            if rest[1:2].isalpha():  # "the candidate ..." -> "The candidate ..."; but "p = 0.33" stays lower case
                return rest[:1].upper() + rest[1:]
            return rest
    return text


def training_final_sentence(results: list[ResultsRow]) -> str | None:
    """Where training ended, from ``results.csv``: the last step's training loss and token accuracy, and the
    last full-validation figures when the job reports them (else the last per-step validation batch, which
    is one small batch and noisy, so it says so). None without results."""
    final = next((r for r in reversed(results) if r.train_loss is not None), None)
    if final is None:
        return None
    text = f"Final step {final.step}: training loss {loss(final.train_loss)}"
    if final.train_mean_token_accuracy is not None:
        text += f", training token accuracy {pct(final.train_mean_token_accuracy)}"
    full = next((r for r in reversed(results) if r.full_valid_loss is not None), None)
    batch = next((r for r in reversed(results) if r.valid_loss is not None), None)
    if full is not None:
        text += f"; full validation set (step {full.step}): loss {loss(full.full_valid_loss)}"
        if full.full_valid_mean_token_accuracy is not None:
            text += f", token accuracy {pct(full.full_valid_mean_token_accuracy)}"
    elif batch is not None:
        text += f"; last validation batch: loss {loss(batch.valid_loss)}"
        if batch.validation_mean_token_accuracy is not None:
            text += f", token accuracy {pct(batch.validation_mean_token_accuracy)}"
        text += " (one small batch, so noisy)"
    return text + "."
