"""Business-time arithmetic of sla/ as tables: weekends, holidays, summer time, the
Friday 17:59 ticket, pauses (pure: no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mailtriage.sla import ALWAYS, BusinessCalendar, due_at, elapsed

BERLIN = ZoneInfo("Europe/Berlin")
CAL = BusinessCalendar(
    timezone="Europe/Berlin",
    country="DE",
    subdiv="BY",
    extra_holidays=frozenset({date(2026, 12, 24), date(2026, 12, 31)}),
)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("why", "start", "hours", "expected"),
    [
        ("inside one day", local(2026, 11, 2, 9, 0), 2, utc(2026, 11, 2, 10, 0)),
        ("24 business hours = Mon+Tue+4h", local(2026, 11, 2, 8, 0), 24, utc(2026, 11, 4, 11, 0)),
        ("Friday 17:59 skips the weekend", local(2026, 11, 6, 17, 59), 1, utc(2026, 11, 9, 7, 59)),
        ("arrives Saturday", local(2026, 11, 7, 10, 0), 1, utc(2026, 11, 9, 8, 0)),
        ("arrives before opening", local(2026, 11, 3, 6, 30), 1, utc(2026, 11, 3, 8, 0)),
        ("arrives after closing", local(2026, 11, 3, 19, 0), 1, utc(2026, 11, 4, 8, 0)),
        ("Ascension Day (BY)", local(2026, 5, 13, 17, 0), 2, utc(2026, 5, 15, 7, 0)),
        ("All Saints' Day is a Sunday", local(2026, 10, 30, 17, 0), 2, utc(2026, 11, 2, 8, 0)),
        ("Epiphany (BY only)", local(2026, 1, 5, 17, 0), 2, utc(2026, 1, 7, 8, 0)),
        ("extra holiday + Christmas", local(2026, 12, 23, 17, 0), 2, utc(2026, 12, 28, 8, 0)),
        ("summer time starts Sunday", local(2026, 3, 27, 17, 0), 2, utc(2026, 3, 30, 7, 0)),
        ("summer time ends Sunday", local(2026, 10, 23, 17, 0), 2, utc(2026, 10, 26, 8, 0)),
        ("zero duration at night", local(2026, 11, 3, 22, 0), 0, utc(2026, 11, 4, 7, 0)),
    ],
)
def test_due_at_business_time(why: str, start: datetime, hours: float, expected: datetime) -> None:
    assert due_at(start, timedelta(hours=hours), CAL) == expected, why


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        (local(2026, 11, 6, 17, 59), 24, utc(2026, 11, 7, 16, 59)),  # Sunday counts
        (local(2026, 3, 28, 12, 0), 24, utc(2026, 3, 29, 11, 0)),  # 23-hour Sunday: real hours
        (utc(2026, 10, 24, 12, 0), 48, utc(2026, 10, 26, 12, 0)),
    ],
)
def test_due_at_calendar_time(start: datetime, hours: float, expected: datetime) -> None:
    assert due_at(start, timedelta(hours=hours), ALWAYS) == expected


@pytest.mark.parametrize(
    ("why", "start", "end", "hours"),
    [
        ("over a weekend", local(2026, 11, 6, 17, 0), local(2026, 11, 9, 9, 0), 2),
        ("over Ascension Day", local(2026, 5, 13, 8, 0), local(2026, 5, 15, 18, 0), 20),
        ("a whole week", local(2026, 11, 2, 0, 0), local(2026, 11, 9, 0, 0), 50),
        ("night only", local(2026, 11, 2, 19, 0), local(2026, 11, 3, 7, 0), 0),
        ("end before start", local(2026, 11, 3, 12, 0), local(2026, 11, 3, 9, 0), 0),
        ("across summer time end", local(2026, 10, 23, 8, 0), local(2026, 10, 26, 18, 0), 20),
    ],
)
def test_elapsed(why: str, start: datetime, end: datetime, hours: float) -> None:
    assert elapsed(start, end, CAL) == timedelta(hours=hours), why


def test_pause_and_resume() -> None:
    start = local(2026, 11, 2, 9, 0)
    paused = [(local(2026, 11, 2, 10, 0), local(2026, 11, 2, 14, 0))]
    # 1 h before the pause, 2 h after it: 16:00 local
    assert due_at(start, timedelta(hours=3), CAL, paused) == utc(2026, 11, 2, 15, 0)
    assert elapsed(start, local(2026, 11, 2, 15, 0), CAL, paused) == timedelta(hours=2)
    # a pause over the weekend changes nothing on business time
    weekend = [(local(2026, 11, 6, 18, 0), local(2026, 11, 9, 8, 0))]
    assert due_at(local(2026, 11, 6, 17, 0), timedelta(hours=2), CAL, weekend) == utc(
        2026, 11, 9, 8, 0
    )
    # but it does on calendar time (the pause begins at 17:00 UTC, ends 07:00 UTC)
    assert due_at(utc(2026, 11, 6, 17, 0), timedelta(hours=2), ALWAYS, weekend) == utc(
        2026, 11, 9, 9, 0
    )


def test_a_pause_that_has_not_ended_stops_the_clock() -> None:
    start = local(2026, 11, 2, 9, 0)
    waiting = [(local(2026, 11, 2, 10, 0), None)]
    assert due_at(start, timedelta(hours=3), CAL, waiting) is None
    assert due_at(start, timedelta(minutes=30), CAL, waiting) == utc(2026, 11, 2, 8, 30)
    assert elapsed(start, local(2026, 11, 5, 9, 0), CAL, waiting) == timedelta(hours=1)


def test_working_hours_per_weekday_and_day_length() -> None:
    short_friday = BusinessCalendar(
        hours=(*((time(8), time(18)),) * 4, (time(8), time(12)), None, None)
    )
    assert due_at(local(2026, 11, 6, 11, 0), timedelta(hours=2), short_friday) == utc(
        2026, 11, 9, 8, 0
    )
    assert short_friday.day_hours() == 10
    assert ALWAYS.day_hours() == 24


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": (None,) * 7}, "no working time"),
        ({"hours": ((time(8), time(18)),) * 3}, "7 entries"),
        ({"timezone": "Mars/Olympus"}, "Mars"),
    ],
)
def test_bad_calendars(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(Exception, match=message):
        BusinessCalendar(**kwargs)  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        due_at(datetime(2026, 11, 2, 9, 0), timedelta(hours=1), CAL)
