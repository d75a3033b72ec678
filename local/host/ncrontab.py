"""Six-field NCRONTAB schedules, as the Azure Functions timer trigger reads them.

``{second} {minute} {hour} {day} {month} {day-of-week}``, each field ``*``, a number, a range ``a-b``,
a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of those. Months and days of the week also take
English names (``JAN``, ``MON``; case-insensitive); Sunday is 0 (7 is accepted too). Like NCrontab (the
library the Functions host uses), a time matches only when *both* the day-of-month and the day-of-week
fields match. A ``hh:mm:ss`` TimeSpan (a fixed interval, App Service plans) is accepted as well.
Times are UTC, as on Azure unless ``WEBSITE_TIME_ZONE`` is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

# (name, lowest, highest, names mapped to values)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, {name: i + 1 for i, name in enumerate(MONTH_NAMES)}),
    ("day-of-week", 0, 7, {name: i for i, name in enumerate(DAY_NAMES)}),
)
_TIMESPAN_RE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})$")
_SEARCH_LIMIT = timedelta(days=366 * 5)


class ScheduleError(ValueError):
    """A schedule expression that is not valid NCRONTAB (the message says which field and why)."""


def _parse_value(text: str, field: str, names: dict[str, int], expression: str) -> int:
    key = text.upper()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ScheduleError(f"{expression!r}: {field} field: {text!r} is not a number or name")
    return int(text)


def _parse_field(text: str, index: int, expression: str) -> frozenset[int]:
    field, lowest, highest, names = _FIELDS[index]
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{expression!r}: {field} field has an empty list item")
        range_text, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(
                    f"{expression!r}: {field} field: step {step_text!r} must be a positive number"
                )
            step = int(step_text)
        if range_text == "*":
            start, end = lowest, highest
        elif "-" in range_text:
            start_text, _, end_text = range_text.partition("-")
            start = _parse_value(start_text, field, names, expression)
            end = _parse_value(end_text, field, names, expression)
        else:
            start = _parse_value(range_text, field, names, expression)
            end = highest if step_text else start  # "a/n" means from a to the end, every n
        if not (lowest <= start <= highest and lowest <= end <= highest):
            raise ScheduleError(f"{expression!r}: {field} field: {part!r} is outside {lowest}-{highest}")
        if start > end:
            raise ScheduleError(f"{expression!r}: {field} field: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    if index == 5 and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: ``next_after(t)`` gives the first firing time strictly after ``t``."""

    expression: str
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    days_of_week: frozenset[int] = frozenset()  # 0 = Sunday
    interval: timedelta | None = None  # set for a TimeSpan schedule

    def matches(self, moment: datetime) -> bool:
        """True when ``moment`` (to the second) is a firing time of a cron schedule."""
        if self.interval is not None:
            raise ScheduleError(f"{self.expression!r} is an interval, not a calendar schedule")
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.day in self.days
            and moment.month in self.months
            and (moment.isoweekday() % 7) in self.days_of_week
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after ``moment`` (naive times are taken as UTC)."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if self.interval is not None:
            return moment + self.interval
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + _SEARCH_LIMIT
        while candidate <= limit:
            if candidate.month not in self.months:
                year, month = (
                    (candidate.year + 1, 1)
                    if candidate.month == 12
                    else (candidate.year, candidate.month + 1)
                )
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif candidate.day not in self.days or (candidate.isoweekday() % 7) not in self.days_of_week:
                candidate = candidate.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
            elif candidate.minute not in self.minutes:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise ScheduleError(f"{self.expression!r} never fires (no match within five years)")


def parse_schedule(expression: str) -> Schedule:
    """Parse a six-field NCRONTAB expression (or a ``hh:mm:ss`` interval); raise ``ScheduleError``."""
    text = expression.strip()
    timespan = _TIMESPAN_RE.match(text)
    if timespan:
        hours, minutes, seconds = (int(g) for g in timespan.groups())
        interval = timedelta(hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0) or minutes > 59 or seconds > 59:
            raise ScheduleError(f"{expression!r}: not a usable hh:mm:ss interval")
        return Schedule(expression=expression, interval=interval)
    parts = text.split()
    if len(parts) != 6:
        hint = (
            " (Azure uses six fields: add the seconds first, e.g. '0 " + text + "')"
            if len(parts) == 5
            else ""
        )
        raise ScheduleError(
            f"{expression!r}: expected six fields {{second}} {{minute}} {{hour}} {{day}} {{month}} "
            f"{{day-of-week}}, got {len(parts)}{hint}"
        )
    fields = [_parse_field(part, i, expression) for i, part in enumerate(parts)]
    return Schedule(
        expression,
        seconds=fields[0],
        minutes=fields[1],
        hours=fields[2],
        days=fields[3],
        months=fields[4],
        days_of_week=fields[5],
    )
