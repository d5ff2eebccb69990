"""SLA clocks (pure): business calendars, policies and a ticket's due times.

No I/O and no database: ``store/sla_store.py`` feeds a ticket's history in and writes
the due times back; ``runners/sla_jobs.py`` acts on what is due.
"""

from __future__ import annotations

from mailtriage.sla.calendar import ALWAYS, BusinessCalendar, Pause, due_at, elapsed
from mailtriage.sla.clocks import (
    CLOCKS,
    Action,
    Clock,
    Evaluation,
    EventFact,
    TicketFacts,
    evaluate,
)
from mailtriage.sla.policy import Policy, SlaRules

__all__ = [
    "ALWAYS",
    "CLOCKS",
    "Action",
    "BusinessCalendar",
    "Clock",
    "Evaluation",
    "EventFact",
    "Pause",
    "Policy",
    "SlaRules",
    "TicketFacts",
    "due_at",
    "elapsed",
    "evaluate",
]
