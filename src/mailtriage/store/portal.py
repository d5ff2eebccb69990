"""What the customer pages read and write (the database edge of ``portal/``).

Reads return plain values of the *public* part of a ticket only: no internal notes, no
mail to agents, no addresses but the viewer's own (others are shown by name).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from mailtriage.store.models import (
    Article,
    Attachment,
    Contact,
    Event,
    Feedback,
    Organisation,
    Participant,
    PortalRequest,
    Ticket,
)
from mailtriage.store.queries import ticket_reference

# Images a browser shows inline (and Pillow thumbnails); anything else is a download.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

__all__ = [
    "INLINE_IMAGE_TYPES",
    "FeedbackResult",
    "count_requests",
    "feedback_of",
    "may_view",
    "organisation_tickets",
    "public_attachment",
    "public_ticket",
    "record_request",
    "save_feedback",
]


def may_view(
    session: Session,
    ticket_id: int,
    address: str,
    admins: Callable[[str | None], Collection[str]] = lambda _domain: (),
) -> bool:
    """True when ``address`` is the ticket's requester or a participant, or one of
    ``admins(domain)`` (the lower-cased addresses allowed to see the tickets of the
    ticket's organisation, ``PortalSettings.admins``)."""
    address = address.lower()
    row = session.execute(
        select(Contact.email, Organisation.domain)
        .select_from(Ticket)
        .outerjoin(Contact, Ticket.requester_id == Contact.id)
        .outerjoin(Organisation, Ticket.organisation_id == Organisation.id)
        .where(Ticket.id == ticket_id)
    ).first()
    if row is None:
        return False
    if (row.email or "").lower() == address or address in admins(row.domain):
        return True
    return (
        session.scalar(
            select(func.count())
            .select_from(Participant)
            .where(Participant.ticket_id == ticket_id, Participant.address == address)
        )
        or 0
    ) > 0


def requester_of(session: Session, ticket_id: int) -> str | None:
    """The requester's address of the ticket (None: no such ticket, or no requester)."""
    return session.scalar(
        select(Contact.email)
        .join(Ticket, Ticket.requester_id == Contact.id)
        .where(Ticket.id == ticket_id)
    )


def _shown_name(name: str, address: str, viewer: str) -> str:
    """A name to show for the author of a mail: the name, or the viewer's own address,
    or a masked address (``a…@acme.de``): never someone else's whole address."""
    if name.strip():
        return name.strip()
    if address.lower() == viewer.lower():
        return address
    local, _, domain = address.partition("@")
    return f"{local[:1]}…@{domain}" if domain else "…"


def public_ticket(
    session: Session, ticket_id: int, prefix: str, viewer: str
) -> dict[str, Any] | None:
    """The public view of one ticket, or None when there is no such ticket."""
    ticket = session.scalar(
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .options(selectinload(Ticket.articles).selectinload(Article.attachments))
    )
    if ticket is None:
        return None
    articles = []
    for article in ticket.articles:
        if article.internal:
            continue
        outgoing = article.direction == "out"
        articles.append(
            {
                "outgoing": outgoing,
                # Our automatic mail (acknowledgement, feedback request, reminder): shown
                # by its subject only; its text carries links made for its recipient.
                "automatic": outgoing and not article.author,
                "author": article.sender_name.strip()
                if outgoing
                else _shown_name(article.sender_name, article.sender, viewer),
                "date": article.date or article.created_at,
                "subject": article.subject,
                "text": article.text,
                "attachments": [
                    {
                        "id": att.id,
                        "filename": att.filename,
                        "size": att.size,
                        "image": att.content_type in INLINE_IMAGE_TYPES,
                    }
                    for att in article.attachments
                ],
            }
        )
    return {
        "id": ticket.id,
        "reference": ticket_reference(prefix, ticket.id),
        "subject": ticket.subject,
        "status": ticket.status,
        "level": ticket.level,
        "language": ticket.language,
        "created_at": ticket.created_at,
        "updated_at": ticket.updated_at,
        "first_response_at": ticket.first_response_at,
        "resolved_at": ticket.resolved_at,
        "articles": articles,
        "row": ticket,
    }


def public_attachment(session: Session, ticket_id: int, attachment_id: int) -> Attachment | None:
    """An attachment of a public (not internal) article of ``ticket_id``, else None."""
    return session.scalar(
        select(Attachment)
        .join(Article, Attachment.article_id == Article.id)
        .where(
            Attachment.id == attachment_id,
            Article.ticket_id == ticket_id,
            Article.internal.is_(False),
        )
    )


def organisation_tickets(session: Session, domain: str, prefix: str) -> list[dict[str, Any]]:
    """The tickets of the organisation with ``domain``: open ones first, newest first."""
    last_update = (
        select(func.max(Article.created_at))
        .where(Article.ticket_id == Ticket.id, Article.internal.is_(False))
        .scalar_subquery()
    )
    rows = session.execute(
        select(Ticket, last_update)
        .join(Organisation, Ticket.organisation_id == Organisation.id)
        .where(Organisation.domain == domain.lower())
        .order_by(Ticket.id.desc())
    ).all()
    out = [
        {
            "id": t.id,
            "reference": ticket_reference(prefix, t.id),
            "subject": t.subject,
            "status": t.status,
            "level": t.level,
            "created_at": t.created_at,
            "last_update": last or t.updated_at,
            "row": t,
        }
        for t, last in rows
    ]
    done = ("resolved", "closed")
    return sorted(out, key=lambda t: t["status"] in done)  # stable: newest first within


@dataclass(frozen=True)
class FeedbackResult:
    saved: bool
    reason: str  # "new", "changed", "too late", "not resolved"


def feedback_of(session: Session, ticket_id: int) -> Feedback | None:
    return session.get(Feedback, ticket_id)


def save_feedback(
    session: Session,
    ticket_id: int,
    address: str,
    score: int,
    comment: str,
    source: str,
    now: datetime,
    change_window: timedelta,
) -> FeedbackResult:
    """Store (or change, within ``change_window`` of the first answer) the rating of a
    resolved or closed ticket, with a ``feedback`` event. The caller commits."""
    if not 1 <= score <= 5:
        raise ValueError(f"score out of range: {score}")
    status = session.scalar(select(Ticket.status).where(Ticket.id == ticket_id))
    if status not in ("resolved", "closed"):
        return FeedbackResult(False, "not resolved")
    comment = comment.replace("\x00", "").strip()[:4000]
    row = session.get(Feedback, ticket_id)
    if row is None:
        session.add(
            Feedback(
                ticket_id=ticket_id,
                address=address.lower(),
                score=score,
                comment=comment,
                source=source,
                created_at=now,
                updated_at=now,
            )
        )
        reason = "new"
    else:
        if now - row.created_at > change_window:
            return FeedbackResult(False, "too late")
        row.score, row.comment, row.source, row.updated_at = score, comment, source, now
        row.address = address.lower()
        reason = "changed"
    session.add(
        Event(
            ticket_id=ticket_id,
            kind="feedback",
            actor=address.lower(),
            detail={"score": score, "source": source, "comment": bool(comment), "how": reason},
            created_at=now,
        )
    )
    return FeedbackResult(True, reason)


def count_requests(
    session: Session, *, address: str | None, client: str | None, since: datetime
) -> int:
    """Sign-in requests since ``since`` by ``address`` or from ``client``."""
    stmt = select(func.count()).select_from(PortalRequest).where(PortalRequest.created_at >= since)
    if address is not None:
        stmt = stmt.where(PortalRequest.address == address.lower())
    if client is not None:
        stmt = stmt.where(PortalRequest.client == client)
    return session.scalar(stmt) or 0


def record_request(session: Session, address: str, client: str, sent: bool, now: datetime) -> None:
    session.add(
        PortalRequest(address=address.lower()[:320], client=client[:100], sent=sent, created_at=now)
    )


def feedback_report(session: Session, prefix: str, since: datetime | None) -> dict[str, Any]:
    """Counts, average and comments of the feedback given since ``since`` (all when
    None), in total and per level and per category of the tickets."""
    stmt = (
        select(Feedback, Ticket.level, Ticket.category)
        .join(Ticket, Feedback.ticket_id == Ticket.id)
        .order_by(Feedback.updated_at)
    )
    if since is not None:
        stmt = stmt.where(Feedback.updated_at >= since)
    rows = session.execute(stmt).all()

    def group(items: list[tuple[Feedback, str | None, str | None]]) -> dict[str, Any]:
        scores = [f.score for f, _, _ in items]
        return {
            "count": len(scores),
            "average": round(sum(scores) / len(scores), 2) if scores else None,
            "scores": {str(n): scores.count(n) for n in range(1, 6)},
            "comments": [
                {
                    "ticket": ticket_reference(prefix, f.ticket_id),
                    "score": f.score,
                    "comment": f.comment,
                }
                for f, _, _ in items
                if f.comment
            ],
        }

    by_level: dict[str, list[tuple[Feedback, str | None, str | None]]] = {}
    by_category: dict[str, list[tuple[Feedback, str | None, str | None]]] = {}
    items = [(f, level, category) for f, level, category in rows]
    for item in items:
        by_level.setdefault(item[1] or "none", []).append(item)
        by_category.setdefault(item[2] or "none", []).append(item)
    return {
        "since": since.isoformat() if since else None,
        "total": group(items),
        "by_level": {k: group(v) for k, v in sorted(by_level.items())},
        "by_category": {k: group(v) for k, v in sorted(by_category.items())},
    }
