"""A ticket's SLA clocks in the database: read its history for the pure
``sla.evaluate``, write the due times back, find the tickets with due work.

``refresh_sla`` runs in the transaction of every change to a ticket (the worker's
``store_analysis``, ``tickets set``, the SLA jobs themselves), so the indexed
``ticket.sla_next_at`` is always what the history says; ``due_ticket_ids`` is the
jobs' one indexed query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailtriage.sla import Evaluation, EventFact, SlaRules, TicketFacts, evaluate
from mailtriage.store.models import Article, Event, Organisation, Ticket, utcnow

__all__ = ["SLA_EVENTS", "due_ticket_ids", "refresh_sla", "ticket_facts"]

# The events the clocks read (status changes, level corrections, what was sent).
SLA_EVENTS = (
    "status_changed",
    "corrected",
    "sla_warning",
    "sla_breach",
    "escalated",
    "reminder_sent",
    "auto_closed",
)


# The due times refresh_sla writes (read with the facts: written only when changed).
_DUE_COLUMNS = (
    "sla_first_response_due",
    "sla_next_update_due",
    "sla_solution_due",
    "sla_escalation_due",
    "sla_due_at",
    "sla_next_at",
)


def ticket_facts(session: Session, ticket_id: int) -> TicketFacts | None:
    found = _facts_and_due(session, ticket_id)
    return None if found is None else found[0]


def _facts_and_due(
    session: Session, ticket_id: int
) -> tuple[TicketFacts, tuple[datetime | None, ...]] | None:
    """The ticket's facts and its stored due times (_DUE_COLUMNS), or None."""
    row = session.execute(
        select(
            Ticket.created_at,
            Ticket.status,
            Ticket.level,
            Ticket.priority,
            Organisation.domain,
            Ticket.first_response_at,
            Ticket.resolved_at,
            *(getattr(Ticket, k) for k in _DUE_COLUMNS),
        )
        .outerjoin(Organisation, Organisation.id == Ticket.organisation_id)
        .where(Ticket.id == ticket_id)
    ).first()
    if row is None:
        return None
    events = tuple(
        EventFact(kind, at, actor, dict(detail or {}))
        for kind, at, actor, detail in session.execute(
            select(Event.kind, Event.created_at, Event.actor, Event.detail)
            .where(Event.ticket_id == ticket_id, Event.kind.in_(SLA_EVENTS))
            .order_by(Event.id)
        )
    )
    articles = session.execute(
        select(Article.direction, Article.author, Article.created_at)
        .where(Article.ticket_id == ticket_id, Article.internal.is_(False))
        .order_by(Article.id)
    ).all()
    inbound = [at for direction, _, at in articles if direction == "in"]
    facts = TicketFacts(
        created_at=row.created_at,
        status=row.status,
        level=row.level,
        priority=row.priority,
        domain=row.domain,
        first_response_at=row.first_response_at,
        resolved_at=row.resolved_at,
        events=events,
        customer_replies=tuple(inbound[1:]),
        agent_replies=tuple(
            at for direction, author, at in articles if direction == "out" and author
        ),
    )
    return facts, tuple(getattr(row, k) for k in _DUE_COLUMNS)


def refresh_sla(
    session: Session, ticket_id: int, rules: SlaRules, now: datetime | None = None
) -> Evaluation | None:
    """Recompute the ticket's due times from its history and store them."""
    found = _facts_and_due(session, ticket_id)
    if found is None:
        return None
    facts, stored = found
    ev = evaluate(facts, rules, now or utcnow())
    values = {
        "sla_first_response_due": ev.due_of("first_response"),
        "sla_next_update_due": ev.due_of("next_update"),
        "sla_solution_due": ev.due_of("solution"),
        "sla_escalation_due": ev.due_of("escalation"),
        "sla_due_at": ev.earliest_due,
        "sla_next_at": ev.next_at,
    }
    assert tuple(values) == _DUE_COLUMNS
    if stored != tuple(values.values()):
        # updated_at is kept: recomputing the clocks is not a change of the ticket
        session.execute(
            update(Ticket)
            .where(Ticket.id == ticket_id)
            .values(updated_at=Ticket.updated_at, **values)
            .execution_options(synchronize_session="fetch")
        )
    return ev


def due_ticket_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Tickets whose next SLA action is due, earliest first, locked for this
    transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: another instance takes
    the others; SQLite's write lock at BEGIN serialises instances instead)."""
    return list(
        session.scalars(
            select(Ticket.id)
            .where(Ticket.sla_next_at <= now)
            .order_by(Ticket.sla_next_at, Ticket.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
