"""Facts for the pure pipeline: what the database knows about one message.

``lookup_message`` reads (never writes) and returns a frozen
:class:`~mailtriage.pipeline.conversation.ConversationFacts`, with the sender's contact
and organisation rows found by the same first query (so a new ticket is written without
looking for them again); the pure ``conversation.match`` decides from the facts, and
``store.apply`` writes the decision. All three run in the caller's transaction.

Every message costs one query for its Message-ID (duplicates, early replies) and its
sender (the new-ticket cap, contact, organisation); a reply adds its thread candidates
and the facts of the tickets named (participants included).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
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
from mailtriage.store.apply import Requester, merged_into
from mailtriage.store.models import (
    Article,
    ArticleRef,
    Contact,
    Event,
    Organisation,
    Participant,
    Ticket,
    utcnow,
)
from mailtriage.store.tables import table

_ARTICLE = table(Article)
_TICKET = table(Ticket)
_CONTACT = table(Contact)
_REF = table(ArticleRef)
_PARTICIPANT = table(Participant)
_ORGANISATION = table(Organisation)

_KEY_COLUMNS = (
    _ARTICLE.c.id,
    _ARTICLE.c.content_key,
    _ARTICLE.c.ticket_id,
    _ARTICLE.c.inbound_id,
    _TICKET.c.status,
    _ARTICLE.c.sender,
    _ARTICLE.c.recipients,
    _ARTICLE.c.cc,
)
# The articles with this message's key (duplicate or not: ``early`` 0) ...
_SAME_KEY = (
    select(*_KEY_COLUMNS, literal_column("0").label("early"))
    .select_from(_ARTICLE.join(_TICKET, _TICKET.c.id == _ARTICLE.c.ticket_id))
    .where(_ARTICLE.c.message_key == bindparam("key"))
)
# ... and, in the same query, the inbound articles of other messages that refer to it
# (early replies: ``early`` 1).
_KEY_FACTS = union_all(
    _SAME_KEY,
    select(*_KEY_COLUMNS, literal_column("1"))
    .select_from(
        _REF.join(_ARTICLE, _ARTICLE.c.id == _REF.c.article_id).join(
            _TICKET, _TICKET.c.id == _ARTICLE.c.ticket_id
        )
    )
    .where(
        _REF.c.message_key == bindparam("key"),
        _ARTICLE.c.message_key != bindparam("key"),
        _ARTICLE.c.direction == "in",
        _ARTICLE.c.inbound_id.is_not(None),
    ),
)
# Tickets the sender opened since then (count, latest) ...
_SENDER = (
    select(func.count(_TICKET.c.id).label("recent"), func.max(_TICKET.c.id).label("latest"))
    .select_from(_TICKET.join(_CONTACT, _CONTACT.c.id == _TICKET.c.requester_id))
    .where(_CONTACT.c.email == bindparam("sender"), _TICKET.c.created_at >= bindparam("since"))
    .subquery("sender")
)
_KEY_ROWS = _KEY_FACTS.subquery("key_rows")
# ... and, in the same query, the sender's contact and organisation rows (for a new
# ticket) and the articles of _KEY_FACTS: one row per article, or one without any.
_MESSAGE_FACTS = select(
    _SENDER.c.recent,
    _SENDER.c.latest,
    select(_CONTACT.c.id)
    .where(_CONTACT.c.email == bindparam("sender"))
    .scalar_subquery()
    .label("contact_id"),
    select(_ORGANISATION.c.id)
    .where(_ORGANISATION.c.domain == bindparam("domain"))
    .scalar_subquery()
    .label("organisation_id"),
    *_KEY_ROWS.c,
).select_from(_SENDER.outerjoin(_KEY_ROWS, true()))
_REQUESTED = _TICKET.outerjoin(_CONTACT, _CONTACT.c.id == _TICKET.c.requester_id)
_HOLDING = (
    select(_ARTICLE.c.message_key, _ARTICLE.c.ticket_id, _ARTICLE.c.sender, _CONTACT.c.email)
    .select_from(_ARTICLE.join(_REQUESTED, _TICKET.c.id == _ARTICLE.c.ticket_id))
    .where(_ARTICLE.c.message_key.in_(bindparam("idents", expanding=True)))
    .order_by(_ARTICLE.c.id)
)
_REFERRING = (
    select(_REF.c.message_key, _ARTICLE.c.ticket_id, _ARTICLE.c.sender, _CONTACT.c.email)
    .select_from(
        _REF.join(_ARTICLE, _ARTICLE.c.id == _REF.c.article_id).join(
            _REQUESTED, _TICKET.c.id == _ARTICLE.c.ticket_id
        )
    )
    .where(_REF.c.message_key.in_(bindparam("idents", expanding=True)))
    .order_by(_ARTICLE.c.id)
)
# A ticket's facts, one row per participant (or one with none).
_TICKET_FACTS = (
    select(
        _TICKET.c.id,
        _TICKET.c.status,
        _TICKET.c.resolved_at,
        _TICKET.c.subject,
        _CONTACT.c.email,
        _PARTICIPANT.c.address,
    )
    .select_from(_REQUESTED.outerjoin(_PARTICIPANT, _PARTICIPANT.c.ticket_id == _TICKET.c.id))
    .where(_TICKET.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_TICKET.c.id, _PARTICIPANT.c.address)
)


def lookup_message(
    session: Session,
    parsed: ParsedMessage,
    loop: LoopVerdict,
    policy: ConversationPolicy = DEFAULT_POLICY,
    envelope_recipients: tuple[str, ...] = (),
) -> tuple[ConversationFacts, Requester | None]:
    """The conversation facts, and (human mail) the sender's contact and organisation
    rows as they are now, for ``apply_decision`` (found by the same query)."""
    key = message_key(parsed)
    session.flush()  # (reads below go to the connection: nothing may be held back)
    conn = session.connection()
    if loop.automated:
        rows = conn.execute(_SAME_KEY, {"key": key}).all()
        duplicate, other = _same_key(rows, parsed)
        # Automated mail never joins or opens a ticket: only our mail it answers counts.
        facts = ConversationFacts(
            message_key=key,
            duplicate_article_id=duplicate,
            same_id_other_content=other,
            our_mail=find_our_mail(session, our_mail_candidates(parsed, loop)),
        )
        return facts, None
    now = utcnow()
    since = now - timedelta(minutes=policy.new_tickets_window_minutes)
    rows = conn.execute(
        _MESSAGE_FACTS,
        {
            "key": key,
            "sender": parsed.sender or None,
            "since": since,
            "domain": parsed.sender_domain or None,
        },
    ).all()
    # one row at least: the sender's (and the articles', when there are any)
    first = rows[0]
    requester = Requester(first.contact_id, first.organisation_id)
    rows = [r for r in rows if r.id is not None]
    duplicate, other = _same_key(rows, parsed)
    if duplicate is not None:  # match() answers "duplicate" before it reads anything else
        facts = ConversationFacts(
            message_key=key, duplicate_article_id=duplicate, same_id_other_content=other
        )
        return facts, requester
    candidates = _candidates(conn, thread_candidates(parsed))
    recent, latest = 0, None
    if parsed.sender and policy.new_tickets_per_address > 0:
        recent, latest = int(first.recent or 0), first.latest
    ids = [
        *(c.ticket_id for c in candidates),
        *hinted_ticket_ids(parsed, policy, envelope_recipients),
        *([latest] if latest is not None else []),
    ]
    facts = ConversationFacts(
        message_key=key,
        duplicate_article_id=duplicate,
        same_id_other_content=other,
        candidates=candidates,
        early_replies=_early_replies(session, [r for r in rows if r.early]),
        tickets=ticket_facts(session, ids),
        sender_recent_tickets=recent,
        sender_latest_ticket=latest,
        now=now,
    )
    return facts, requester


def _same_key(rows: Sequence[Any], parsed: ParsedMessage) -> tuple[int | None, bool]:
    """(the article this message repeats, whether another one has its Message-ID)."""
    same = [r for r in rows if not r.early]
    duplicate = next((r.id for r in same if r.content_key == parsed.content_key), None)
    return duplicate, any(r.content_key != parsed.content_key for r in same)


def ticket_facts(session: Session, ticket_ids: Iterable[int]) -> tuple[TicketFacts, ...]:
    """Facts of each (live) ticket of ``ticket_ids``; unknown ids are left out."""
    wanted = list(dict.fromkeys(ticket_ids))
    if not wanted:
        return ()
    conn = session.connection()
    found: dict[int, tuple[str, datetime | None, str | None, str | None, list[str]]] = {}

    def fetch(ids: list[int]) -> None:
        for tid, status, resolved_at, subject, email, address in conn.execute(
            _TICKET_FACTS, {"ids": ids}
        ):
            entry = found.setdefault(tid, (status, resolved_at, subject, email, []))
            if address is not None:
                entry[4].append(address)

    def live(ticket_id: int) -> int:
        """A merged ticket's successor (a chain of merges is short)."""
        for _ in range(20):
            entry = found.get(ticket_id)
            if entry is None or entry[0] != "merged":
                return ticket_id
            into = merged_into(session, ticket_id)
            if into is None:
                return ticket_id
            ticket_id = into
            if ticket_id not in found:
                fetch([ticket_id])
        return ticket_id

    fetch(wanted)
    merged_from: dict[int, list[int]] = {}
    for ticket_id in wanted:
        merged_from.setdefault(live(ticket_id), []).append(ticket_id)
    return tuple(
        TicketFacts(
            ticket_id=ticket_id,
            status=status,
            requester=email,
            participants=tuple(people),
            resolved_at=resolved_at,
            subject=subject or "",
            merged_from=tuple(i for i in merged_from[ticket_id] if i != ticket_id),
        )
        for ticket_id, (status, resolved_at, subject, email, people) in sorted(found.items())
        if ticket_id in merged_from
    )


def _candidates(conn: Connection, idents: tuple[str, ...]) -> tuple[Candidate, ...]:
    """Tickets holding one of ``idents`` (the latest article per Message-ID), in the
    order of ``idents``. Only when none holds one: tickets with an article that refers
    to one of them (earliest article first), which joins a reply to its sibling."""
    if not idents:
        return ()
    requesters: dict[int, str | None] = {}
    holding: dict[str, tuple[int, str]] = {}
    for ident, ticket_id, sender, requester in conn.execute(_HOLDING, {"idents": list(idents)}):
        holding[ident] = (ticket_id, sender or "")
        requesters[ticket_id] = requester
    found = [
        Candidate(holding[i][0], i, "message", holding[i][1], requesters[holding[i][0]])
        for i in idents
        if i in holding
    ]
    if found:
        return tuple(found)
    referring: dict[str, list[tuple[int, str]]] = {}
    for ident, ticket_id, sender, requester in conn.execute(_REFERRING, {"idents": list(idents)}):
        referring.setdefault(ident, []).append((ticket_id, sender or ""))
        requesters[ticket_id] = requester
    return tuple(
        Candidate(ticket_id, i, "reference", sender, requesters[ticket_id])
        for i in idents
        for ticket_id, sender in referring.get(i, ())
    )


def _early_replies(session: Session, rows: list[Row[Any]]) -> tuple[EarlyReply, ...]:
    """Tickets opened by a reply to this message stored before it (``rows``: their
    articles that refer to it), each adoptable or kept with why.

    A ticket counts when its first inbound article (the one its "created" event
    names) refers to the message; it is adoptable while it is "new" and no human
    changed it (no correction, no event by anyone but the system).
    """
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
