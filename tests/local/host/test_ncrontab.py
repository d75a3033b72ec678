"""Six-field NCRONTAB parsing and next-occurrence arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.host.ncrontab import ScheduleError, parse_schedule


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def occurrences(expression: str, start: datetime, count: int) -> list[datetime]:
    schedule, found, moment = parse_schedule(expression), [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def test_every_five_minutes_on_the_minute():
    assert occurrences("0 */5 * * * *", at(2025, 1, 1, 10, 2, 30), 3) == [
        at(2025, 1, 1, 10, 5),
        at(2025, 1, 1, 10, 10),
        at(2025, 1, 1, 10, 15),
    ]


def test_daily_at_three_crosses_midnight_and_month_and_year():
    assert occurrences("0 0 3 * * *", at(2025, 12, 31, 3, 0, 0), 2) == [at(2026, 1, 1, 3), at(2026, 1, 2, 3)]


def test_every_ten_seconds_is_strictly_after():
    assert occurrences("*/10 * * * * *", at(2025, 1, 1, 0, 0, 10), 3) == [
        at(2025, 1, 1, 0, 0, 20),
        at(2025, 1, 1, 0, 0, 30),
        at(2025, 1, 1, 0, 0, 40),
    ]
    # sub-second start times round up to the next matching second
    assert parse_schedule("*/10 * * * * *").next_after(at(2025, 1, 1) + timedelta(microseconds=5)) == at(
        2025, 1, 1, 0, 0, 10
    )


def test_ranges_lists_and_steps():
    schedule = parse_schedule("5,35 10-12/2 9-17 * * *")
    assert schedule.seconds == {5, 35}
    assert schedule.minutes == {10, 12}
    assert schedule.hours == set(range(9, 18))
    assert occurrences("30 0 9-10 * * *", at(2025, 3, 1, 9, 0, 31), 2) == [
        at(2025, 3, 1, 10, 0, 30),
        at(2025, 3, 2, 9, 0, 30),
    ]
    assert parse_schedule("0 5/20 * * * *").minutes == {5, 25, 45}


def test_day_names_month_names_and_sunday_as_seven():
    # 2025-01-01 is a Wednesday; the next Monday 09:30 is 2025-01-06.
    assert occurrences("0 30 9 * * MON", at(2025, 1, 1), 2) == [at(2025, 1, 6, 9, 30), at(2025, 1, 13, 9, 30)]
    assert parse_schedule("0 0 0 * * mon-fri").days_of_week == {1, 2, 3, 4, 5}
    assert parse_schedule("0 0 0 * * 7").days_of_week == parse_schedule("0 0 0 * * SUN").days_of_week == {0}
    assert occurrences("0 0 0 1 FEB,Jun *", at(2025, 1, 15), 2) == [at(2025, 2, 1), at(2025, 6, 1)]


def test_day_of_month_and_day_of_week_must_both_match_like_ncrontab():
    # The 13th that is a Friday: 2025-06-13.
    assert parse_schedule("0 0 12 13 * FRI").next_after(at(2025, 1, 1)) == at(2025, 6, 13, 12)


def test_matches_and_leap_day():
    assert parse_schedule("0 0 3 * * *").matches(at(2025, 5, 5, 3))
    assert not parse_schedule("0 0 3 * * *").matches(at(2025, 5, 5, 3, 0, 1))
    assert parse_schedule("0 0 0 29 2 *").next_after(at(2025, 1, 1)) == at(2028, 2, 29)


def test_timespan_interval():
    assert parse_schedule("00:00:10").next_after(at(2025, 1, 1)) == at(2025, 1, 1, 0, 0, 10)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("*/5 * * * *", "six fields.*add the seconds"),
        ("60 * * * * *", "second field.*outside 0-59"),
        ("0 0 25 * * *", "hour field"),
        ("0 0 0 * 13 *", "month field"),
        ("0 0 0 * * FUNDAY", "not a number or name"),
        ("0 */0 * * * *", "step"),
        ("0 10-5 * * * *", "backwards"),
        ("0 1,,2 * * * *", "empty list item"),
        ("0 0 0 31 2 *", "never fires"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(expression: str, message: str):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expression).next_after(at(2025, 1, 1))
