"""How a report writes numbers, money, times and durations: one rule for the Markdown and HTML reports,
the demo's summary and the classic baseline's sentences (halves round up; a missing value is '—')."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def _half_up(value: float) -> float:
    # 377/400 = 94.25% must print as 94.3% everywhere (the gate's sentences use the same rule).
    return value + (1e-9 if value >= 0 else -1e-9)


def pct(value: float | None, digits: int = 1) -> str:
    """0.8267 -> '82.7%' (halves round up); None -> '—'."""
    return "—" if value is None else f"{_half_up(value * 100):.{digits}f}%"


def points(delta: float | None) -> str:
    """Accuracy delta as signed percentage points: 0.09 -> '+9.0 pts'."""
    return "—" if delta is None else f"{_half_up(delta * 100):+.1f} pts"


def ms(value: float | None) -> str:
    """Milliseconds with a thousands separator: 1665.2 -> '1,665 ms'."""
    return "—" if value is None else f"{value:,.0f} ms"


def usd(value: float | None) -> str:
    """Dollars: cents below $1,000, whole dollars above, '<$0.01' for tiny non-zero amounts."""
    if value is None:
        return "—"
    if 0 < value < 0.01:
        return "<$0.01"
    return f"${value:,.2f}" if value < 1000 else f"${value:,.0f}"


def usd_fine(value: float | None) -> str:
    """Dollars with two significant digits below a cent (0.00050194 -> '$0.00050'), else like ``usd``."""
    if value is None or value >= 0.01 or value <= 0:
        return usd(value)
    digits = -math.floor(math.log10(value)) + 1
    return f"${value:.{digits}f}"


def loss(value: float | None) -> str:
    """A loss to 3 decimals; tiny values (including the -0.0 some results.csv files hold) print as 0.000."""
    if value is None:
        return "—"
    return f"{0.0 if abs(value) < 0.0005 else value:.3f}"


def count(value: int | None) -> str:
    """Integer with a thousands separator; None -> '—'."""
    return "—" if value is None else f"{value:,}"


def p_value(value: float | None) -> str:
    """p-values people can read: 0.31, 0.049, 3e-15."""
    if value is None:
        return "—"
    return f"{value:.2g}" if value >= 0.001 else f"{value:.1g}"


def when(value: datetime | None) -> str:
    """UTC timestamp to the minute: '2026-03-02 14:05 UTC'."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def duration(start: datetime | None, end: datetime | None) -> str:
    """'2 h 14 min' between two timestamps; '—' if either is missing."""
    if start is None or end is None:
        return "—"
    minutes = int((end - start).total_seconds() // 60)
    hours, minutes = divmod(max(minutes, 0), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def ms_precise(value: float | None) -> str:
    """Milliseconds for fast things: 4.27 -> '4.3 ms'; None -> '—'."""
    return "—" if value is None else f"{value:,.1f} ms"
