"""Facts for the pure pipeline: what the database knows about one message.

``lookup_conversation`` reads (never writes) and returns a frozen
:class:`~mailtriage.pipeline.conversation.ConversationFacts`; the pure
``conversation.match`` decides from it, and ``store.apply`` writes the decision.
All three run in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mailtriage.pipeline.conversation import (
    DEFAULT_POLICY,
    Candidate,
    ConversationFacts,
    ConversationPolicy,
    EarlyReply,
    OurMail,
    TicketFacts,
    hinted_ticket_ids,
    message_key,
    our_mail_candidates,
    thread_candidates,
)
from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.store.models import (
    Article,
    ArticleRef,
    Contact,
    Event,
    Participant,
    Ticket,
    utcnow,
)


def lookup_conversation(
    session: Session,
    parsed: ParsedMessage,
    loop: LoopVerdict,
    policy: ConversationPolicy = DEFAULT_POLICY,
    envelope_recipients: tuple[str, ...] = (),
) -> ConversationFacts:
    key = message_key(parsed)
    rows = session.execute(
        select(Article.id, Article.content_key).where(Article.message_key == key)
    ).all()
    duplicate = next((aid for aid, ck in rows if ck == parsed.content_key), None)
    other = any(ck != parsed.content_key for _, ck in rows)
    if loop.automated:
        # Automated mail never joins or opens a ticket: only our mail it answers counts.
        return ConversationFacts(
            message_key=key,
            duplicate_article_id=duplicate,
            same_id_other_content=other,
            our_mail=find_our_mail(session, our_mail_candidates(parsed, loop)),
        )
    if duplicate is not None:  # match() answers "duplicate" before it reads anything else
        return ConversationFacts(
            message_key=key, duplicate_article_id=duplicate, same_id_other_content=other
        )
    now = utcnow()
    candidates = _candidates(session, thread_candidates(parsed))
    recent, latest = _sender_tickets(session, parsed.sender, now, policy)
    ids = [
        *(c.ticket_id for c in candidates),
        *hinted_ticket_ids(parsed, policy, envelope_recipients),
        *([latest] if latest is not None else []),
    ]
    return ConversationFacts(
        message_key=key,
        duplicate_article_id=duplicate,
        same_id_other_content=other,
        candidates=candidates,
        early_replies=_early_replies(session, key),
        tickets=ticket_facts(session, ids),
        sender_recent_tickets=recent,
        sender_latest_ticket=latest,
        now=now,
    )


def _sender_tickets(
    session: Session, sender: str, now: datetime, policy: ConversationPolicy
) -> tuple[int, int | None]:
    """(tickets ``sender`` opened within the cap's window, the latest of them)."""
    if not sender or policy.new_tickets_per_address <= 0:
        return 0, None
    since = now - timedelta(minutes=policy.new_tickets_window_minutes)
    count, latest = session.execute(
        select(func.count(Ticket.id), func.max(Ticket.id))
        .join(Contact, Contact.id == Ticket.requester_id)
        .where(Contact.email == sender, Ticket.created_at >= since)
    ).one()
    return int(count or 0), latest


def _live(session: Session, ticket_id: int) -> int:
    """A merged ticket's successor (a chain of merges is short)."""
    for _ in range(20):
        status = session.scalar(select(Ticket.status).where(Ticket.id == ticket_id))
        if status != "merged":
            return ticket_id
        into = None
        for detail in session.scalars(
            select(Event.detail)
            .where(Event.ticket_id == ticket_id, Event.kind == "merged")
            .order_by(Event.id.desc())
        ):
            if isinstance((detail or {}).get("into"), int):
                into = detail["into"]
                break
        if into is None:
            return ticket_id
        ticket_id = into
    return ticket_id


def ticket_facts(session: Session, ticket_ids: Iterable[int]) -> tuple[TicketFacts, ...]:
    """Facts of each (live) ticket of ``ticket_ids``; unknown ids are left out."""
    live: dict[int, list[int]] = {}
    for ticket_id in dict.fromkeys(ticket_ids):
        live.setdefault(_live(session, ticket_id), []).append(ticket_id)
    if not live:
        return ()
    rows = session.execute(
        select(Ticket.id, Ticket.status, Ticket.resolved_at, Ticket.subject, Contact.email)
        .outerjoin(Contact, Contact.id == Ticket.requester_id)
        .where(Ticket.id.in_(list(live)))
    ).all()
    people: dict[int, list[str]] = {}
    for ticket_id, address in session.execute(
        select(Participant.ticket_id, Participant.address).where(
            Participant.ticket_id.in_(list(live))
        )
    ):
        people.setdefault(ticket_id, []).append(address)
    return tuple(
        TicketFacts(
            ticket_id=row.id,
            status=row.status,
            requester=row.email,
            participants=tuple(people.get(row.id, ())),
            resolved_at=row.resolved_at,
            subject=row.subject or "",
            merged_from=tuple(i for i in live[row.id] if i != row.id),
        )
        for row in rows
    )


def _candidates(session: Session, idents: tuple[str, ...]) -> tuple[Candidate, ...]:
    """Tickets holding one of ``idents`` (the latest article per Message-ID), in the
    order of ``idents``. Only when none holds one: tickets with an article that refers
    to one of them (earliest article first), which joins a reply to its sibling."""
    if not idents:
        return ()
    holding: dict[str, tuple[int, str]] = {
        ident: (ticket_id, sender or "")
        for ident, ticket_id, sender in session.execute(
            select(Article.message_key, Article.ticket_id, Article.sender)
            .where(Article.message_key.in_(idents))
            .order_by(Article.id)
        )
    }
    found = [
        Candidate(holding[i][0], i, "message", article_sender=holding[i][1])
        for i in idents
        if i in holding
    ]
    if not found:
        referring: dict[str, list[tuple[int, str]]] = {}
        for ident, ticket_id, sender in session.execute(
            select(ArticleRef.message_key, Article.ticket_id, Article.sender)
            .join(Article, Article.id == ArticleRef.article_id)
            .where(ArticleRef.message_key.in_(idents))
            .order_by(Article.id)
        ):
            referring.setdefault(ident, []).append((ticket_id, sender or ""))
        found = [
            Candidate(ticket_id, i, "reference", article_sender=sender)
            for i in idents
            for ticket_id, sender in referring.get(i, ())
        ]
    if not found:
        return ()
    requesters = dict(
        session.execute(
            select(Ticket.id, Contact.email)
            .join(Contact, Contact.id == Ticket.requester_id)
            .where(Ticket.id.in_({c.ticket_id for c in found}))
        ).all()
    )
    return tuple(
        Candidate(c.ticket_id, c.message_id, c.via, c.article_sender, requesters.get(c.ticket_id))
        for c in found
    )


def _early_replies(session: Session, key: str) -> tuple[EarlyReply, ...]:
    """Tickets opened by a reply to ``key`` stored before it, each adoptable or kept
    with why.

    A ticket counts when its first inbound article (the one its "created" event
    names) refers to ``key``; it is adoptable while it is "new" and no human changed
    it (no correction, no event by anyone but the system).
    """
    rows = session.execute(
        select(
            Article.ticket_id,
            Article.inbound_id,
            Ticket.status,
            Article.sender,
            Article.recipients,
            Article.cc,
        )
        .join(ArticleRef, ArticleRef.article_id == Article.id)
        .join(Ticket, Ticket.id == Article.ticket_id)
        .where(
            ArticleRef.message_key == key,
            Article.message_key != key,
            Article.direction == "in",
            Article.inbound_id.is_not(None),
        )
    ).all()
    if not rows:
        return ()
    ticket_ids = sorted({r.ticket_id for r in rows})
    opened = set(
        session.execute(
            select(Event.ticket_id, Event.inbound_id).where(
                Event.ticket_id.in_(ticket_ids), Event.kind == "created"
            )
        ).all()
    )
    status = {r.ticket_id: r.status for r in rows if (r.ticket_id, r.inbound_id) in opened}
    human: dict[int, str] = {}
    for ticket_id, kind, actor in session.execute(
        select(Event.ticket_id, Event.kind, Event.actor)
        .where(
            Event.ticket_id.in_(list(status)),
            or_(Event.kind == "corrected", Event.actor != "system"),
        )
        .order_by(Event.id)
    ):
        if ticket_id is not None:
            human.setdefault(ticket_id, f"{kind} by {actor}")
    who = {
        r.ticket_id: (r.sender or "", (*(r.recipients or ()), *(r.cc or ())))
        for r in rows
        if (r.ticket_id, r.inbound_id) in opened
    }
    out: list[EarlyReply] = []
    for ticket_id in sorted(status):
        sender, recipients = who[ticket_id]
        if status[ticket_id] != "new":
            kept: str | None = f"status {status[ticket_id]}"
        else:
            kept = human.get(ticket_id)
        out.append(EarlyReply(ticket_id, kept, sender, tuple(recipients)))
    return tuple(out)


def find_our_mail(session: Session, message_ids: Iterable[str | None]) -> OurMail | None:
    """The first of ``message_ids`` that is one of our outgoing articles."""
    ids = [m for m in dict.fromkeys(message_ids) if m]
    if not ids:
        return None
    rows = {
        key: (ticket_id, recipients)
        for key, ticket_id, recipients in session.execute(
            select(Article.message_key, Article.ticket_id, Article.recipients).where(
                Article.message_key.in_(ids), Article.direction == "out"
            )
        )
    }
    for ident in ids:
        if ident in rows:
            ticket_id, recipients = rows[ident]
            return OurMail(ticket_id, ident, tuple(recipients or ()))
    return None
