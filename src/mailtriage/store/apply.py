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
from typing import Any

from sqlalchemy import Connection, bindparam, case, exists, insert, null, select, true, update
from sqlalchemy.orm import Session

from mailtriage.pipeline.analyse import Analysis
from mailtriage.pipeline.conversation import Decision, message_key, thread_candidates
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.text import split_body
from mailtriage.sla import SlaRules, evaluate
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
from mailtriage.store.sla_store import due_values, new_ticket_facts
from mailtriage.store.tables import table

# The hot path (every stored message) writes with prepared Core statements on the
# session's connection: no ORM objects, no unit-of-work flushes. The rare paths
# (merges, links, status changes, agents' articles) keep the ORM.
_TICKET = table(Ticket)
_ARTICLE = table(Article)
_ATTACHMENT = table(Attachment)
_REF = table(ArticleRef)
_EVENT = table(Event)
_PARTICIPANT = table(Participant)
_CONTACT = table(Contact)
_ORGANISATION = table(Organisation)
_INBOUND = table(Inbound)

_INSERT_TICKET = insert(_TICKET)
_INSERT_ARTICLE = insert(_ARTICLE)
_INSERT_ATTACHMENT = insert(_ATTACHMENT)
INSERT_EVENT = insert(_EVENT)
_INSERT_PARTICIPANT = insert(_PARTICIPANT)
_INSERT_CONTACT = insert(_CONTACT)
_INSERT_ORGANISATION = insert(_ORGANISATION)
# One row per Message-ID the article carries; ``first`` when no article carried it
# before (decided in the INSERT: one statement for all of an article's rows).
_INSERT_REF = insert(_REF).from_select(
    ["article_id", "message_key", "first"],
    select(
        bindparam("article_id", type_=_REF.c.article_id.type),
        bindparam("message_key", type_=_REF.c.message_key.type),
        case(
            (
                exists().where(
                    _REF.c.message_key == bindparam("message_key", type_=_REF.c.message_key.type),
                    _REF.c.first.is_(True),
                ),
                null(),
            ),
            else_=true(),
        ),
    ),
)
# Append: stamp the ticket, which locks it (PostgreSQL), unless it was merged.
_TOUCH_LIVE = (
    update(_TICKET)
    .where(_TICKET.c.id == bindparam("b_id"), _TICKET.c.status != "merged")
    .values(updated_at=bindparam("now"))
)
_TOUCH = (
    update(_TICKET).where(_TICKET.c.id == bindparam("b_id")).values(updated_at=bindparam("now"))
)
_INSERT_LINK = insert(table(TicketLink))
_KNOWN_PARTICIPANTS = select(_PARTICIPANT.c.address).where(
    _PARTICIPANT.c.ticket_id == bindparam("ticket_id")
)
_DUPLICATE_TICKET = select(_ARTICLE.c.ticket_id).where(_ARTICLE.c.id == bindparam("article_id"))
_FINISH_VALUES = {
    "status": InboundStatus.DONE,
    "lease_owner": None,
    "lease_until": None,
    "stage": None,
    "reason": None,
    "traceback": None,
}
_FINISH = update(_INBOUND).where(_INBOUND.c.id == bindparam("b_id"))
_FINISH_LEASED = _FINISH.where(
    _INBOUND.c.lease_owner == bindparam("b_owner"),
    _INBOUND.c.status == InboundStatus.PROCESSING,
)


class LeaseLost(Exception):
    """Another worker took this message over (our lease expired); our work is void."""


@dataclass(frozen=True)
class Requester:
    """The sender's contact and the organisation of their domain as found before the
    message is applied (None: not there yet), so that a new ticket need not look."""

    contact_id: int | None
    organisation_id: int | None


@dataclass(frozen=True)
class NewTicket:
    """A ticket this transaction created, as written: its acknowledgement, the agents'
    notices and its SLA clocks use these values without reading the row back."""

    id: int
    subject: str
    level: str | None
    category: str | None
    priority: str | None
    language: str | None
    classification_reasons: list[Any] | None
    created_at: datetime
    domain: str | None  # its organisation's domain
    # Early replies' tickets may have been merged into it (their articles moved here);
    # when not, it was written with its SLA due times (given the rules).
    adopted: bool = False


@dataclass(frozen=True)
class Applied:
    outcome: str
    ticket_id: int | None
    decision: Decision
    # A created ticket and its article: the caller's next writes use them without
    # loading them again.
    ticket: NewTicket | None = field(default=None, compare=False, repr=False)
    article_id: int | None = None


def apply_decision(
    session: Session,
    inbound_id: int,
    owner: str | None,
    analysis: Analysis,
    decision: Decision,
    *,
    freemail_domains: Collection[str] = (),
    sla: SlaRules | None = None,
    requester: Requester | None = None,
) -> Applied:
    """Create or append (merging early replies), and mark the inbound row done.
    ``sla``: the SLA rules; a new ticket that adopts no early replies is written with
    its due times (its clocks start with it). ``requester``: found by the lookups in
    this transaction (required to create a ticket).

    Raises LeaseLost when another worker owns the row now (roll back)."""
    parsed = analysis.parsed
    conn = session.connection()
    ticket_id: int | None = None
    ticket: NewTicket | None = None
    article_id: int | None = None
    outcome = {
        "ignore": Outcome.IGNORED,
        "duplicate": Outcome.DUPLICATE,
        "append": Outcome.APPENDED,
        "create": Outcome.CREATED,
    }[decision.action]
    if decision.action == "create":
        if requester is None:
            # (automated mail, which has none, never opens a ticket: conversation.match
            # ignores it; a caller that skipped the lookups is a bug, not the message's)
            raise ValueError("a new ticket needs the requester the lookups found")
        adopted = bool(decision.merge_ticket_ids)
        ticket = _create_ticket(
            conn,
            parsed,
            analysis,
            freemail_domains,
            requester,
            decision.subject,
            sla,
            adopted=adopted,
        )
        ticket_id = ticket.id
        article_id = _add_article(conn, ticket.id, inbound_id, parsed, dict(analysis.ocr_text))
        events = [_event(ticket.id, inbound_id, "created", parsed, decision, analysis)]
        if decision.link_ticket_id is not None:
            events.append(
                _link(conn, ticket.id, decision.link_ticket_id, decision.link_reason, inbound_id)
            )
        conn.execute(INSERT_EVENT, events)
        _add_participants(conn, ticket.id, decision.participants, inbound_id, new=True)
        _merge(session, decision, ticket.id, inbound_id)
    elif decision.action == "append" and decision.role == "agent":
        # An agent's mail: the caller (agent_mail.apply_agent_reply) writes it.
        assert decision.ticket_id is not None
        ticket_id = _live_ticket(session, decision.ticket_id)
    elif decision.action == "append":
        assert decision.ticket_id is not None
        ticket_id = _touch_live_ticket(session, decision.ticket_id)
        _add_article(conn, ticket_id, inbound_id, parsed, dict(analysis.ocr_text), reply=True)
        conn.execute(
            INSERT_EVENT,
            _event(ticket_id, inbound_id, "article_added", parsed, decision, analysis),
        )
        if decision.status_change is not None:
            before, after, why = decision.status_change
            set_status(session, ticket_id, before, after, why, "customer", inbound_id)
        _add_participants(conn, ticket_id, decision.participants, inbound_id)
        _merge(session, decision, ticket_id, inbound_id)
    elif decision.action == "ignore" and decision.note:
        ticket_id = decision.ticket_id  # noted, not reopened: status and updated_at stay
    elif decision.action == "duplicate":
        ticket_id = conn.execute(
            _DUPLICATE_TICKET, {"article_id": decision.duplicate_article_id}
        ).scalar()
    _finish(conn, inbound_id, owner, parsed, analysis, outcome, ticket_id, decision)
    return Applied(outcome, ticket_id, decision, ticket, article_id)


def _inserted_id(conn: Connection, statement: Any, values: dict[str, Any]) -> int:
    key = conn.execute(statement, values).inserted_primary_key
    assert key is not None
    return int(key[0])


def _touch_live_ticket(session: Session, ticket_id: int) -> int:
    """The ticket to append to (a merged ticket's successor), its ``updated_at`` set
    (which locks it on PostgreSQL, like :func:`_live_ticket`): one statement when it
    was not merged."""
    conn = session.connection()
    now = utcnow()
    if conn.execute(_TOUCH_LIVE, {"b_id": ticket_id, "now": now}).rowcount:
        return ticket_id
    ticket_id = _live_ticket(session, ticket_id)
    conn.execute(_TOUCH, {"b_id": ticket_id, "now": now})
    return ticket_id


def _live_ticket(session: Session, ticket_id: int) -> int:
    """The ticket to append to, locked (PostgreSQL): a merged ticket's successor.

    The lock orders an append against a concurrent merge of the same ticket: whoever
    comes second sees what the first committed.
    """
    for _ in range(20):  # a chain of merges is short; never loop forever
        status = session.scalar(
            select(Ticket.status).where(Ticket.id == ticket_id).with_for_update()
        )
        into = merged_into(session, ticket_id) if status == "merged" else None
        if into is None:
            return ticket_id
        ticket_id = into
    return ticket_id


def merged_into(session: Session, ticket_id: int) -> int | None:
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
    conn: Connection, ticket_id: int, linked: int, reason: str | None, inbound_id: int
) -> dict[str, Any]:
    """The new ticket ``ticket_id`` links to ``linked``; returns the event for the new
    ticket only (nothing is written on the old ticket's customer-visible side)."""
    conn.execute(
        _INSERT_LINK,
        {
            "ticket_id": ticket_id,
            "linked_ticket_id": linked,
            "reason": reason or "linked",
            "inbound_id": inbound_id,
        },
    )
    return event_row(ticket_id, inbound_id, "linked", {"linked_ticket": linked, "reason": reason})


def _add_participants(
    conn: Connection,
    ticket_id: int,
    people: tuple[tuple[str, str, str], ...],
    inbound_id: int,
    *,
    new: bool = False,
) -> None:
    """``new``: the ticket was created just now (it has no participants yet)."""
    if not people:
        return
    known: set[str] = set()
    if not new:
        known.update(conn.execute(_KNOWN_PARTICIPANTS, {"ticket_id": ticket_id}).scalars())
    rows = []
    for address, name, role in people:
        if address[:320] in known:
            continue
        known.add(address[:320])
        rows.append(
            {
                "ticket_id": ticket_id,
                "address": address[:320],
                "name": name[:255],
                "role": role,
                "inbound_id": inbound_id,
            }
        )
    if rows:
        conn.execute(_INSERT_PARTICIPANT, rows)


def _create_ticket(
    conn: Connection,
    parsed: ParsedMessage,
    analysis: Analysis,
    freemail: Collection[str],
    requester: Requester,
    subject: str | None = None,
    sla: SlaRules | None = None,
    *,
    adopted: bool = False,
) -> NewTicket:
    """``requester``: the sender's contact and organisation rows as the lookups found
    them in this transaction. ``sla``: write the due times with the ticket (unless it
    ``adopted`` early replies: their history changes the clocks)."""
    if adopted:
        sla = None
    domain = parsed.sender_domain
    wants_organisation = bool(domain) and domain not in freemail
    organisation_id, contact_id = requester.organisation_id, requester.contact_id
    if not wants_organisation:
        organisation_id = None
    if wants_organisation and organisation_id is None:
        # A concurrent insert of the same domain (or address, below) fails the commit
        # with an IntegrityError; the worker retries and then finds this row.
        organisation_id = _inserted_id(
            conn, _INSERT_ORGANISATION, {"domain": domain, "name": domain}
        )
    if parsed.sender and contact_id is None:
        contact_id = _inserted_id(
            conn,
            _INSERT_CONTACT,
            {
                "email": parsed.sender[:320],
                "name": parsed.sender_name[:255],
                "organisation_id": organisation_id,
            },
        )
    c = analysis.classification
    now = utcnow()
    values: dict[str, Any] = {
        "subject": (parsed.subject if subject is None else subject)[:2000],
        "status": "new",
        "requester_id": contact_id,
        "organisation_id": organisation_id,
        "level": c.level if c else None,
        "category": c.category if c else None,
        "priority": c.priority if c else None,
        "language": c.language if c else None,
        "confidence": c.confidence if c else None,
        "classification_reasons": list(c.reasons) if c else None,
        "created_at": now,
        "updated_at": now,
    }
    organisation_domain = domain if wants_organisation else None
    if sla is not None:
        facts = new_ticket_facts(now, values["level"], values["priority"], organisation_domain)
        values |= due_values(evaluate(facts, sla, now))
    ticket_id = _inserted_id(conn, _INSERT_TICKET, values)
    return NewTicket(
        id=ticket_id,
        subject=values["subject"],
        level=values["level"],
        category=values["category"],
        priority=values["priority"],
        language=values["language"],
        classification_reasons=values["classification_reasons"],
        created_at=now,
        domain=organisation_domain,
        adopted=adopted,
    )


def _add_article(
    conn: Connection,
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
    key = message_key(parsed)
    article_id: int = _inserted_id(
        conn,
        _INSERT_ARTICLE,
        {
            "ticket_id": ticket_id,
            "inbound_id": inbound_id,
            "direction": "in",
            "sender": parsed.sender[:320],
            "sender_name": parsed.sender_name[:255],
            "recipients": list(parsed.to),
            "cc": list(parsed.cc),
            "reply_to": list(parsed.reply_to),
            "subject": parsed.subject,
            "date": parsed.date,
            "message_key": key,
            "message_id": parsed.message_id,
            "in_reply_to": list(parsed.in_reply_to),
            "references": list(parsed.references),
            "content_key": parsed.content_key,
            "text": text,
            "full_text": full_text,
            "html": parsed.html,
            "defects": list(parsed.defects),
            "internal": False,
        },
    )
    if parsed.attachments:
        conn.execute(
            _INSERT_ATTACHMENT,
            [{"article_id": article_id, **_attachment_row(att, ocr)} for att in parsed.attachments],
        )
    _add_refs(conn, article_id, (key, *thread_candidates(parsed)))
    return article_id


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


def _attachment_row(att: Any, ocr: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "filename": att.filename,
        "content_type": att.content_type[:255],
        "size": att.size,
        "sha256": att.sha256,
        "content_id": att.content_id,
        "is_inline": att.is_inline,
        "is_screenshot": att.is_screenshot,
        "width": att.width,
        "height": att.height,
        "ocr_text": (ocr or {}).get(att.sha256),
    }


def _attachments(parsed: ParsedMessage, ocr: dict[str, str] | None = None) -> list[Attachment]:
    """The attachment rows of a message (their bytes are in the blob store);
    ``ocr``: attachment sha256 -> the text read from the screenshot."""
    return [Attachment(**_attachment_row(att, ocr)) for att in parsed.attachments]


def _add_refs(conn: Connection, article_id: int, keys: tuple[str, ...]) -> None:
    """The article's rows: ``first`` where no article carried the Message-ID before.
    Two messages of one thread stored at the same moment both claim ``first`` for the
    Message-ID they share: one fails with an IntegrityError, the worker retries it,
    and then it sees the other."""
    wanted = [k for k in dict.fromkeys(keys) if k and len(k) <= 1000]
    if wanted:
        conn.execute(_INSERT_REF, [{"article_id": article_id, "message_key": k} for k in wanted])


def add_event(
    session: Session, ticket_id: int, inbound_id: int | None, kind: str, detail: dict[str, Any]
) -> None:
    """One system event on the ticket, in the caller's transaction."""
    session.connection().execute(INSERT_EVENT, event_row(ticket_id, inbound_id, kind, detail))


def event_row(
    ticket_id: int,
    inbound_id: int | None,
    kind: str,
    detail: dict[str, Any],
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """A system event for ``INSERT_EVENT`` (every key given: one statement for several);
    ``created_at`` by default now."""
    return {
        "ticket_id": ticket_id,
        "inbound_id": inbound_id,
        "kind": kind,
        "actor": "system",
        "detail": detail,
        "created_at": created_at or utcnow(),
    }


def _event(
    ticket_id: int,
    inbound_id: int,
    kind: str,
    parsed: ParsedMessage,
    decision: Decision,
    analysis: Analysis,
) -> dict[str, Any]:
    detail: dict[str, object] = {
        "message_id": parsed.message_id,
        "sender": parsed.sender,
        "reasons": list(decision.reasons),
    }
    if decision.warnings:
        detail["warnings"] = list(decision.warnings)
    if analysis.classification is not None and kind == "created":
        detail["classification"] = analysis.classification.to_dict()
    return event_row(ticket_id, inbound_id, kind, detail)


def _finish(
    conn: Connection,
    inbound_id: int,
    owner: str | None,
    parsed: ParsedMessage,
    analysis: Analysis,
    outcome: str,
    ticket_id: int | None,
    decision: Decision,
) -> None:
    params: dict[str, Any] = {
        "b_id": inbound_id,
        **_FINISH_VALUES,
        "outcome": outcome,
        "ticket_id": ticket_id,
        "message_id": parsed.message_id,
        "loop_kind": analysis.loop.kind,
        "loop_reasons": list(analysis.loop.reasons),
        "warnings": list(decision.warnings) or None,
        "processed_at": utcnow(),
    }
    if owner is None:
        result = conn.execute(_FINISH, params)
    else:
        result = conn.execute(_FINISH_LEASED, params | {"b_owner": owner})
    if not result.rowcount:
        raise LeaseLost(f"inbound {inbound_id}: lease lost before commit")
