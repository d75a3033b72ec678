"""Report charts as inline SVG strings (matplotlib, imported lazily: reports are built in a timer function).

Every function returns an ``<svg>`` element ready to paste into HTML: no XML prolog, no DOCTYPE, no
metadata, no namespace URLs, text kept as text (``svg.fonttype = none``) in a fixed font stack, and ids
salted per chart so several charts on one page never share an id. Output is deterministic for the same
input. Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no global state), so charts can be
drawn from several threads.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec

from shared.reporting.schema import ConfusionMatrix, ResultsRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter

_P = ParamSpec("_P")

ROLE_COLORS = {
    "base": "#9aa5b8",
    "incumbent": "#6d6ad8",
    "candidate": "#0f8f82",
    "production": "#0f8f82",
    "classic": "#c9822b",
}
INK = "#1f2633"
MUTED = "#6b7385"
GRID = "#e6e9ef"
FONT_STACK = ["DejaVu Sans", "Liberation Sans", "Arial", "sans-serif"]

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "visiontune",
    "font.family": "sans-serif",
    "font.sans-serif": FONT_STACK,
    "font.size": 9,
    "axes.edgecolor": "#c9ced8",
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlecolor": INK,
    "axes.titlelocation": "left",
    "axes.titlepad": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
    "figure.dpi": 72,
}


def _styled(name: str) -> Callable[[Callable[_P, str]], Callable[_P, str]]:
    """Run a chart function inside the report style (rcParams are read both when artists are created
    and when the SVG is written), restoring the caller's rcParams afterwards."""

    def wrap(function: Callable[_P, str]) -> Callable[_P, str]:
        @functools.wraps(function)
        def styled(*args: _P.args, **kwargs: _P.kwargs) -> str:
            import matplotlib

            # matplotlib types rc keys as a Literal of every rcParam name; these are plain str keys.
            style: dict[Any, Any] = {**_STYLE, "svg.hashsalt": f"visiontune-{name}"}
            with matplotlib.rc_context(style):
                return function(*args, **kwargs)

        return styled

    return wrap


def _figure(width: float, height: float) -> Figure:
    """A figure in the report style (inches; 1 in = 72 px in the SVG)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    # matplotlib numbers its groups per figure ("figure_1", "axes_1"): prefix every id and reference with
    # the chart's name so several charts on one page keep ids unique.
    prefix = matplotlib.rcParams["svg.hashsalt"] + "-"
    ids = set(re.findall(r'\sid="([^"]+)"', text))
    text = re.sub(
        r'(\sid="|url\(#|href="#)([^")]+)',
        lambda m: m.group(1) + (prefix + m.group(2) if m.group(2) in ids else m.group(2)),
        text,
    )
    # Responsive: keep the viewBox, drop fixed sizes; may grow to 1.5x its natural size, no more.
    width = re.search(r'<svg[^>]*?\swidth="([\d.]+)pt"', text)
    text = re.sub(r'(<svg[^>]*?)\s(width|height)="[\d.]+pt"', r"\1", text, count=1)
    text = re.sub(r'(<svg[^>]*?)\s(width|height)="[\d.]+pt"', r"\1", text, count=1)
    style = ' role="img" class="chart"'
    if width:
        style += f' style="max-width:{float(width.group(1)) * 1.5:.0f}px"'
    text = text.replace("<svg", "<svg" + style, 1)
    return text.strip()


def _shorten(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


@_styled("f1")
def per_class_f1_chart(
    labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]], *, title: str
) -> str:
    """Per-class F1, one row per label (top to bottom in ``labels`` order).

    ``series`` is ``(role, legend name, f1 per label)``; roles pick the colours. Up to 15 labels: grouped
    horizontal bars. More: a dot plot (one dot per model, joined by a line that is green where the last
    series beats the first and red where it is worse), which stays compact and shows the change.
    """
    import numpy as np

    n, k = len(labels), max(len(series), 1)
    positions = np.arange(n)
    if n <= 15:
        row = 0.13 * k + 0.12
        fig = _figure(10, max(1.6, 0.9 + row * n))
        ax = fig.add_subplot()
        bar = 0.8 / k
        for i, (role, name, values) in enumerate(series):
            ys = positions - 0.4 + bar * (i + 0.5)
            xs = [v if v is not None else 0.0 for v in values]
            ax.barh(ys, xs, height=bar * 0.92, color=ROLE_COLORS.get(role, MUTED), label=name, zorder=2)
    else:
        fig = _figure(10, max(1.6, 1.0 + 0.24 * n))
        ax = fig.add_subplot()
        first, last = series[0][2], series[-1][2]
        for y, a, b in zip(positions, first, last, strict=True):
            if a is not None and b is not None and len(series) > 1 and abs(b - a) > 1e-9:
                ax.plot([a, b], [y, y], color="#1f9d62" if b > a else "#c93c3c", linewidth=2.2, alpha=0.55,
                        zorder=2, solid_capstyle="round")
        for i, (role, name, values) in enumerate(series):
            pts = [(v, y) for v, y in zip(values, positions, strict=True) if v is not None]
            if pts:
                point_x, point_y = zip(*pts, strict=True)
                ax.scatter(point_x, point_y, s=46 if i == len(series) - 1 else 34, color=ROLE_COLORS.get(role, MUTED),
                           edgecolor="white", linewidth=0.8, label=name, zorder=3 + i)
        ax.yaxis.grid(True, zorder=0, linewidth=0.5)
    ax.set_yticks(positions, [_shorten(label) for label in labels])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"])
    ax.xaxis.grid(True, zorder=0)
    ax.tick_params(axis="y", length=0)
    ax.tick_params(axis="x", top=True, labeltop=n > 15)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_title(title)
    if len(series) > 1:
        fig.legend(loc="outside upper right", ncols=len(series))
    return _svg(fig)


@_styled("confusion")
def confusion_heatmap(confusion: ConfusionMatrix, *, title: str) -> str:
    """Heatmap of a (sub-)confusion matrix, coloured by the share of each truth row, counts written in
    the cells. Rows are truth, columns are answers; the last column is off-label / other."""
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    counts = np.asarray(confusion.matrix, dtype=float)
    rows, cols = counts.shape
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    cell = 0.34 if cols <= 12 else 0.3
    longest = max((len(_shorten(c, 24)) for c in [*confusion.labels, *confusion.columns]), default=4)
    margin = 0.6 + longest * 0.065
    fig = _figure(max(3.6, margin + cell * cols + 1.4), max(3.0, margin + cell * rows + 0.9))
    ax = fig.add_subplot()
    cmap = LinearSegmentedColormap.from_list("vt", ["#ffffff", "#d7efec", "#5fb8ad", "#0f6f66", "#093f3a"])
    image = ax.imshow(share, cmap=cmap, vmin=0, vmax=1, aspect="equal", interpolation="nearest")
    fontsize = 7.5 if cols <= 14 else 7
    for i in range(rows):
        for j in range(cols):
            if counts[i, j]:
                dark = share[i, j] > 0.55
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else INK)
    for j in range(cols):  # mark the diagonal so right answers read at a glance
        if j < rows and confusion.columns[j] == confusion.labels[j]:
            ax.add_patch(_rectangle(j - 0.5, j - 0.5, 1, 1))
    ax.set_xticks(range(cols), [_shorten(c, 24) for c in confusion.columns], rotation=55, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(range(rows), [_shorten(c, 24) for c in confusion.labels])
    ax.tick_params(length=0)
    ax.set_xlabel("answered", color=MUTED)
    ax.set_ylabel("truth", color=MUTED)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title)
    bar = fig.colorbar(image, ax=ax, shrink=0.5, aspect=18, pad=0.02)
    bar.set_ticks([0, 0.5, 1], labels=["0", "50%", "100%"])
    bar.outline.set_visible(False)
    bar.ax.tick_params(length=0)
    return _svg(fig)


def _rectangle(x: float, y: float, w: float, h: float) -> Rectangle:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor=INK, linewidth=0.6, alpha=0.35)


def _smooth(values: list[float], window: int) -> list[float]:
    import numpy as np

    if len(values) < window * 2 or window < 2:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window // 2, values[0]), values, np.full(window - 1 - window // 2, values[-1])])
    return list(np.convolve(padded, kernel, mode="valid"))


@_styled("training")
def training_curves(results: Sequence[ResultsRow]) -> str:
    """Two panels from ``results.csv``: loss and mean token accuracy against step, training (raw and
    smoothed), validation, and full validation when the job reports it."""
    fig = _figure(11, 3.4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    # (loss field, accuracy field, legend name, raw colour, smoothed colour, per-step batch metric?)
    # Per-step training and validation figures come from one small batch each, so they jump between 0
    # and 100% token accuracy: draw them faint and their moving average bold, or the noise hides the trend.
    series = [
        ("train_loss", "train_mean_token_accuracy", "training", "#9aa5b8", "#4a5468", True),
        ("valid_loss", "validation_mean_token_accuracy", "validation", "#7fcbc3", "#0f8f82", True),
        ("full_valid_loss", "full_valid_mean_token_accuracy", "full validation", "#d9822b", "#d9822b", False),
    ]
    trend_tops: list[float] = []
    for loss_field, acc_field, name, color, trend_color, noisy in series:
        for ax, field in ((loss_ax, loss_field), (acc_ax, acc_field)):
            points = [(r.step, getattr(r, field)) for r in results if getattr(r, field) is not None]
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            if noisy and len(values) >= 20:
                smoothed = _smooth(list(values), max(3, len(values) // 20))
                ax.plot(steps, values, color=color, linewidth=0.5, alpha=0.2)
                ax.plot(steps, smoothed, color=trend_color, linewidth=1.8, label=f"{name} (moving average)")
                if ax is loss_ax:
                    trend_tops.append(max(smoothed))
            elif len(points) <= 3:
                ax.plot(steps, values, color=color, linestyle="none", marker="D", markersize=5, label=name)
                if ax is loss_ax:
                    trend_tops.append(max(values))
            else:
                ax.plot(steps, values, color=trend_color, linewidth=1.6, marker="o", markersize=2.5, label=name)
                if ax is loss_ax:
                    trend_tops.append(max(values))
    if trend_tops:  # single-batch spikes (a loss of 28 on one image) must not flatten the curves to the floor
        loss_ax.set_ylim(bottom=0, top=max(trend_tops) * 1.3 or 1.0)
    loss_ax.set_title("Loss")
    acc_ax.set_title("Mean token accuracy")
    acc_ax.yaxis.set_major_formatter(_percent_formatter())
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("step", color=MUTED)
        ax.yaxis.grid(True)
        ax.set_axisbelow(True)
    handles, names = acc_ax.get_legend_handles_labels()
    if not handles:
        handles, names = loss_ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=len(handles))
    return _svg(fig)


def _percent_formatter() -> FuncFormatter:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v * 100:.0f}%")


@_styled("latency")
def latency_histogram(series: Sequence[tuple[str, str, Sequence[float]]]) -> str:
    """Overlaid latency histograms (ms), one per ``(role, legend name, samples)``, on shared bins, with
    each model's p50 and p95 marked."""
    import numpy as np

    present = [(role, name, np.asarray(samples, dtype=float)) for role, name, samples in series if len(samples)]
    fig = _figure(10, 3.2)
    ax = fig.add_subplot()
    everything = np.concatenate([s for _, _, s in present]) if present else np.asarray([0.0, 1.0])
    high = float(np.percentile(everything, 99.5)) if len(everything) > 20 else float(everything.max())
    low = float(everything.min())
    bins = np.linspace(low, max(high, low + 1), 41).tolist()
    for index, (role, name, samples) in enumerate(present):
        color = ROLE_COLORS.get(role, MUTED)
        clipped = np.clip(samples, low, bins[-1])
        ax.hist(clipped, bins=bins, color=color, alpha=0.16, zorder=2)
        ax.hist(clipped, bins=bins, histtype="step", color=color, linewidth=1.6, label=name, zorder=3)
        for q, style in ((50, "-"), (95, "--")):
            value = float(np.percentile(samples, q))
            ax.axvline(value, color=color, linestyle=style, linewidth=1.2, zorder=4)
            ax.annotate(f"{name} p{q}", (value, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(3, -3 - 11 * index), textcoords="offset points", fontsize=7.5, color=color, va="top")
    ax.set_xlabel("latency per request (ms; the slowest 0.5% drawn in the last bin)", color=MUTED)
    ax.set_ylabel("requests", color=MUTED)
    ax.yaxis.grid(True)
    ax.set_axisbelow(True)
    ax.set_title("Latency")
    if present:
        ax.legend(loc="upper right")
    return _svg(fig)


@_styled("history")
def accuracy_over_time(
    points: Sequence[tuple[datetime, float, bool, str]],
    *,
    regression_threshold: float,
    test_sets: Sequence[str | None] | None = None,
) -> str:
    """Production accuracy over time: ``(at, accuracy, regression, version)`` points, in time order, with
    regressions marked in red and a change of version shown as a labelled step. ``test_sets`` (one per
    point, same order) names the test split each point was measured on: the line is broken where it
    changes, with a dotted marker, because accuracies on two test sets are not a trend."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    fig = _figure(11, 3.2)
    ax = fig.add_subplot()
    order = sorted(range(len(points)), key=lambda i: points[i][0])
    sets = [test_sets[i] for i in order] if test_sets is not None else [None] * len(order)
    points = [points[i] for i in order]
    if points:
        times = [p[0] for p in points]
        values = [p[1] for p in points]
        start = 0
        for end in range(1, len(points) + 1):
            next_set = sets[end] if end < len(points) else None
            if end == len(points) or (next_set is not None and next_set != sets[end - 1]):
                # datetimes go through matplotlib's date units; its stubs accept only numbers here
                ax.plot(times[start:end], values[start:end], color=ROLE_COLORS["production"],  # type: ignore[arg-type]
                        linewidth=1.8, marker="o", markersize=4, zorder=3)
                if next_set is not None:
                    ax.axvline(times[end], color=MUTED, linestyle=":", linewidth=1.0, zorder=2)  # type: ignore[arg-type]
                    ax.annotate(f"test set {_shorten(next_set, 10)}", (times[end], 0.02), xycoords=("data", "axes fraction"),
                                xytext=(3, 0), textcoords="offset points", fontsize=7.5, color=MUTED)
                start = end
        bad = [(t, v) for t, v, regression, _ in points if regression]
        if bad:
            bad_times, bad_values = zip(*bad, strict=True)
            ax.scatter(bad_times, bad_values, s=70, facecolor="#d64545", edgecolor="white", linewidth=1.2, zorder=4,
                       label=f"regression (drop > {regression_threshold * 100:.1f} pts)")
            ax.legend(loc="lower left")
        previous = None
        for t, v, _, version in points:
            if version != previous:
                ax.annotate(_shorten(version, 14), (t, v), xytext=(0, 8), textcoords="offset points",
                            fontsize=7.5, color=MUTED, ha="center")
                previous = version
        low = min(values)
        ax.set_ylim(max(0.0, low - 0.08), min(1.0, max(values) + 0.06))
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.yaxis.set_major_formatter(_percent_formatter())
    ax.yaxis.grid(True)
    ax.set_axisbelow(True)
    ax.set_title("Production accuracy over time")
    return _svg(fig)


@_styled("counts")
def label_counts_chart(labels: Sequence[str], splits: Sequence[tuple[str, Sequence[int]]]) -> str:
    """Stacked horizontal bars of examples per label and split (for up to a few dozen labels)."""
    import numpy as np

    colors = {"train": "#0f8f82", "validation": "#6d6ad8", "test": "#d9822b"}
    n = len(labels)
    fig = _figure(10, max(1.4, 0.8 + 0.2 * n))
    ax = fig.add_subplot()
    left = np.zeros(n)
    for split, counts in splits:
        values = np.asarray(counts, dtype=float)
        ax.barh(np.arange(n), values, left=left, height=0.7, color=colors.get(split, MUTED), label=split, zorder=2)
        left += values
    ax.set_yticks(np.arange(n), [_shorten(label) for label in labels])
    ax.invert_yaxis()
    ax.xaxis.grid(True, zorder=0)
    ax.tick_params(axis="y", length=0)
    ax.set_title("Examples per label")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(splits), borderaxespad=0.2)
    return _svg(fig)
