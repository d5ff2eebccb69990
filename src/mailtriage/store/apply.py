"""Write what the conversation decision says about one inbound message (writes only).

The worker runs ``store.lookups`` -> pure ``conversation.match`` -> :func:`apply_decision`
-> outbound mail in ONE transaction, and the inbound row is marked done in it,
guarded by the worker's lease: either everything happened or nothing.

Messages of one thread can be stored out of order (pool processes, relays, an mbox
not sorted by date). A reply stored before its parent opens its own ticket; when the
parent comes, it adopts that ticket (merge: articles moved, the old ticket "merged")
unless a human has touched it. ``article_ref`` (one row per Message-ID, UNIQUE) finds
those tickets, and makes two messages of one thread stored concurrently collide: the
loser gets an IntegrityError, the worker retries it, and then it sees the winner.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailtriage.pipeline.analyse import Analysis
from mailtriage.pipeline.conversation import Decision, message_key, thread_candidates
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.text import split_body
from mailtriage.store.models import (
    Article,
    ArticleRef,
    Attachment,
    Contact,
    Event,
    Inbound,
    InboundStatus,
    Organisation,
    Outcome,
    Participant,
    Ticket,
    TicketLink,
    utcnow,
)
from mailtriage.store.outbound_models import Outbox, OutboxStatus


class LeaseLost(Exception):
    """Another worker took this message over (our lease expired); our work is void."""


@dataclass(frozen=True)
class Applied:
    outcome: str
    ticket_id: int | None
    decision: Decision
    # A created ticket and its article: the caller's next writes use them without
    # loading them again (the session holds clean objects only weakly).
    ticket: Ticket | None = field(default=None, compare=False, repr=False)
    article_id: int | None = None


def apply_decision(
    session: Session,
    inbound_id: int,
    owner: str | None,
    analysis: Analysis,
    decision: Decision,
    *,
    freemail_domains: Collection[str] = (),
) -> Applied:
    """Create or append (merging early replies), and mark the inbound row done.

    Raises LeaseLost when another worker owns the row now (roll back)."""
    parsed = analysis.parsed
    ticket_id: int | None = None
    ticket: Ticket | None = None
    article_id: int | None = None
    outcome = {
        "ignore": Outcome.IGNORED,
        "duplicate": Outcome.DUPLICATE,
        "append": Outcome.APPENDED,
        "create": Outcome.CREATED,
    }[decision.action]
    if decision.action == "create":
        ticket = _create_ticket(session, parsed, analysis, freemail_domains, decision.subject)
        ticket_id = ticket.id
        article_id = _add_article(session, ticket.id, inbound_id, parsed, dict(analysis.ocr_text))
        _event(session, ticket.id, inbound_id, "created", parsed, decision, analysis)
        if decision.link_ticket_id is not None:
            _link(session, ticket.id, decision.link_ticket_id, decision.link_reason, inbound_id)
        _add_participants(session, ticket.id, decision.participants, inbound_id)
        _merge(session, decision, ticket.id, inbound_id)
    elif decision.action == "append" and decision.role == "agent":
        # An agent's mail: the caller (agent_mail.apply_agent_reply) writes it.
        assert decision.ticket_id is not None
        ticket_id = _live_ticket(session, decision.ticket_id)
    elif decision.action == "append":
        assert decision.ticket_id is not None
        ticket_id = _live_ticket(session, decision.ticket_id)
        _add_article(session, ticket_id, inbound_id, parsed, dict(analysis.ocr_text), reply=True)
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(updated_at=utcnow()))
        _event(session, ticket_id, inbound_id, "article_added", parsed, decision, analysis)
        if decision.status_change is not None:
            before, after, why = decision.status_change
            set_status(session, ticket_id, before, after, why, "customer", inbound_id)
        _add_participants(session, ticket_id, decision.participants, inbound_id)
        _merge(session, decision, ticket_id, inbound_id)
    elif decision.action == "ignore" and decision.note:
        ticket_id = decision.ticket_id  # noted, not reopened: status and updated_at stay
    elif decision.action == "duplicate":
        ticket_id = session.scalar(
            select(Article.ticket_id).where(Article.id == decision.duplicate_article_id)
        )
    _finish(session, inbound_id, owner, parsed, analysis, outcome, ticket_id, decision)
    return Applied(outcome, ticket_id, decision, ticket, article_id)


def _live_ticket(session: Session, ticket_id: int) -> int:
    """The ticket to append to, locked (PostgreSQL): a merged ticket's successor.

    The lock orders an append against a concurrent merge of the same ticket: whoever
    comes second sees what the first committed.
    """
    for _ in range(20):  # a chain of merges is short; never loop forever
        status = session.scalar(
            select(Ticket.status).where(Ticket.id == ticket_id).with_for_update()
        )
        into = _merged_into(session, ticket_id) if status == "merged" else None
        if into is None:
            return ticket_id
        ticket_id = into
    return ticket_id


def _merged_into(session: Session, ticket_id: int) -> int | None:
    for detail in session.scalars(
        select(Event.detail)
        .where(Event.ticket_id == ticket_id, Event.kind == "merged")
        .order_by(Event.id.desc())
    ):
        into = (detail or {}).get("into")
        if isinstance(into, int):
            return into
    return None


def _merge(session: Session, decision: Decision, into: int, inbound_id: int) -> list[int]:
    """Merge the tickets of early replies into ``into``: their articles (and so the
    attachments) move, each becomes "merged" with an event on both tickets, and an
    acknowledgement still waiting in the outbox is skipped (a sent one stays sent)."""
    merged: list[int] = []
    reason = decision.merge_reason or "merged"
    now = utcnow()
    for old in decision.merge_ticket_ids:
        if old == into:  # the append target was itself merged into this ticket
            continue
        # Guarded and locking: a ticket a human or another worker changed meanwhile
        # is left alone.
        result = session.execute(
            update(Ticket)
            .where(Ticket.id == old, Ticket.status == "new")
            .values(status="merged", updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            continue
        moved = session.execute(
            select(Article.id, Article.inbound_id).where(Article.ticket_id == old)
        ).all()
        session.execute(
            update(Article)
            .where(Article.ticket_id == old)
            .values(ticket_id=into)
            .execution_options(synchronize_session=False)
        )
        inbound_ids = [i for _, i in moved if i is not None]
        if inbound_ids:
            session.execute(
                update(Inbound)
                .where(Inbound.id.in_(inbound_ids))
                .values(ticket_id=into)
                .execution_options(synchronize_session=False)
            )
        mails = []
        for outbox_id, kind, status in session.execute(
            select(Outbox.id, Outbox.kind, Outbox.status).where(Outbox.ticket_id == old)
        ):
            if status == OutboxStatus.PENDING:
                session.execute(
                    update(Outbox)
                    .where(Outbox.id == outbox_id, Outbox.status == OutboxStatus.PENDING)
                    .values(
                        status=OutboxStatus.SKIPPED,
                        last_error=f"not sent: ticket merged into ticket {into} ({reason})",
                    )
                    .execution_options(synchronize_session=False)
                )
                status = OutboxStatus.SKIPPED
            mails.append({"outbox": outbox_id, "kind": kind, "status": status})
        session.add(
            Event(
                ticket_id=old,
                inbound_id=inbound_id,
                kind="merged",
                detail={
                    "into": into,
                    "reason": reason,
                    "articles": [a for a, _ in moved],
                    "outbox": mails,
                },
            )
        )
        session.add(
            Event(
                ticket_id=into,
                inbound_id=inbound_id,
                kind="merged",
                detail={"from": old, "reason": reason, "articles": [a for a, _ in moved]},
            )
        )
        merged.append(old)
    if merged:
        session.execute(
            update(Ticket)
            .where(Ticket.id == into)
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
        session.flush()
    return merged


def set_status(
    session: Session,
    ticket_id: int,
    before: str,
    after: str,
    why: str,
    actor: str,
    inbound_id: int | None,
    now: datetime | None = None,
) -> bool:
    """Move the ticket from ``before`` to ``after`` (guarded: only when it still is
    ``before``) with a ``status_changed`` event; ``resolved_at`` set on resolve.
    ``now``: the time to record (the SLA jobs' clock; default: the wall clock)."""
    now = now or utcnow()
    values: dict[str, object] = {"status": after, "updated_at": now}
    if after == "resolved":
        values["resolved_at"] = now
    result = session.execute(
        update(Ticket)
        .where(Ticket.id == ticket_id, Ticket.status == before)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.add(
        Event(
            ticket_id=ticket_id,
            inbound_id=inbound_id,
            kind="status_changed",
            actor=actor,
            detail={"from": before, "to": after, "why": why, "actor": actor},
            created_at=now,
        )
    )
    return True


def _link(
    session: Session, ticket_id: int, linked: int, reason: str | None, inbound_id: int
) -> None:
    """The new ticket ``ticket_id`` links to ``linked`` (event on the new ticket only:
    nothing is written on the old ticket's customer-visible side)."""
    session.add(
        TicketLink(
            ticket_id=ticket_id,
            linked_ticket_id=linked,
            reason=reason or "linked",
            inbound_id=inbound_id,
        )
    )
    session.add(
        Event(
            ticket_id=ticket_id,
            inbound_id=inbound_id,
            kind="linked",
            detail={"linked_ticket": linked, "reason": reason},
        )
    )


def _add_participants(
    session: Session,
    ticket_id: int,
    people: tuple[tuple[str, str, str], ...],
    inbound_id: int,
) -> None:
    if not people:
        return
    known = set(
        session.scalars(select(Participant.address).where(Participant.ticket_id == ticket_id))
    )
    for address, name, role in people:
        if address[:320] in known:
            continue
        known.add(address[:320])
        session.add(
            Participant(
                ticket_id=ticket_id,
                address=address[:320],
                name=name[:255],
                role=role,
                inbound_id=inbound_id,
            )
        )
    session.flush()


def _create_ticket(
    session: Session,
    parsed: ParsedMessage,
    analysis: Analysis,
    freemail: Collection[str],
    subject: str | None = None,
) -> Ticket:
    organisation = None
    domain = parsed.sender_domain
    if domain and domain not in freemail:
        organisation = _get_or_create_organisation(session, domain)
    contact = _get_or_create_contact(session, parsed, organisation)
    c = analysis.classification
    # One flush writes a new organisation, contact and the ticket; holding them here
    # spares the acknowledgement loading them again.
    ticket = Ticket(
        subject=(parsed.subject if subject is None else subject)[:2000],
        status="new",
        requester=contact,
        organisation=organisation,
        level=c.level if c else None,
        category=c.category if c else None,
        priority=c.priority if c else None,
        language=c.language if c else None,
        confidence=c.confidence if c else None,
        classification_reasons=list(c.reasons) if c else None,
    )
    session.add(ticket)
    session.flush()
    return ticket


def _get_or_create_organisation(session: Session, domain: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.domain == domain))
    if org is None:
        # A concurrent insert of the same domain fails the commit with an
        # IntegrityError; the worker retries and then finds this row.
        org = Organisation(domain=domain, name=domain)
        session.add(org)  # written with the ticket that names it
    return org


def _get_or_create_contact(
    session: Session, parsed: ParsedMessage, organisation: Organisation | None
) -> Contact | None:
    if not parsed.sender:
        return None
    contact = session.scalar(select(Contact).where(Contact.email == parsed.sender))
    if contact is None:
        contact = Contact(
            email=parsed.sender[:320],
            name=parsed.sender_name[:255],
            organisation=organisation,
        )
        session.add(contact)  # written with the ticket
    return contact


def _add_article(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    parsed: ParsedMessage,
    ocr: dict[str, str] | None = None,  # attachment sha256 -> text read from the screenshot
    *,
    reply: bool = False,
) -> int:
    """``reply``: the article's text is the new text (quoted history and signature
    split off), ``full_text`` the whole text (NULL when the same). Returns its id."""
    text, full_text = parsed.text, None
    if reply:
        new = split_body(parsed.text, parsed.subject).new_text
        if new and new != parsed.text:
            text, full_text = new, parsed.text
    article = Article(
        ticket_id=ticket_id,
        inbound_id=inbound_id,
        direction="in",
        sender=parsed.sender[:320],
        sender_name=parsed.sender_name[:255],
        recipients=list(parsed.to),
        cc=list(parsed.cc),
        reply_to=list(parsed.reply_to),
        subject=parsed.subject,
        date=parsed.date,
        message_key=message_key(parsed),
        message_id=parsed.message_id,
        in_reply_to=list(parsed.in_reply_to),
        references=list(parsed.references),
        content_key=parsed.content_key,
        text=text,
        full_text=full_text,
        html=parsed.html,
        defects=list(parsed.defects),
    )
    article.attachments = _attachments(parsed, ocr)
    session.add(article)
    session.flush()
    _add_refs(session, article.id, (article.message_key, *thread_candidates(parsed)))
    return article.id


def add_agent_article(
    session: Session,
    ticket_id: int,
    inbound_id: int | None,
    parsed: ParsedMessage,
    text: str,
    *,
    author: str,
    author_name: str,
    internal: bool,
    second: bool = False,
) -> int:
    """An agent's public reply (``direction="out"``, attachments kept) or internal note
    (``internal=True``, no attachments) from their mail; returns the article id."""
    article = Article(
        ticket_id=ticket_id,
        inbound_id=inbound_id,
        direction="out",
        internal=internal,
        author=author[:320],
        sender=author[:320],
        sender_name=author_name[:255],
        recipients=[],
        cc=[],
        reply_to=[],
        subject=parsed.subject,
        date=parsed.date,
        # One mail may give a public article and a note: the second one's key differs
        # (the first keeps the mail's own key, which finds a redelivered duplicate).
        message_key=message_key(parsed) + ("#note" if second else ""),
        message_id=parsed.message_id,
        in_reply_to=list(parsed.in_reply_to),
        references=list(parsed.references),
        content_key=parsed.content_key,
        text=text,
        full_text=None if text == parsed.text else parsed.text,
        html=None,
        defects=list(parsed.defects),
    )
    if not internal:
        article.attachments = _attachments(parsed)
    session.add(article)
    session.flush()
    return article.id


def _attachments(parsed: ParsedMessage, ocr: dict[str, str] | None = None) -> list[Attachment]:
    """The attachment rows of a message (their bytes are in the blob store);
    ``ocr``: attachment sha256 -> the text read from the screenshot."""
    return [
        Attachment(
            filename=att.filename,
            content_type=att.content_type[:255],
            size=att.size,
            sha256=att.sha256,
            content_id=att.content_id,
            is_inline=att.is_inline,
            is_screenshot=att.is_screenshot,
            width=att.width,
            height=att.height,
            ocr_text=(ocr or {}).get(att.sha256),
        )
        for att in parsed.attachments
    ]


def _add_refs(session: Session, article_id: int, keys: tuple[str, ...]) -> None:
    """The article's rows: ``first`` where no article carried the Message-ID before.
    Two messages of one thread stored at the same moment both claim ``first`` for the
    Message-ID they share: one fails with an IntegrityError, the worker retries it,
    and then it sees the other."""
    wanted = [k for k in dict.fromkeys(keys) if k and len(k) <= 1000]
    if not wanted:
        return
    carried = set(
        session.scalars(
            select(ArticleRef.message_key).where(
                ArticleRef.message_key.in_(wanted), ArticleRef.first.is_(True)
            )
        )
    )
    # written by the next flush (the next query's autoflush at the latest)
    session.add_all(
        ArticleRef(article_id=article_id, message_key=k, first=None if k in carried else True)
        for k in wanted
    )


def _event(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    kind: str,
    parsed: ParsedMessage,
    decision: Decision,
    analysis: Analysis,
) -> None:
    detail: dict[str, object] = {
        "message_id": parsed.message_id,
        "sender": parsed.sender,
        "reasons": list(decision.reasons),
    }
    if decision.warnings:
        detail["warnings"] = list(decision.warnings)
    if analysis.classification is not None and kind == "created":
        detail["classification"] = analysis.classification.to_dict()
    session.add(Event(ticket_id=ticket_id, inbound_id=inbound_id, kind=kind, detail=detail))


def _finish(
    session: Session,
    inbound_id: int,
    owner: str | None,
    parsed: ParsedMessage,
    analysis: Analysis,
    outcome: str,
    ticket_id: int | None,
    decision: Decision,
) -> None:
    stmt = update(Inbound).where(Inbound.id == inbound_id)
    if owner is not None:
        stmt = stmt.where(Inbound.lease_owner == owner, Inbound.status == InboundStatus.PROCESSING)
    result = session.execute(
        stmt.values(
            status=InboundStatus.DONE,
            outcome=outcome,
            ticket_id=ticket_id,
            message_id=parsed.message_id,
            loop_kind=analysis.loop.kind,
            loop_reasons=list(analysis.loop.reasons),
            warnings=list(decision.warnings) or None,
            lease_owner=None,
            lease_until=None,
            stage=None,
            reason=None,
            traceback=None,
            processed_at=utcnow(),
        ).execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise LeaseLost(f"inbound {inbound_id}: lease lost before commit")
