"""Due times in words (pure): how to say when an answer is due, in the customer's time.

The due time itself is the SLA policy's first-response target (``mailtriage.sla``,
business hours by default); ``due_at`` here is the calendar-hours fallback.
The customer's time zone is guessed from the UTC offset in the Date header of their
mail: when that offset is the configured zone's offset at that moment, we use the
configured zone (so a due time across a summer-time change is still right); otherwise a
fixed offset, which is right for the hour shown but knows nothing about summer time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mailtriage.sla import calendar as clock

__all__ = [
    "due_at",
    "format_due",
    "offset_from_date_header",
    "zone_for_customer",
    "zone_from_spec",
]

# "+0100", "-0530" at the end of an RFC 5322 date (after the time), optional comment.
_OFFSET_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?\s+([+-])(\d{2})(\d{2})\b")
# Obsolete zone names RFC 5322 still allows (4.3); military letters mean "unknown".
_OBS_ZONES = {
    "UT": 0, "GMT": 0, "Z": 0, "EST": -5 * 60, "EDT": -4 * 60, "CST": -6 * 60,
    "CDT": -5 * 60, "MST": -7 * 60, "MDT": -6 * 60, "PST": -8 * 60, "PDT": -7 * 60,
}  # fmt: skip
_OBS_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?\s+([A-Za-z]{1,3})\b")
_MAX_OFFSET_MINUTES = 14 * 60

_WEEKDAYS = {
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
_MONTHS = {
    "de": (
        "Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
        "September", "Oktober", "November", "Dezember",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June", "July", "August",
        "September", "October", "November", "December",
    ),
}  # fmt: skip
# German names of the abbreviations zoneinfo gives for Central Europe.
_ZONE_NAMES_DE = {"CET": "MEZ", "CEST": "MESZ"}


def due_at(created: datetime, hours: float) -> datetime:
    """``hours`` calendar hours after ``created`` (UTC): the promise when no SLA policy
    gives one (the arithmetic is ``mailtriage.sla``'s; business time is there too)."""
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    due = clock.due_at(created, timedelta(hours=hours), clock.ALWAYS)
    assert due is not None  # no pauses: calendar time always arrives
    return due


def offset_from_date_header(value: str | None) -> int | None:
    """The UTC offset in minutes written in a Date header, or None when there is none.

    ``-0000`` means "local time unknown" (RFC 5322 3.3), so it gives None, as do
    military zone letters and offsets beyond +-14 hours.
    """
    if not value:
        return None
    text = " ".join(value.split())
    match = _OFFSET_RE.search(text)
    if match:
        sign, hh, mm = match.groups()
        if sign == "-" and hh == "00" and mm == "00":
            return None
        minutes = int(hh) * 60 + int(mm)
        if int(mm) >= 60 or minutes > _MAX_OFFSET_MINUTES:
            return None
        return -minutes if sign == "-" else minutes
    obs = _OBS_RE.search(text)
    if obs and obs.group(1).upper() in _OBS_ZONES:
        return _OBS_ZONES[obs.group(1).upper()]
    return None


def zone_for_customer(offset_minutes: int | None, at: datetime, fallback: str) -> str:
    """A time zone spec for the customer: an IANA name or a fixed ``+HH:MM`` offset.

    ``at`` is when they wrote (the offset is compared with ``fallback``'s offset then).
    """
    if offset_minutes is None:
        return fallback
    try:
        zone = ZoneInfo(fallback)
    except (ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is not None:
        local = at.astimezone(zone).utcoffset()
        if local is not None and local == timedelta(minutes=offset_minutes):
            return fallback
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def zone_from_spec(spec: str) -> tzinfo:
    """``"Europe/Berlin"`` or ``"+05:30"`` -> tzinfo; anything unusable -> UTC."""
    match = re.fullmatch(r"([+-])(\d{2}):(\d{2})", spec)
    if match:
        sign, hh, mm = match.groups()
        delta = timedelta(hours=int(hh), minutes=int(mm))
        if delta > timedelta(hours=14) or int(mm) >= 60:
            return UTC
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(spec)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_label(local: datetime, spec: str, language: str) -> str:
    """What to print after the time: "MEZ", "CEST", "UTC+05:30"."""
    if re.fullmatch(r"[+-]\d{2}:\d{2}", spec):
        return "UTC" if spec in ("+00:00", "-00:00") else f"UTC{spec}"
    name = local.tzname() or "UTC"
    if name.startswith(("+", "-")):  # zones without an abbreviation
        return f"UTC{name}" if ":" in name else f"UTC{name[:3]}:{name[3:] or '00'}"
    return _ZONE_NAMES_DE.get(name, name) if language == "de" else name


def format_due(due: datetime, spec: str, language: str) -> str:
    """The due time as a sentence part in ``language`` ("de" or "en"; others: ISO)."""
    local = due.astimezone(zone_from_spec(spec))
    label = zone_label(local, spec, language)
    if language == "de":
        weekday = _WEEKDAYS["de"][local.weekday()]
        month = _MONTHS["de"][local.month - 1]
        return f"{weekday}, {local.day}. {month} {local.year}, {local:%H:%M} Uhr ({label})"
    if language == "en":
        weekday = _WEEKDAYS["en"][local.weekday()]
        month = _MONTHS["en"][local.month - 1]
        return f"{weekday}, {local.day} {month} {local.year}, {local:%H:%M} ({label})"
    return f"{local:%Y-%m-%d %H:%M} ({label})"
