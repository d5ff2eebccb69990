"""Facts for the pure pipeline: what the database knows about one message.

``lookup_conversation`` reads (never writes) and returns a frozen
:class:`~mailtriage.pipeline.conversation.ConversationFacts`; the pure
``conversation.match`` decides from it, and ``store.apply`` writes the decision.
All three run in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailtriage.pipeline.conversation import (
    Candidate,
    ConversationFacts,
    EarlyReply,
    OurMail,
    message_key,
    our_mail_candidates,
    thread_candidates,
)
from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.store.models import Article, ArticleRef, Contact, Event, Ticket


def lookup_conversation(
    session: Session, parsed: ParsedMessage, loop: LoopVerdict
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
    return ConversationFacts(
        message_key=key,
        duplicate_article_id=duplicate,
        same_id_other_content=other,
        candidates=_candidates(session, thread_candidates(parsed)),
        early_replies=_early_replies(session, key),
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
        select(Article.ticket_id, Article.inbound_id, Ticket.status)
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
    out: list[EarlyReply] = []
    for ticket_id in sorted(status):
        if status[ticket_id] != "new":
            out.append(EarlyReply(ticket_id, f"status {status[ticket_id]}"))
        else:
            out.append(EarlyReply(ticket_id, human.get(ticket_id)))
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
