"""A ticket's SLA clocks, computed from its history (pure).

``evaluate(facts, rules, now)`` replays what happened to a ticket (status changes,
replies, the notices already given) and says

* each clock (first response, next update after a customer reply, solution, L1 -> L2
  escalation): when it started, when it is due, whether it was met, paused, breached;
* the actions that are due at ``now`` and not yet taken (a warning, a breach notice,
  the escalation, a reminder to the customer, the auto-close);
* ``next_at``: when the next action falls due (what the ticket row is indexed by).

An action is taken once: the job writes an event for it (``sla_warning``,
``sla_breach``, ``escalated``, ``reminder_sent``, ``auto_closed``) and the next
evaluation finds it in ``facts.events``. The clocks pause while the ticket waits for
the customer (and while it is resolved); outside business hours when the policy
counts business time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mailtriage.sla.calendar import ALWAYS, Pause, due_at, elapsed
from mailtriage.sla.policy import Policy, SlaRules

__all__ = [
    "CLOCKS",
    "Action",
    "Clock",
    "Evaluation",
    "EventFact",
    "TicketFacts",
    "evaluate",
]

CLOCKS = ("first_response", "next_update", "solution", "escalation")
# Statuses in which the clocks stand still (waiting for the customer, resolved).
_PAUSED = ("waiting", "resolved")
_FINAL = ("closed", "merged")


@dataclass(frozen=True)
class EventFact:
    kind: str
    at: datetime
    actor: str = "system"
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketFacts:
    created_at: datetime
    status: str
    level: str | None = None
    priority: str | None = None
    domain: str | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    events: tuple[EventFact, ...] = ()
    # Inbound articles after the one that opened the ticket, and the agents' public
    # replies (their times, in order).
    customer_replies: tuple[datetime, ...] = ()
    agent_replies: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Clock:
    name: str
    cycle: int  # next_update: the customer reply it answers (1, 2, ...); else 0
    start: datetime
    target: timedelta
    business: bool
    due: datetime | None  # None: paused by a pause that has not ended
    met_at: datetime | None = None
    stopped: bool = False  # the ticket was resolved or closed before it was met
    warnings: tuple[datetime | None, ...] = ()

    def state(self, now: datetime) -> str:
        if self.met_at is not None:
            return "met" if self.due is None or self.met_at <= self.due else "met_late"
        if self.stopped:
            return "stopped"
        if self.due is None:
            return "paused"
        return "breached" if now >= self.due else "running"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "clock": self.name,
            "cycle": self.cycle,
            "state": self.state(now),
            "start": self.start.isoformat(),
            "target_hours": self.target.total_seconds() / 3600,
            "business_time": self.business,
            "due": self.due.isoformat() if self.due else None,
            "met_at": self.met_at.isoformat() if self.met_at else None,
            "warnings": [w.isoformat() if w else None for w in self.warnings],
        }


@dataclass(frozen=True)
class Action:
    kind: str  # sla_warning, sla_breach, escalated, reminder_sent, auto_closed
    at: datetime  # when it fell (or falls) due
    clock: str = ""
    cycle: int = 0
    index: int = 0  # which warning (0: the first fraction)
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.kind, self.clock, self.cycle, self.index)


@dataclass(frozen=True)
class Evaluation:
    policy: Policy
    clocks: tuple[Clock, ...]
    due: tuple[Action, ...]  # to take now
    next_at: datetime | None  # the earliest action not taken yet (may be <= now)
    pauses: tuple[Pause, ...] = ()
    level_locked: bool = False

    def clock(self, name: str) -> Clock | None:
        return next((c for c in self.clocks if c.name == name), None)

    def due_of(self, name: str) -> datetime | None:
        """The due time of a clock that is still running (breached included)."""
        c = self.clock(name)
        if c is None or c.met_at is not None or c.stopped:
            return None
        return c.due

    @property
    def earliest_due(self) -> datetime | None:
        """The earliest due time of the targets not met yet (what `--due` sorts by)."""
        dues = [self.due_of(n) for n in ("first_response", "next_update", "solution")]
        return min((d for d in dues if d is not None), default=None)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def status_timeline(facts: TicketFacts) -> list[tuple[datetime, str]]:
    """(since, status) from creation, from the ``status_changed`` events."""
    out = [(_utc(facts.created_at), "new")]
    for e in facts.events:
        if e.kind == "status_changed" and isinstance(e.detail.get("to"), str):
            out.append((_utc(e.at), str(e.detail["to"])))
    return out


def pauses_of(timeline: list[tuple[datetime, str]]) -> tuple[Pause, ...]:
    """The intervals in which the ticket waited for the customer or was resolved."""
    out: list[Pause] = []
    began: datetime | None = None
    for at, status in timeline:
        if status in _PAUSED and began is None:
            began = at
        elif status not in _PAUSED and began is not None:
            out.append((began, at))
            began = None
    if began is not None:
        out.append((began, None))
    return tuple(out)


def level_locked(facts: TicketFacts) -> bool:
    """Whether a person set the level (a rule never overrides that)."""
    for e in facts.events:
        if e.kind == "corrected":
            named = list(e.detail.get("set") or []) + list(e.detail.get("changed") or [])
            if "level" in named:
                return True
    return False


def _taken(facts: TicketFacts) -> dict[tuple[str, str, int, int], datetime]:
    taken = {}
    for e in facts.events:
        if e.kind in ("sla_warning", "sla_breach"):
            key = (
                e.kind,
                str(e.detail.get("clock", "")),
                int(e.detail.get("cycle", 0)),
                int(e.detail.get("index", 0)),
            )
            taken[key] = _utc(e.at)
        elif e.kind in ("escalated", "auto_closed"):
            taken[(e.kind, "", 0, 0)] = _utc(e.at)
        elif e.kind == "reminder_sent":
            taken[(e.kind, "", int(e.detail.get("cycle", 0)), 0)] = _utc(e.at)
    return taken


def _clock(
    name: str,
    cycle: int,
    start: datetime,
    target: timedelta,
    policy: Policy,
    rules: SlaRules,
    pauses: tuple[Pause, ...],
    met_at: datetime | None,
    stopped: bool,
    business: bool | None = None,
) -> Clock:
    counts_business = policy.business if business is None else business
    cal = rules.calendar if counts_business else ALWAYS
    # Each due_at walks the calendar from the start: escalation has no warnings.
    warnings = (
        ()
        if name == "escalation"
        else tuple(due_at(start, target * f, cal, pauses) for f in policy.warn_fractions)
    )
    return Clock(
        name=name,
        cycle=cycle,
        start=start,
        target=target,
        business=counts_business,
        due=due_at(start, target, cal, pauses),
        met_at=met_at,
        stopped=stopped,
        warnings=warnings,
    )


def evaluate(facts: TicketFacts, rules: SlaRules, now: datetime) -> Evaluation:
    """The ticket's clocks and what is due at ``now`` (see the module docstring)."""
    now = _utc(now)
    policy = rules.policy_for(facts.priority, facts.domain)
    timeline = status_timeline(facts)
    pauses = pauses_of(timeline)
    locked = level_locked(facts)
    created = _utc(facts.created_at)
    if facts.status in _FINAL:
        return Evaluation(policy, (), (), None, pauses, locked)
    done = facts.status == "resolved"
    clocks: list[Clock] = []
    first = policy.target("first_response")
    if first is not None:
        met = _utc(facts.first_response_at) if facts.first_response_at else None
        clocks.append(_clock("first_response", 0, created, first, policy, rules, pauses, met, done))
    update = policy.target("next_update")
    if update is not None and facts.first_response_at is not None:
        last_answer = max((_utc(a) for a in facts.agent_replies), default=None)
        replies = [_utc(c) for c in facts.customer_replies]
        open_replies = [c for c in replies if last_answer is None or c > last_answer]
        if open_replies:
            cycle = replies.index(open_replies[0]) + 1
            start = open_replies[0]
            clocks.append(
                _clock("next_update", cycle, start, update, policy, rules, pauses, None, done)
            )
    solution = policy.target("solution")
    if solution is not None:
        met = _utc(facts.resolved_at) if done and facts.resolved_at else None
        clocks.append(_clock("solution", 0, created, solution, policy, rules, pauses, met, False))
    escalation = rules.escalation_time(policy)
    escalate = facts.level == "L1" and not locked and not done and escalation is not None
    if escalate and escalation is not None:
        clocks.append(
            _clock("escalation", 0, created, escalation, policy, rules, pauses, None, False, True)
        )

    taken = _taken(facts)
    pending: list[Action] = []
    for c in clocks:
        if c.met_at is not None or c.stopped:
            continue
        if c.name == "escalation":
            if c.due is not None:
                # Until it is due the time spent is the target itself (that is what
                # due means); past it, walk the calendar.
                spent = c.target if now <= c.due else elapsed(created, now, rules.calendar, pauses)
                pending.append(
                    Action(
                        "escalated",
                        c.due,
                        detail={
                            "rule": f"L1 not resolved after {policy.escalate_after_days} "
                            f"business day(s) (policy {policy.name})",
                            "policy": policy.name,
                            "business_hours_elapsed": round(spent.total_seconds() / 3600, 2),
                        },
                    )
                )
            continue
        breach_due = c.due is not None and c.due <= now
        for i, (fraction, at) in enumerate(zip(policy.warn_fractions, c.warnings, strict=True)):
            if at is None or breach_due:
                continue  # not reached yet, or overtaken by the breach
            detail = {"fraction": fraction, "due": c.due.isoformat() if c.due else None}
            pending.append(Action("sla_warning", at, c.name, c.cycle, i, detail))
        if c.due is not None:
            pending.append(
                Action("sla_breach", c.due, c.name, c.cycle, 0, {"due": c.due.isoformat()})
            )
    if facts.status == "waiting" and timeline[-1][1] == "waiting":
        pending.extend(_waiting_actions(timeline[-1][0], policy, taken))
    todo = [a for a in pending if a.key not in taken]
    next_at = min((a.at for a in todo), default=None)
    return Evaluation(
        policy,
        tuple(clocks),
        tuple(a for a in todo if a.at <= now),
        next_at,
        pauses,
        locked,
    )


def _waiting_actions(
    since: datetime, policy: Policy, taken: Mapping[tuple[str, str, int, int], datetime]
) -> list[Action]:
    """The reminder and the auto-close of a ticket waiting for the customer since
    ``since`` (calendar days; the auto-close comes ``auto_close_days`` after the
    reminder was actually sent)."""
    out: list[Action] = []
    cycle = int(since.timestamp())
    detail = {"waiting_since": since.isoformat()}
    reminded = since
    if policy.reminder_days > 0:
        remind = Action(
            "reminder_sent",
            since + timedelta(days=policy.reminder_days),
            cycle=cycle,
            detail=detail | {"days": policy.reminder_days},
        )
        out.append(remind)
        sent = taken.get(remind.key)
        if sent is None:
            return out  # no auto-close before the reminder went out
        reminded = max(sent, remind.at)
    if policy.auto_close_days > 0:
        out.append(
            Action(
                "auto_closed",
                reminded + timedelta(days=policy.auto_close_days),
                detail=detail | {"days": policy.auto_close_days},
            )
        )
    return out
