"""Write the result of processing one inbound message in ONE transaction.

Lookups -> pure decide() -> writes, and the inbound row is marked done in the same
transaction, guarded by the worker's lease: either everything happened or nothing.

Messages of one thread can be stored out of order (pool processes, relays, an mbox
not sorted by date). A reply stored before its parent opens its own ticket; when the
parent comes, it adopts that ticket (merge: articles moved, the old ticket "merged")
unless a human has touched it. ``article_ref`` (one row per Message-ID, UNIQUE) finds
those tickets, and makes two messages of one thread stored concurrently collide: the
loser gets an IntegrityError, the worker retries it, and then it sees the winner.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from mailtriage.outbound.ack import NO_ACK, OutboundPolicy
from mailtriage.outbound.outbox import find_our_mail, note_automated_answer, queue_ack
from mailtriage.pipeline.analyse import Analysis
from mailtriage.pipeline.decide import Decision, Known, decide, message_key, thread_candidates
from mailtriage.pipeline.parse import ParsedMessage
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
    Ticket,
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


def apply_analysis(
    session: Session,
    inbound_id: int,
    owner: str | None,
    analysis: Analysis,
    *,
    freemail_domains: Collection[str] = (),
    outbound: OutboundPolicy | None = None,
) -> Applied:
    """``outbound``: how to acknowledge new tickets (None: no acknowledgements)."""
    parsed = analysis.parsed
    policy = outbound or NO_ACK
    known = lookup_known(session, parsed)
    our = None
    if analysis.loop.automated:  # an automatic answer to one of our mails?
        ids = (*thread_candidates(parsed), analysis.loop.original_message_id)
        our = find_our_mail(session, ids)
        if our is not None:
            known = replace(known, our_ticket_id=our.ticket_id, our_message_id=our.message_id)
    decision = decide(analysis.loop.automated, analysis.loop.reasons, known, analysis.loop.kind)
    ticket_id: int | None = None
    outcome = {
        "ignore": Outcome.IGNORED,
        "duplicate": Outcome.DUPLICATE,
        "append": Outcome.APPENDED,
        "create": Outcome.CREATED,
    }[decision.action]
    if decision.action == "create":
        ticket = _create_ticket(session, parsed, analysis, freemail_domains)
        ticket_id = ticket.id
        _add_article(session, ticket.id, inbound_id, parsed, dict(analysis.ocr_text))
        _event(session, ticket.id, inbound_id, "created", parsed, decision, analysis)
        queue_ack(session, ticket, inbound_id, parsed, analysis.classification, policy)
        _merge(session, decision, ticket.id, inbound_id)
    elif decision.action == "append":
        assert decision.ticket_id is not None
        ticket_id = _live_ticket(session, decision.ticket_id)
        _add_article(session, ticket_id, inbound_id, parsed, dict(analysis.ocr_text))
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(updated_at=utcnow()))
        _event(session, ticket_id, inbound_id, "article_added", parsed, decision, analysis)
        _merge(session, decision, ticket_id, inbound_id)
    elif decision.action == "ignore" and decision.note and our is not None:
        ticket_id = our.ticket_id  # noted, not reopened: status and updated_at stay
        note_automated_answer(session, ticket_id, inbound_id, parsed, analysis.loop, our, policy)
    elif decision.action == "duplicate":
        ticket_id = session.scalar(
            select(Article.ticket_id).where(Article.id == known.duplicate_article_id)
        )
    _finish(session, inbound_id, owner, parsed, analysis, outcome, ticket_id, decision)
    return Applied(outcome, ticket_id, decision)


def lookup_known(session: Session, parsed: ParsedMessage) -> Known:
    key = message_key(parsed)
    rows = session.execute(
        select(Article.id, Article.content_key).where(Article.message_key == key)
    ).all()
    duplicate = next((aid for aid, ck in rows if ck == parsed.content_key), None)
    other = any(ck != parsed.content_key for _, ck in rows)
    thread_ticket, thread_mid = None, None
    candidates = thread_candidates(parsed)
    if candidates:
        found = {
            key: ticket_id
            for key, ticket_id in session.execute(
                select(Article.message_key, Article.ticket_id)
                .where(Article.message_key.in_(candidates))
                .order_by(Article.id)
            )
        }
        for ident in candidates:
            if ident in found:
                thread_ticket, thread_mid = found[ident], ident
                break
    via_reference = False
    if candidates and thread_ticket is None and parsed.sender:
        # Not stored yet, but an earlier reply to it from the same sender is: join
        # that reply's ticket (a reply from someone else opens its own; the parent
        # adopts both when it comes).
        referring = {
            ident: ticket_id
            for ident, ticket_id in session.execute(
                select(ArticleRef.message_key, Article.ticket_id)
                .join(Article, Article.id == ArticleRef.article_id)
                .where(
                    ArticleRef.message_key.in_(candidates),
                    func.lower(Article.sender) == parsed.sender.lower(),
                )
                .order_by(Article.id.desc())  # the earliest wins
            )
        }
        for ident in candidates:
            if ident in referring:
                thread_ticket, thread_mid, via_reference = referring[ident], ident, True
                break
    early, kept = _early_replies(session, key)
    return Known(
        duplicate,
        other,
        thread_ticket,
        thread_mid,
        thread_via_reference=via_reference,
        message_key=key,
        early_reply_ticket_ids=early,
        early_reply_kept=kept,
    )


def _early_replies(
    session: Session, key: str
) -> tuple[tuple[int, ...], tuple[tuple[int, str], ...]]:
    """Tickets opened by a reply to ``key`` stored before it: (adoptable, kept with why).

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
        return (), ()
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
    adopt: list[int] = []
    kept: list[tuple[int, str]] = []
    for ticket_id in sorted(status):
        if status[ticket_id] != "new":
            kept.append((ticket_id, f"status {status[ticket_id]}"))
        elif ticket_id in human:
            kept.append((ticket_id, human[ticket_id]))
        else:
            adopt.append(ticket_id)
    return tuple(adopt), tuple(kept)


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


def _create_ticket(
    session: Session, parsed: ParsedMessage, analysis: Analysis, freemail: Collection[str]
) -> Ticket:
    organisation = None
    domain = parsed.sender_domain
    if domain and domain not in freemail:
        organisation = _get_or_create_organisation(session, domain)
    contact = _get_or_create_contact(session, parsed, organisation)
    c = analysis.classification
    ticket = Ticket(
        subject=parsed.subject[:2000],
        status="new",
        requester_id=contact.id if contact else None,
        organisation_id=organisation.id if organisation else None,
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
        session.add(org)
        session.flush()
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
            organisation_id=organisation.id if organisation else None,
        )
        session.add(contact)
        session.flush()
    return contact


def _add_article(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    parsed: ParsedMessage,
    ocr: dict[str, str] | None = None,  # attachment sha256 -> text read from the screenshot
) -> None:
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
        text=parsed.text,
        html=parsed.html,
        defects=list(parsed.defects),
    )
    article.attachments = [
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
    session.add(article)
    session.flush()
    _add_refs(session, article.id, (article.message_key, *thread_candidates(parsed)))


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
    session.add_all(
        ArticleRef(article_id=article_id, message_key=k, first=None if k in carried else True)
        for k in wanted
    )
    session.flush()


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
