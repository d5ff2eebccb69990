"""Business-time arithmetic (pure): when a target is due, how much of it has run.

A :class:`BusinessCalendar` is a time zone, working hours per weekday and public
holidays (a country and state from the ``holidays`` library, plus extra dates). The
clock runs only inside working hours and outside pauses (waiting for the customer);
:data:`ALWAYS` runs around the clock (calendar time). Working hours are local wall
time, so on the days summer time starts or ends a working day is still 08:00-18:00
local (and a 24-hour calendar day is 23 or 25 hours long).

Every datetime in and out is timezone-aware; results are UTC.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "ALWAYS",
    "BusinessCalendar",
    "Pause",
    "active_intervals",
    "due_at",
    "elapsed",
    "library_holidays",
    "use_holiday_source",
]

# (start, end); end None: still paused (the clock stands until it ends).
Pause = tuple[datetime, datetime | None]
# Searching further than this for working time is a calendar without any.
_MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class BusinessCalendar:
    """``hours[weekday]`` (Monday 0): the (start, end) local working time of that
    weekday, or None for a day off; ``end`` ``time(0)`` means midnight at the end."""

    timezone: str = "Europe/Berlin"
    hours: tuple[tuple[time, time] | None, ...] = (
        *((time(8), time(18)),) * 5,
        None,
        None,
    )
    country: str = ""  # "DE"; "" = no public holidays
    subdiv: str = ""  # "BY"
    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.hours) != 7:
            raise ValueError("hours: expected 7 entries, Monday to Sunday")
        if not any(self.hours):
            raise ValueError("hours: no working time on any weekday")
        ZoneInfo(self.timezone)  # raises for an unknown zone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_holiday(self, day: date) -> bool:
        if day in self.extra_holidays:
            return True
        if not self.country:
            return False
        return day in _public_holidays(self.country, self.subdiv, day.year)

    def working_time(self, day: date) -> tuple[datetime, datetime] | None:
        """The working time of ``day`` (a local date) in UTC, or None (day off)."""
        span = self.hours[day.weekday()]
        if span is None or self.is_holiday(day):
            return None
        start, end = span
        zone = self.zone
        begin = datetime.combine(day, start, zone)
        finish = datetime.combine(day + timedelta(days=1) if end == time(0) else day, end, zone)
        if finish <= begin:
            return None
        return begin.astimezone(UTC), finish.astimezone(UTC)

    def warm_up(self) -> None:
        """Load the holiday tables of this year and the next (slow on first use)."""
        if self.country:
            year = datetime.now(UTC).year
            _public_holidays(self.country, self.subdiv, year)
            _public_holidays(self.country, self.subdiv, year + 1)

    def day_hours(self) -> float:
        """The length of the longest working day (what "one business day" means)."""
        spans = [
            (datetime.combine(date(2001, 1, 1), e) if e != time(0) else datetime(2001, 1, 2))
            - datetime.combine(date(2001, 1, 1), s)
            for s, e in (h for h in self.hours if h)
        ]
        return max(s.total_seconds() for s in spans) / 3600


ALWAYS = BusinessCalendar(timezone="UTC", hours=((time(0), time(0)),) * 7)


# The public holidays of (country, subdivision, year). The ``holidays`` library unless
# the edge of the app installed a faster source of the same dates (the disk cache in
# holiday_cache.py, which spares a start importing the library).
HolidaySource = Callable[[str, str, int], frozenset[date]]


def library_holidays(country: str, subdiv: str, year: int) -> frozenset[date]:
    """The dates the ``holidays`` library names for the region and year."""
    import holidays

    found = holidays.country_holidays(country, subdiv=subdiv or None, years=year)
    return frozenset(found.keys())


_source: HolidaySource = library_holidays


def use_holiday_source(source: HolidaySource | None) -> None:
    """Take the public holidays from ``source`` (None: the library again)."""
    global _source
    _source = source or library_holidays
    _public_holidays.cache_clear()


@functools.lru_cache(maxsize=64)
def _public_holidays(country: str, subdiv: str, year: int) -> frozenset[date]:
    return _source(country, subdiv, year)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name}: naive datetime, pass a timezone-aware one")
    return value.astimezone(UTC)


def _working(calendar: BusinessCalendar, start: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Working intervals (UTC) from ``start`` on, in order, clipped to ``start``."""
    day = start.astimezone(calendar.zone).date() - timedelta(days=1)
    idle = 0  # days in a row without working time
    while idle < _MAX_DAYS:
        span = calendar.working_time(day)
        day += timedelta(days=1)
        if span is None or span[1] <= start:
            idle += 1
            continue
        idle = 0
        yield max(span[0], start), span[1]
    raise ValueError(f"no working time within {_MAX_DAYS} days before {day.isoformat()}")


def _minus_pauses(
    begin: datetime, end: datetime, pauses: Sequence[tuple[datetime, datetime | None]]
) -> Iterator[tuple[datetime, datetime]]:
    """[begin, end) without the pauses (sorted, UTC, open end = forever)."""
    cursor = begin
    for p_start, p_end in pauses:
        stop = p_end if p_end is not None else datetime.max.replace(tzinfo=UTC)
        if stop <= cursor or p_start >= end:
            continue
        if p_start > cursor:
            yield cursor, p_start
        cursor = max(cursor, stop)
        if cursor >= end:
            return
    if cursor < end:
        yield cursor, end


def _normal_pauses(pauses: Sequence[Pause]) -> list[tuple[datetime, datetime | None]]:
    out = [
        (_aware(s, "pause start"), None if e is None else _aware(e, "pause end")) for s, e in pauses
    ]
    return sorted(out, key=lambda p: p[0])


def active_intervals(
    start: datetime, calendar: BusinessCalendar, pauses: Sequence[Pause] = ()
) -> Iterator[tuple[datetime, datetime]]:
    """The intervals (UTC) in which a clock started at ``start`` runs, in order;
    ends when a pause never ends."""
    start = _aware(start, "start")
    normal = _normal_pauses(pauses)
    open_pause = next((s for s, e in normal if e is None), None)
    for begin, end in _working(calendar, start):
        if open_pause is not None and begin >= open_pause:
            return
        yield from _minus_pauses(begin, end, normal)


def due_at(
    start: datetime,
    duration: timedelta,
    calendar: BusinessCalendar = ALWAYS,
    pauses: Sequence[Pause] = (),
) -> datetime | None:
    """When ``duration`` of the calendar's running time has passed since ``start``
    (UTC); None while a pause that has not ended stops the clock first."""
    if duration < timedelta(0):
        raise ValueError("duration: must not be negative")
    left = duration
    cursor = _aware(start, "start")
    for begin, end in active_intervals(start, calendar, pauses):
        cursor = begin
        if end - begin >= left:
            return begin + left
        left -= end - begin
    if left == timedelta(0):
        return cursor
    return None


def elapsed(
    start: datetime,
    end: datetime,
    calendar: BusinessCalendar = ALWAYS,
    pauses: Sequence[Pause] = (),
) -> timedelta:
    """The calendar's running time between ``start`` and ``end`` (0 when end <= start)."""
    start, end = _aware(start, "start"), _aware(end, "end")
    total = timedelta(0)
    if end <= start:
        return total
    for begin, stop in active_intervals(start, calendar, pauses):
        if begin >= end:
            break
        total += min(stop, end) - begin
    return total
