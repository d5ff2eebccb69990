"""``[sla]`` settings -> :class:`SlaRules` (pure; the config loader checked the values)."""

from __future__ import annotations

import functools
from datetime import date, time
from typing import TypeVar

from mailtriage.config import WEEKDAYS, SlaPolicySettings, SlaSettings, parse_hours
from mailtriage.sla.calendar import BusinessCalendar
from mailtriage.sla.policy import Policy, SlaRules

__all__ = ["calendar_from_settings", "rules_from_settings"]

T = TypeVar("T")


def _span(value: str) -> tuple[time, time] | None:
    parsed = parse_hours(value) if value else None
    if parsed is None:
        return None
    start, end = parsed
    end_time = time(0) if end == 24 * 60 else time(end // 60, end % 60)
    return time(start // 60, start % 60), end_time


def calendar_from_settings(sla: SlaSettings) -> BusinessCalendar:
    return BusinessCalendar(
        timezone=sla.timezone,
        hours=tuple(_span(getattr(sla.working_hours, day)) for day in WEEKDAYS),
        country=sla.holidays_country,
        subdiv=sla.holidays_subdiv if sla.holidays_country else "",
        extra_holidays=frozenset(date.fromisoformat(d) for d in sla.extra_holidays),
    )


def _or(own: T | None, default: T) -> T:
    return default if own is None else own


def _policy(sla: SlaSettings, p: SlaPolicySettings | None) -> Policy:
    """A ``[[sla.policies]]`` entry (None: the fallback), keys left out taken from [sla]."""
    p = p or SlaPolicySettings(name="default")
    return Policy(
        name=p.name,
        priorities=p.priorities,
        domains=tuple(d.lower() for d in p.domains),
        first_response_hours=_or(p.response_hours, sla.response_hours),
        next_update_hours=_or(p.next_update_hours, sla.next_update_hours),
        solution_hours=_or(p.solution_hours, sla.solution_hours),
        business=_or(p.business_time, sla.business_time),
        warn_fractions=_or(p.warn_at, sla.warn_at),
        escalate_after_days=_or(p.escalate_after_days, sla.escalate_after_days),
        reminder_days=_or(p.reminder_days, sla.reminder_days),
        auto_close_days=_or(p.auto_close_days, sla.auto_close_days),
    )


@functools.lru_cache(maxsize=8)
def rules_from_settings(sla: SlaSettings) -> SlaRules:
    """The calendar and the policies of ``[sla]``; built once per settings."""
    return SlaRules(
        calendar=calendar_from_settings(sla),
        policies=tuple(_policy(sla, p) for p in sla.policies),
        fallback=_policy(sla, None),
    )
