"""Write the result of processing one inbound message in ONE transaction.

Lookups -> pure decide() -> writes, and the inbound row is marked done in the same
transaction, guarded by the worker's lease: either everything happened or nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailtriage.outbound.ack import NO_ACK, OutboundPolicy
from mailtriage.outbound.outbox import find_our_mail, note_automated_answer, queue_ack
from mailtriage.pipeline.analyse import Analysis
from mailtriage.pipeline.decide import Decision, Known, decide, message_key, thread_candidates
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.store.models import (
    Article,
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
    elif decision.action == "append":
        assert decision.ticket_id is not None
        ticket_id = decision.ticket_id
        _add_article(session, ticket_id, inbound_id, parsed, dict(analysis.ocr_text))
        session.execute(update(Ticket).where(Ticket.id == ticket_id).values(updated_at=utcnow()))
        _event(session, ticket_id, inbound_id, "article_added", parsed, decision, analysis)
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
    return Known(duplicate, other, thread_ticket, thread_mid)


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
