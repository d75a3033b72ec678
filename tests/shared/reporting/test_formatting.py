"""How reports write numbers: halves round up, missing values are '—', money and times read naturally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from shared.reporting.formatting import (
    count,
    duration,
    loss,
    ms,
    ms_precise,
    p_value,
    pct,
    points,
    usd,
    usd_fine,
    when,
)


def test_percentages_and_points_round_halves_up() -> None:
    assert pct(377 / 400) == "94.3%"  # 94.25% exactly: the gate's sentences say 94.3% too
    assert pct(0.8267) == "82.7%"
    assert pct(0.5, digits=0) == "50%"
    assert points(0.09) == "+9.0 pts"
    assert points(-0.0125) == "-1.3 pts"
    assert pct(None) == points(None) == "—"


def test_money_reads_naturally_at_every_size() -> None:
    assert usd(12.345) == "$12.35"
    assert usd(1234.5) == "$1,234"
    assert usd(0.004) == "<$0.01"
    assert usd(0) == "$0.00"
    assert usd_fine(0.00050194) == "$0.00050"
    assert usd_fine(0.25) == "$0.25"
    assert usd(None) == usd_fine(None) == "—"


def test_counts_times_and_statistics() -> None:
    assert count(12345) == "12,345"
    assert ms(1665.2) == "1,665 ms"
    assert ms_precise(4.27) == "4.3 ms"
    assert loss(-0.0) == "0.000" and loss(0.12345) == "0.123"
    assert p_value(0.31) == "0.31" and p_value(0.049) == "0.049" and p_value(3e-15) == "3e-15"
    assert count(None) == ms(None) == ms_precise(None) == loss(None) == p_value(None) == "—"


def test_timestamps_are_utc_and_durations_whole_minutes() -> None:
    start = datetime(2026, 3, 2, 16, 5, tzinfo=timezone(timedelta(hours=2)))
    assert when(start) == "2026-03-02 14:05 UTC"
    assert when(None) == "—"
    assert duration(start, start + timedelta(hours=2, minutes=14, seconds=59)) == "2 h 14 min"
    assert duration(start, start + timedelta(minutes=7)) == "7 min"
    assert duration(start, start - timedelta(minutes=7)) == "0 min"
    assert duration(None, datetime.now(UTC)) == "—"
