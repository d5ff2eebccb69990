"""SLA arithmetic: the due time of the 24-hour promise, in the customer's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailtriage.outbound.sla import (
    due_at,
    format_due,
    offset_from_date_header,
    zone_for_customer,
    zone_from_spec,
)

BERLIN = "Europe/Berlin"


def test_due_is_calendar_hours_after_creation_in_utc() -> None:
    created = datetime(2026, 11, 2, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    assert due_at(created, 24) == datetime(2026, 11, 3, 8, 30, tzinfo=UTC)
    assert due_at(datetime(2026, 11, 2, 9, 30), 2.5) == datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "minutes"),
    [
        ("Mon, 02 Nov 2026 09:30:00 +0100", 60),
        ("Mon, 2 Nov 2026 09:30 -0530 (local)", -330),
        ("Mon, 02 Nov 2026 09:30:00 +0000", 0),
        ("Mon, 02 Nov 2026 09:30:00 -0000", None),  # RFC 5322: local time unknown
        ("Mon, 02 Nov 2026 09:30:00 GMT", 0),
        ("Mon, 02 Nov 2026 09:30:00 EST", -300),
        ("Mon, 02 Nov 2026 09:30:00 A", None),  # military zones mean nothing
        ("Mon, 02 Nov 2026 09:30:00 +9900", None),
        ("Mon, 02 Nov 2026 09:30:00 +0160", None),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_offset_from_date_header(header: str | None, minutes: int | None) -> None:
    assert offset_from_date_header(header) == minutes


WINTER = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
SUMMER = datetime(2026, 7, 2, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "at", "zone"),
    [
        (60, WINTER, BERLIN),  # CET: the configured zone, with its summer time rules
        (120, SUMMER, BERLIN),  # CEST
        (60, SUMMER, "+01:00"),  # London in summer: a fixed offset
        (0, WINTER, "+00:00"),
        (330, WINTER, "+05:30"),
        (-300, WINTER, "-05:00"),
        (None, WINTER, BERLIN),  # no usable offset: the configured zone
    ],
)
def test_zone_for_customer(offset: int | None, at: datetime, zone: str) -> None:
    assert zone_for_customer(offset, at, BERLIN) == zone


def test_an_unknown_fallback_zone_still_gives_the_fixed_offset() -> None:
    assert zone_for_customer(60, WINTER, "Mars/Olympus") == "+01:00"
    assert zone_from_spec("Mars/Olympus") is UTC
    assert zone_from_spec("+15:00") is UTC
    assert zone_from_spec("+05:30").utcoffset(None) == timedelta(hours=5, minutes=30)


def test_due_time_in_german_and_english() -> None:
    due = due_at(datetime(2026, 11, 2, 8, 30, tzinfo=UTC), 24)
    assert format_due(due, BERLIN, "de") == "Dienstag, 3. November 2026, 09:30 Uhr (MEZ)"
    assert format_due(due, BERLIN, "en") == "Tuesday, 3 November 2026, 09:30 (CET)"
    assert format_due(due, "+05:30", "en") == "Tuesday, 3 November 2026, 14:00 (UTC+05:30)"
    assert format_due(due, "+00:00", "de") == "Dienstag, 3. November 2026, 08:30 Uhr (UTC)"
    assert format_due(due, BERLIN, "fr") == "2026-11-03 09:30 (CET)"


def test_due_time_across_the_change_to_summer_time() -> None:
    # Written Saturday 10:00 CET; Berlin moves to CEST on Sunday 29 March 2026 at 02:00,
    # so 24 hours later it is 11:00 there. A fixed +01:00 would say 10:00.
    created = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    zone = zone_for_customer(60, created, BERLIN)
    assert zone == BERLIN
    due = due_at(created, 24)
    assert format_due(due, zone, "de") == "Sonntag, 29. März 2026, 11:00 Uhr (MESZ)"
    assert format_due(due, "+01:00", "de") == "Sonntag, 29. März 2026, 10:00 Uhr (UTC+01:00)"
