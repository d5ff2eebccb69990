"""SLA policies (pure): targets per priority and organisation, and which one applies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailtriage.sla.calendar import ALWAYS, BusinessCalendar, due_at

__all__ = ["Policy", "SlaRules"]


@dataclass(frozen=True)
class Policy:
    """Targets in hours (0: no target); ``business``: they count business time.

    ``escalate_after_days``: an L1 ticket not resolved after this many business days
    goes to L2 (0: never). ``reminder_days``: a ticket waiting for the customer this
    many calendar days gets a reminder; ``auto_close_days`` after the reminder it is
    closed (0: neither / never)."""

    name: str = "default"
    priorities: tuple[str, ...] = ()  # empty: any priority
    domains: tuple[str, ...] = ()  # organisation domains; empty: any
    first_response_hours: float = 24.0
    next_update_hours: float = 24.0
    solution_hours: float = 0.0
    business: bool = True
    warn_fractions: tuple[float, ...] = (0.5, 0.8)
    escalate_after_days: int = 2
    reminder_days: float = 3.0
    auto_close_days: float = 4.0

    def matches(self, priority: str | None, domain: str | None) -> bool:
        if self.priorities and (priority or "normal") not in self.priorities:
            return False
        return not self.domains or (domain or "").lower() in self.domains

    def target(self, clock: str) -> timedelta | None:
        hours = {
            "first_response": self.first_response_hours,
            "next_update": self.next_update_hours,
            "solution": self.solution_hours,
        }[clock]
        return timedelta(hours=hours) if hours > 0 else None


@dataclass(frozen=True)
class SlaRules:
    """The calendar and the policies; the first policy that matches applies, else
    ``fallback``."""

    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    policies: tuple[Policy, ...] = ()
    fallback: Policy = field(default_factory=Policy)

    def policy_for(self, priority: str | None, domain: str | None) -> Policy:
        # An organisation's own policy wins over a general one.
        for wants_domain in (True, False):
            for policy in self.policies:
                if bool(policy.domains) == wants_domain and policy.matches(priority, domain):
                    return policy
        return self.fallback

    def calendar_of(self, policy: Policy) -> BusinessCalendar:
        return self.calendar if policy.business else ALWAYS

    def escalation_time(self, policy: Policy) -> timedelta | None:
        """N business days as business time (N times the longest working day)."""
        if policy.escalate_after_days <= 0:
            return None
        return timedelta(hours=policy.escalate_after_days * self.calendar.day_hours())

    def first_response(
        self, created: datetime, priority: str | None, domain: str | None
    ) -> tuple[datetime, float, bool] | None:
        """(due, hours, business time?) of a new ticket's first-response target (what
        the acknowledgement promises); None when its policy has no such target."""
        policy = self.policy_for(priority, domain)
        target = policy.target("first_response")
        if target is None:
            return None
        due = due_at(created, target, self.calendar_of(policy))
        assert due is not None  # no pauses: the clock always reaches its target
        return due, policy.first_response_hours, policy.business
