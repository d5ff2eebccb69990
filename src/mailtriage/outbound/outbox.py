"""The outbox in the database: queue (inside the caller's transaction), claim with a
lease, record results; note automatic answers to our mail; suppress bounced addresses.

Queueing happens in the transaction that creates the ticket (the worker's
``store_analysis``), so a ticket and its acknowledgement exist together or not at all.
The key (ticket, kind, step) is UNIQUE: a second instance or a replay cannot queue the
same mail twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from mailtriage.outbound.ack import Customer, OutboundPolicy, OutboxPlan, plan_ack
from mailtriage.pipeline.classify import Classification
from mailtriage.pipeline.conversation import OurMail
from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.subject_tag import ticket_reference
from mailtriage.store.apply import INSERT_EVENT, NewTicket, add_event, event_row
from mailtriage.store.leases import release_all, take_due
from mailtriage.store.models import Article, Event, utcnow
from mailtriage.store.outbound_models import Outbox, OutboxStatus, Suppression
from mailtriage.store.tables import table

__all__ = [
    "GuardFacts",
    "OutboxJob",
    "OutboxStore",
    "enqueue",
    "enqueue_many",
    "note_automated_answer",
    "queue_ack",
]


# -- inside the pipeline's transaction ---------------------------------------------

# Prepared Core statements: queueing runs for every new ticket.
_INSERT_OUTBOX = insert(table(Outbox))
_INSERT_OUTBOX_IDS = _INSERT_OUTBOX.returning(
    table(Outbox).c.kind, table(Outbox).c.step, table(Outbox).c.id
)
# The sender records every delivered mail: Core statements, no unit of work.
_MARK_SENT = (
    update(table(Outbox))
    .where(
        table(Outbox).c.id == bindparam("job_id"),
        table(Outbox).c.lease_owner == bindparam("owner"),
        table(Outbox).c.status == OutboxStatus.SENDING,
    )
    .values(
        status=OutboxStatus.SENT,
        sent_at=bindparam("sent_at"),
        sent_via=bindparam("via"),
        last_error=None,
        lease_owner=None,
        lease_until=None,
    )
)
_INSERT_ARTICLE = insert(table(Article))


def queue_ack(
    session: Session,
    ticket: NewTicket,
    inbound_id: int | None,
    parsed: ParsedMessage,
    classification: Classification | None,
    policy: OutboundPolicy,
) -> int | None:
    """Queue the acknowledgement of a ticket created in this transaction (or note on
    the ticket why not)."""
    if not policy.acknowledge:
        return None
    date_header = next((v for k, v in parsed.headers if k.lower() == "date"), None)
    customer = Customer(
        address=parsed.sender,
        name=parsed.sender_name,
        subject=parsed.subject,
        text=parsed.text,
        message_id=parsed.message_id,
        references=parsed.references,
        date_header=date_header,
    )
    promise = None
    if policy.sla is not None:
        promise = policy.sla.first_response(ticket.created_at, ticket.priority, ticket.domain)
    plan, why_not = plan_ack(
        policy,
        ticket_id=ticket.id,
        created_at=ticket.created_at,
        customer=customer,
        category=classification.category if classification else None,
        language=classification.language if classification else None,
        promise=promise,
    )
    if plan is None:
        add_event(session, ticket.id, inbound_id, "ack_skipped", {"reason": why_not})
        return None
    return enqueue(session, ticket.id, plan, inbound_id=inbound_id, policy=policy)


def enqueue(
    session: Session,
    ticket_id: int,
    plan: OutboxPlan,
    *,
    inbound_id: int | None = None,
    policy: OutboundPolicy | None = None,
) -> int:
    """Add the outbox row and its events (no commit: the caller's transaction);
    returns the row's id."""
    # The row is the record of the queued mail (`outbox list`); "mail_sent" notes it on
    # the ticket when it goes out.
    key = (
        session.connection()
        .execute(_INSERT_OUTBOX, _outbox_row(ticket_id, plan))
        .inserted_primary_key
    )
    assert key is not None
    if policy is not None and policy.kb is not None:
        detail: dict[str, Any] = {
            "language": plan.language,
            "articles": [m.to_dict() for m in plan.kb],
            "considered": plan.kb_considered,
            "min_score": policy.kb_min_score,
        }
        if not plan.kb:
            detail["why"] = (
                f"no article in {plan.language!r} scored {policy.kb_min_score:g} or more"
            )
        add_event(session, ticket_id, inbound_id, "kb_articles", detail)
    return int(key[0])


def enqueue_many(session: Session, ticket_id: int, plans: list[OutboxPlan]) -> list[int]:
    """Add the outbox rows of ``plans`` in one statement (no commit); their ids, in
    order. For keys that cannot be queued yet (a ticket created in this transaction)."""
    if not plans:
        return []
    rows = [_outbox_row(ticket_id, plan) for plan in plans]
    # (in any order: batched into one INSERT; each plan's key has its own step)
    ids = {
        (kind, step): row_id
        for kind, step, row_id in session.connection().execute(_INSERT_OUTBOX_IDS, rows)
    }
    return [int(ids[(plan.kind, plan.step)]) for plan in plans]


def _outbox_row(ticket_id: int, plan: OutboxPlan) -> dict[str, Any]:
    now = utcnow()
    return {
        "ticket_id": ticket_id,
        "kind": plan.kind,
        "step": plan.step,
        "message_id": plan.message_id,
        "recipient": plan.recipient,
        "language": plan.language,
        "context": plan.context.to_json(),
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "deadline": plan.deadline,
        "created_at": now,
    }


def note_automated_answer(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    parsed: ParsedMessage,
    verdict: LoopVerdict,
    our: OurMail,
    policy: OutboundPolicy,
    now: datetime | None = None,
) -> None:
    """An automatic answer to our mail: an event on the ticket (its status untouched);
    a permanent bounce also suppresses the addresses that mail went to."""
    now = now or utcnow()
    detail: dict[str, Any] = {
        "message_id": parsed.message_id,
        "sender": parsed.sender,
        "subject": parsed.subject[:300],
        "answers": our.message_id,
        "loop_kind": verdict.kind,
        "reasons": list(verdict.reasons),
    }
    if verdict.kind == "bounce":
        detail |= {
            "status": verdict.bounce_status,
            "permanent": verdict.permanent,
            "failed_recipients": list(verdict.failed_recipients),
        }
        if verdict.permanent and policy.suppress_days > 0 and our.recipients:
            until = now + timedelta(days=policy.suppress_days)
            reason = f"permanent bounce {verdict.bounce_status or '5.x.x'} of <{our.message_id}>"
            suppress(session, our.recipients, until, reason, ticket_id, inbound_id)
            detail["suppressed"] = list(our.recipients)
            detail["suppressed_until"] = until.isoformat()
    session.add(
        Event(
            ticket_id=ticket_id, inbound_id=inbound_id, kind=f"{verdict.kind}_noted", detail=detail
        )
    )


def suppress(
    session: Session,
    addresses: Sequence[str],
    until: datetime,
    reason: str,
    ticket_id: int | None,
    inbound_id: int | None,
) -> None:
    """Insert or extend the suppression of each address (a concurrent insert of the
    same address fails the transaction with an IntegrityError; the worker retries)."""
    for address in dict.fromkeys(a.lower() for a in addresses if a):
        row = session.scalar(select(Suppression).where(Suppression.address == address))
        if row is None:
            session.add(
                Suppression(
                    address=address[:320],
                    until=until,
                    reason=reason,
                    ticket_id=ticket_id,
                    inbound_id=inbound_id,
                )
            )
        else:
            row.until = max(row.until, until)
            row.reason = reason
            row.ticket_id = ticket_id
            row.inbound_id = inbound_id
    session.flush()


# -- the sender's side -------------------------------------------------------------


@dataclass(frozen=True)
class OutboxJob:
    """A claimed outbox row, detached from its session."""

    id: int
    ticket_id: int
    kind: str
    step: int
    message_id: str
    recipient: str
    language: str
    context: dict[str, Any]
    attempts: int
    deadline: datetime
    created_at: datetime


@dataclass(frozen=True)
class GuardFacts:
    suppressed_until: datetime | None
    suppressed_reason: str
    ticket_sent: int  # mails sent to this ticket in its window
    address_sent: int  # mails sent to this address in its window


class OutboxStore:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
        due_before: datetime | None = None,
    ) -> list[OutboxJob]:
        """Lease up to ``limit`` due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; the
        write lock taken at BEGIN serialises this on SQLite). An expired lease, a
        sender that died mid-send, is due again. ``due_before`` (default ``now``):
        only rows due by then, so a flush does not pick up what it just deferred."""
        now = now or utcnow()
        due = or_(
            (Outbox.status == OutboxStatus.PENDING)
            & (Outbox.next_attempt_at <= (due_before or now)),
            (Outbox.status == OutboxStatus.SENDING) & (Outbox.lease_until < now),
        )
        with self.factory() as session, session.begin():
            ids = take_due(
                session,
                Outbox,
                due=due,
                order_by=[Outbox.next_attempt_at, Outbox.id],
                limit=limit,
                owner=owner,
                now=now,
                lease_seconds=lease_seconds,
                status=OutboxStatus.SENDING,
            )
            if not ids:
                return []
            rows = session.scalars(select(Outbox).where(Outbox.id.in_(ids)).order_by(Outbox.id))
            return [
                OutboxJob(
                    r.id,
                    r.ticket_id,
                    r.kind,
                    r.step,
                    r.message_id,
                    r.recipient,
                    r.language,
                    dict(r.context),
                    r.attempts,
                    r.deadline,
                    r.created_at,
                )
                for r in rows
            ]

    def guard_facts(
        self,
        jobs: Sequence[OutboxJob],
        now: datetime,
        ticket_window: timedelta,
        address_window: timedelta,
    ) -> dict[int, GuardFacts]:
        """The send guard's facts of a claimed batch, by job id, in three queries: the
        recipient's suppression and the mail sent (``sent``, so never a claimed row)
        to the ticket and to the address in their windows. Mail the batch itself
        sends is the caller's to count."""
        if not jobs:
            return {}
        with self.factory() as session:
            suppressions = {
                address: (until, reason)
                for address, until, reason in session.execute(
                    select(Suppression.address, Suppression.until, Suppression.reason).where(
                        Suppression.address.in_({j.recipient.lower() for j in jobs}),
                        Suppression.until > now,
                    )
                )
            }
            per_ticket = _sent_since(
                session, Outbox.ticket_id, {j.ticket_id for j in jobs}, now - ticket_window
            )
            per_address = _sent_since(
                session, Outbox.recipient, {j.recipient for j in jobs}, now - address_window
            )
        facts = {}
        for job in jobs:
            until, reason = suppressions.get(job.recipient.lower(), (None, ""))
            facts[job.id] = GuardFacts(
                until,
                reason,
                per_ticket.get(job.ticket_id, 0),
                per_address.get(job.recipient, 0),
            )
        return facts

    def mark_sent(
        self,
        owner: str,
        sent: Sequence[tuple[OutboxJob, dict[str, Any]]],
        *,
        via: str,
        now: datetime | None = None,
    ) -> list[bool]:
        """Record delivered mail (job, article): each row, an outgoing article and an
        event, all in one commit (Core statements: the articles and the events in one
        statement each); per mail, False when its lease had been taken over."""
        now = now or utcnow()
        recorded = []
        articles: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        with self.factory() as session, session.begin():
            conn = session.connection()
            for job, article in sent:
                result = conn.execute(
                    _MARK_SENT,
                    {"job_id": job.id, "owner": owner, "sent_at": now, "via": via[:500]},
                )
                if not result.rowcount:
                    recorded.append(False)
                    continue
                recorded.append(True)
                if article.get("sends_article") is None:
                    articles.append(_article_row(job, article, now))
                detail = {
                    "kind": job.kind,
                    "step": job.step,
                    "message_id": job.message_id,
                    "to": job.recipient,
                    "cc": list(article.get("cc") or []),
                    "article": article.get("sends_article"),
                    "via": via,
                    "attempts": job.attempts,
                    "language": job.language,
                    "due_at": job.context.get("due_at"),
                    "timezone": job.context.get("timezone"),
                }
                events.append(event_row(job.ticket_id, None, "mail_sent", detail, now))
            if articles:
                conn.execute(_INSERT_ARTICLE, articles)
            if events:
                conn.execute(INSERT_EVENT, events)
        return recorded

    def suppressed(self, addresses: Sequence[str], now: datetime) -> frozenset[str]:
        """Those of ``addresses`` (lower-cased) that are suppressed at ``now``."""
        wanted = {a.lower() for a in addresses}
        with self.factory() as session:
            rows = session.scalars(
                select(Suppression.address).where(
                    Suppression.address.in_(wanted), Suppression.until > now
                )
            )
            return frozenset(rows)

    def mark_retry(self, job: OutboxJob, owner: str, error: str, next_at: datetime) -> bool:
        with self.factory() as session, session.begin():
            return self._update_leased(
                session,
                job,
                owner,
                status=OutboxStatus.PENDING,
                next_attempt_at=next_at,
                last_error=error[:4000],
            )

    def mark_final(
        self, job: OutboxJob, owner: str, status: str, reason: str, detail: dict[str, Any]
    ) -> bool:
        """``failed`` or ``skipped``, with an event on the ticket."""
        with self.factory() as session, session.begin():
            if not self._update_leased(
                session, job, owner, status=status, last_error=reason[:4000]
            ):
                return False
            session.add(
                Event(
                    ticket_id=job.ticket_id,
                    kind=f"mail_{status}",
                    detail={
                        "kind": job.kind,
                        "step": job.step,
                        "message_id": job.message_id,
                        "to": job.recipient,
                        "reason": reason,
                    }
                    | detail,
                )
            )
        return True

    def release(self, owner: str) -> int:
        """Hand back every lease of ``owner`` (clean shutdown): due again at once."""
        with self.factory() as session, session.begin():
            return release_all(
                session,
                Outbox,
                owner=owner,
                leased_status=OutboxStatus.SENDING,
                back_status=OutboxStatus.PENDING,
            )

    def retry(self, outbox_id: int, deadline: datetime, now: datetime | None = None) -> bool:
        """A failed or skipped mail: due again now, with a new deadline."""
        now = now or utcnow()
        with self.factory() as session, session.begin():
            result = session.execute(
                update(Outbox)
                .where(
                    Outbox.id == outbox_id,
                    Outbox.status.in_((OutboxStatus.FAILED, OutboxStatus.SKIPPED)),
                )
                .values(
                    status=OutboxStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    deadline=deadline,
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _update_leased(self, session: Session, job: OutboxJob, owner: str, **values: Any) -> bool:
        result = session.execute(
            update(Outbox)
            .where(
                Outbox.id == job.id,
                Outbox.lease_owner == owner,
                Outbox.status == OutboxStatus.SENDING,
            )
            .values(lease_owner=None, lease_until=None, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _sent_since(
    session: Session, column: InstrumentedAttribute[Any], values: set[Any], since: datetime
) -> dict[Any, int]:
    """How many mails were sent since ``since`` per value of ``column`` (a ticket id, a
    recipient) among ``values``: one grouped count for a whole batch."""
    return {
        value: int(n)
        for value, n in session.execute(
            select(column, func.count())
            .where(Outbox.status == OutboxStatus.SENT, column.in_(values), Outbox.sent_at >= since)
            .group_by(column)
        )
    }


def _article_row(job: OutboxJob, article: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The sent mail as an outgoing article. (A relayed reply has one already, the
    agent's, ``sends_article``, which the caller leaves as it is: its key is the
    agent's Message-ID, which finds a redelivery of the agent's mail; the
    ``mail_sent`` event records what went out: Message-ID, To, Cc.)"""
    text = str(article["text"])
    return {
        "ticket_id": job.ticket_id,
        "inbound_id": None,
        "direction": "out",
        "sender": str(article["sender"]),
        "sender_name": str(article["sender_name"])[:255],
        "recipients": [job.recipient],
        "cc": list(article.get("cc") or []),
        "reply_to": [str(article["reply_to"])],
        "subject": str(article["subject"]),
        "date": now,
        "message_key": job.message_id,
        "message_id": job.message_id,
        "in_reply_to": list(article.get("in_reply_to") or []),
        "references": list(article.get("references") or []),
        "content_key": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "text": text,
        "html": article.get("html"),
        "defects": [],
        "internal": bool(article.get("internal")),
        "created_at": now,
    }


# -- read models for the CLI ---------------------------------------------------------


def outbox_summary(row: Outbox, prefix: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket": ticket_reference(prefix, row.ticket_id),
        "kind": row.kind,
        "step": row.step,
        "status": row.status,
        "to": row.recipient,
        "language": row.language,
        "message_id": row.message_id,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat(),
        "deadline": row.deadline.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "sent_via": row.sent_via,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
    }


def list_outbox(
    session: Session, prefix: str, *, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    stmt = select(Outbox).order_by(Outbox.id.desc())
    if status:
        stmt = stmt.where(Outbox.status == status)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [outbox_summary(row, prefix) for row in session.scalars(stmt)]
