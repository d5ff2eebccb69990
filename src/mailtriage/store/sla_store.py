"""A ticket's SLA clocks in the database: read its history for the pure
``sla.evaluate``, write the due times back, find the tickets with due work.

``refresh_sla`` runs in the transaction of every change to a ticket (the worker's
``store_analysis``, ``tickets set``, the SLA jobs themselves), so the indexed
``ticket.sla_next_at`` is always what the history says; ``due_ticket_ids`` is the
jobs' one indexed query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, bindparam, literal_column, null, select, true, union_all, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from mailtriage.sla import Evaluation, EventFact, SlaRules, TicketFacts, evaluate
from mailtriage.store.models import Article, Event, Organisation, Ticket, utcnow
from mailtriage.store.tables import table

__all__ = [
    "SLA_EVENTS",
    "due_ticket_ids",
    "due_tickets_query",
    "new_ticket_facts",
    "refresh_sla",
    "ticket_facts",
]

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


_TICKET = table(Ticket)
_EVENT = table(Event)
_ARTICLE = table(Article)
_ORGANISATION = table(Organisation)

_ROW = (
    select(
        _TICKET.c.created_at,
        _TICKET.c.status,
        _TICKET.c.level,
        _TICKET.c.priority,
        _ORGANISATION.c.domain,
        _TICKET.c.first_response_at,
        _TICKET.c.resolved_at,
        *(_TICKET.c[k] for k in _DUE_COLUMNS),
    )
    .select_from(_TICKET.outerjoin(_ORGANISATION, _ORGANISATION.c.id == _TICKET.c.organisation_id))
    .where(_TICKET.c.id == bindparam("ticket_id"))
    .subquery("row")
)
# The clocks' history: the SLA events (source 0) and the public articles (source 1:
# direction, author).
_HISTORY = union_all(
    select(
        literal_column("0").label("source"),
        _EVENT.c.id.label("item"),
        _EVENT.c.kind.label("what"),
        _EVENT.c.created_at.label("at"),
        _EVENT.c.actor.label("who"),
        _EVENT.c.detail,
    ).where(_EVENT.c.ticket_id == bindparam("ticket_id"), _EVENT.c.kind.in_(SLA_EVENTS)),
    select(
        literal_column("1"),
        _ARTICLE.c.id,
        _ARTICLE.c.direction,
        _ARTICLE.c.created_at,
        _ARTICLE.c.author,
        null(),
    ).where(_ARTICLE.c.ticket_id == bindparam("ticket_id"), _ARTICLE.c.internal.is_(False)),
).subquery("history")
# Both in one query: the ticket's row repeated on each history item in the order
# written (one row without history; none when there is no such ticket).
_FACTS = (
    select(_ROW, _HISTORY)
    .select_from(_ROW.outerjoin(_HISTORY, true()))
    .order_by(_HISTORY.c.source, _HISTORY.c.item)
)
# updated_at is kept: recomputing the clocks is not a change of the ticket
_SET_DUE = (
    update(_TICKET)
    .where(_TICKET.c.id == bindparam("b_id"))
    .values(updated_at=_TICKET.c.updated_at, **{k: bindparam(k) for k in _DUE_COLUMNS})
)


def ticket_facts(session: Session, ticket_id: int) -> TicketFacts | None:
    found = _facts_and_due(session, ticket_id)
    return None if found is None else found[0]


def new_ticket_facts(
    created_at: datetime, level: str | None, priority: str | None, domain: str | None
) -> TicketFacts:
    """The facts of a ticket being created (its one inbound article, no SLA event):
    what :func:`ticket_facts` reads back once it is written."""
    return TicketFacts(
        created_at=created_at, status="new", level=level, priority=priority, domain=domain
    )


def due_values(ev: Evaluation) -> dict[str, datetime | None]:
    """The ticket columns (_DUE_COLUMNS) that hold an evaluation's due times."""
    return {
        "sla_first_response_due": ev.due_of("first_response"),
        "sla_next_update_due": ev.due_of("next_update"),
        "sla_solution_due": ev.due_of("solution"),
        "sla_escalation_due": ev.due_of("escalation"),
        "sla_due_at": ev.earliest_due,
        "sla_next_at": ev.next_at,
    }


def _facts_and_due(
    session: Session, ticket_id: int
) -> tuple[TicketFacts, tuple[datetime | None, ...]] | None:
    """The ticket's facts and its stored due times (_DUE_COLUMNS), or None."""
    session.flush()  # what the ORM holds back is history too (events, articles)
    conn = session.connection()
    rows = conn.execute(_FACTS, {"ticket_id": ticket_id}).all()
    if not rows:
        return None
    row = rows[0]
    events: list[EventFact] = []
    inbound: list[datetime] = []
    agent_replies: list[datetime] = []
    for r in rows:
        if r.source == 0:
            events.append(EventFact(r.what, r.at, r.who, dict(r.detail or {})))
        elif r.what == "in":
            inbound.append(r.at)
        elif r.what == "out" and r.who:
            agent_replies.append(r.at)
    facts = TicketFacts(
        created_at=row.created_at,
        status=row.status,
        level=row.level,
        priority=row.priority,
        domain=row.domain,
        first_response_at=row.first_response_at,
        resolved_at=row.resolved_at,
        events=tuple(events),
        customer_replies=tuple(inbound[1:]),
        agent_replies=tuple(agent_replies),
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
    values = due_values(ev)
    assert tuple(values) == _DUE_COLUMNS
    if stored != tuple(values.values()):
        session.connection().execute(_SET_DUE, {"b_id": ticket_id, **values})
        loaded = session.identity_map.get(identity_key(Ticket, ticket_id))
        if loaded is not None:  # a Ticket the session holds reads the new values
            session.expire(loaded, list(_DUE_COLUMNS))
    return ev


def due_tickets_query(now: datetime, limit: int) -> Select[int]:
    """The due-work scan of the SLA jobs (``due_ticket_ids`` runs it; bench/sla.py
    EXPLAINs it)."""
    return (
        select(Ticket.id)
        .where(Ticket.sla_next_at <= now)
        .order_by(Ticket.sla_next_at, Ticket.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def due_ticket_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Tickets whose next SLA action is due, earliest first, locked for this
    transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: another instance takes
    the others; SQLite's write lock at BEGIN serialises instances instead)."""
    return list(session.scalars(due_tickets_query(now, limit)))
