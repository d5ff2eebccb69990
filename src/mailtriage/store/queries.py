"""Read models for the CLI (and later the HTTP API): plain dicts, JSON-ready."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload

from mailtriage.pipeline.subject_tag import ticket_reference
from mailtriage.store.models import (
    Article,
    Attachment,
    Contact,
    Inbound,
    InboundStatus,
    Participant,
    Ticket,
    TicketLink,
)

_NUMBER_RE = re.compile(r"^(?:[A-Za-z]+-)?0*(\d+)$")


class NotFound(Exception):
    pass


def parse_ticket_number(text: str) -> int:
    """``DM-000123``, ``000123`` or ``123`` -> 123."""
    match = _NUMBER_RE.match(text.strip())
    if not match:
        raise NotFound(f"not a ticket number: {text!r} (expected e.g. DM-000123)")
    return int(match.group(1))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def list_tickets(
    session: Session,
    prefix: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    due: bool = False,
) -> list[dict[str, Any]]:
    """Newest first; ``due``: only tickets with a running SLA target, the earliest due
    (breached ones first) first."""
    stmt = ticket_list_query(status=status, limit=limit, due=due)
    return [
        _ticket_summary(ticket, prefix) | {"article_count": n_art, "attachment_count": n_att}
        for ticket, n_art, n_att in session.execute(stmt)
    ]


def ticket_list_query(
    *, status: str | None = None, limit: int | None = None, due: bool = False
) -> Select[Ticket, int, int]:
    """The query of ``list_tickets`` (bench/sla.py EXPLAINs it): tickets with their
    article and attachment counts."""
    article_count = (
        select(func.count(Article.id)).where(Article.ticket_id == Ticket.id).scalar_subquery()
    )
    attachment_count = (
        select(func.count(Attachment.id))
        .join(Article, Attachment.article_id == Article.id)
        .where(Article.ticket_id == Ticket.id)
        .scalar_subquery()
    )
    stmt = (
        select(Ticket, article_count, attachment_count)
        .options(selectinload(Ticket.requester), selectinload(Ticket.organisation))
        .order_by(Ticket.id.desc())
    )
    if due:
        stmt = stmt.where(Ticket.sla_due_at.is_not(None)).order_by(None)
        stmt = stmt.order_by(Ticket.sla_due_at, Ticket.id)
    if status:
        stmt = stmt.where(Ticket.status == status)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def _ticket_summary(ticket: Ticket, prefix: str) -> dict[str, Any]:
    return {
        "number": ticket_reference(prefix, ticket.id),
        "id": ticket.id,
        "subject": ticket.subject,
        "status": ticket.status,
        "requester": ticket.requester.email if ticket.requester else None,
        "requester_name": ticket.requester.name if ticket.requester else None,
        "organisation": ticket.organisation.domain if ticket.organisation else None,
        "level": ticket.level,
        "category": ticket.category,
        "priority": ticket.priority,
        "language": ticket.language,
        "confidence": ticket.confidence,
        "created_at": _iso(ticket.created_at),
        "updated_at": _iso(ticket.updated_at),
        "sla_due_at": _iso(ticket.sla_due_at),
    }


def show_ticket(
    session: Session, prefix: str, number: str, agent_names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One ticket with its conversation in order (in and out, internal notes marked),
    participants, links and events. ``agent_names``: lower-cased address -> name, to
    name the author of an outgoing article."""
    names = {k.lower(): v for k, v in (agent_names or {}).items()}
    ticket_id = parse_ticket_number(number)
    ticket = session.scalar(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .options(
            selectinload(Ticket.requester).selectinload(Contact.organisation),
            selectinload(Ticket.organisation),
            selectinload(Ticket.articles).selectinload(Article.attachments),
            selectinload(Ticket.events),
        )
    )
    if ticket is None:
        raise NotFound(f"no ticket {ticket_reference(prefix, ticket_id)}")
    inbound_ids = [a.inbound_id for a in ticket.articles if a.inbound_id]
    inbound = {
        row.id: row for row in session.scalars(select(Inbound).where(Inbound.id.in_(inbound_ids)))
    }
    articles = [_article(a, inbound.get(a.inbound_id or -1), names) for a in ticket.articles]
    return _ticket_summary(ticket, prefix) | {
        "assignee": ticket.assignee,
        "first_response_at": _iso(ticket.first_response_at),
        "resolved_at": _iso(ticket.resolved_at),
        "participants": _participants(session, ticket.id),
        "links": _links(session, prefix, ticket.id),
        "classification_reasons": ticket.classification_reasons or [],
        "article_count": len(articles),
        "attachment_count": sum(len(a["attachments"]) for a in articles),
        "articles": articles,
        "events": [
            {
                "kind": e.kind,
                "actor": e.actor,
                "created_at": _iso(e.created_at),
                "detail": e.detail,
            }
            for e in ticket.events
        ],
    }


def _participants(session: Session, ticket_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Participant)
        .where(Participant.ticket_id == ticket_id)
        .order_by(Participant.created_at, Participant.address)
    )
    return [{"address": p.address, "name": p.name, "role": p.role} for p in rows]


def _links(session: Session, prefix: str, ticket_id: int) -> list[dict[str, Any]]:
    """Tickets linked to this one, either way (a new ticket names the one it could not
    join; that one names the new ticket)."""
    rows = session.scalars(
        select(TicketLink)
        .where(or_(TicketLink.ticket_id == ticket_id, TicketLink.linked_ticket_id == ticket_id))
        .order_by(TicketLink.id)
    )
    return [
        {
            "ticket": ticket_reference(
                prefix, link.linked_ticket_id if link.ticket_id == ticket_id else link.ticket_id
            ),
            "reason": link.reason,
        }
        for link in rows
    ]


def _article(article: Article, inbound: Inbound | None, names: Mapping[str, str]) -> dict[str, Any]:
    author = article.author
    return {
        "direction": article.direction,
        "internal": bool(article.internal),
        "author": author,
        "author_name": names.get(author.lower(), "") if author else "",
        "sender": article.sender,
        "sender_name": article.sender_name,
        "to": article.recipients,
        "cc": article.cc,
        "subject": article.subject,
        "date": _iso(article.date),
        "message_id": article.message_id,
        "in_reply_to": article.in_reply_to,
        "text": article.text,
        "full_text": article.full_text if article.full_text is not None else article.text,
        "defects": article.defects,
        "source": inbound.source if inbound else None,
        "loop": {"kind": inbound.loop_kind, "reasons": inbound.loop_reasons} if inbound else None,
        "attachments": [
            {
                "filename": att.filename,
                "content_type": att.content_type,
                "size": att.size,
                "sha256": att.sha256,
                "is_inline": att.is_inline,
                "is_screenshot": att.is_screenshot,
                "content_id": att.content_id,
                "ocr_text": att.ocr_text,
                "purged": att.purged_at is not None,
            }
            for att in article.attachments
        ],
    }


def list_quarantine(session: Session, limit: int | None = None) -> list[dict[str, Any]]:
    stmt = (
        select(Inbound)
        .where(Inbound.status == InboundStatus.QUARANTINED)
        .order_by(Inbound.id.desc())
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_inbound(row, with_traceback=False) for row in session.scalars(stmt)]


def get_inbound(session: Session, inbound_id: int) -> Inbound:
    row = session.get(Inbound, inbound_id)
    if row is None:
        raise NotFound(f"no inbound message {inbound_id}")
    return row


def show_inbound(session: Session, inbound_id: int) -> dict[str, Any]:
    return _inbound(get_inbound(session, inbound_id), with_traceback=True)


def _inbound(row: Inbound, *, with_traceback: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row.id,
        "status": row.status,
        "source": row.source,
        "size": row.size,
        "raw_sha256": row.raw_sha256,
        "received_at": _iso(row.received_at),
        "attempts": row.attempts,
        "stage": row.stage,
        "reason": row.reason,
        "outcome": row.outcome,
        "message_id": row.message_id,
        "envelope": row.envelope,
        "purged_at": _iso(row.purged_at),
    }
    if with_traceback:
        data["traceback"] = row.traceback
        data["loop"] = {"kind": row.loop_kind, "reasons": row.loop_reasons}
    return data
