"""Retention: purge the raw messages and attachments of long-closed tickets.

Support mail carries personal data. A ticket closed and unchanged for
``retention.purge_closed_after_days`` keeps its row, its articles' text, the names,
types and sizes of its attachments and its events; the bytes go: the raw message of
every inbound message filed to it and the file of every attachment. The rows are
marked (``purged_at``) and the ticket gets a ``purged`` event.

Blobs are content-addressed: two messages may carry the same PDF, and a forwarded
message may be byte for byte another one's raw message. A blob file is deleted only
when no row that is not purged refers to it (inbound raw, attachment, or a mail in
the outbox still to be sent), checked in the transaction that marks the rows.
A ticket with mail still to be sent is left for a later run.

The same bytes delivered again later (an archive imported twice, a sender's retry)
are recognised by their sha256 and make no new ticket, but their raw file is written
before that is known: each run also deletes such files again (``reappeared``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.blobs import BlobStore
from mailtriage.store.models import Article, Attachment, Event, Inbound, InboundStatus, Ticket
from mailtriage.store.outbound_models import Outbox, OutboxStatus
from mailtriage.store.queries import ticket_reference

log = logging.getLogger(__name__)

CLOSED = "closed"
BATCH = 100  # tickets per transaction
SWEEP_BATCH = 1000  # purged messages looked at per query
UNSENT = (OutboxStatus.PENDING, OutboxStatus.SENDING)


@dataclass
class PurgeReport:
    dry_run: bool
    older_than_days: int
    cutoff: datetime
    tickets: list[str] = field(default_factory=list)
    messages: int = 0
    attachments: int = 0
    blobs_deleted: int = 0
    bytes_freed: int = 0
    # Blob files another (not purged) message still uses: kept.
    blobs_shared: int = 0
    # Closed tickets left for a later run (mail still to be sent).
    skipped: list[str] = field(default_factory=list)
    # Raw files of purged messages written again by a redelivery, deleted again.
    reappeared: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "older_than_days": self.older_than_days,
            "cutoff": self.cutoff.isoformat(),
            "tickets": self.tickets,
            "messages": self.messages,
            "attachments": self.attachments,
            "blobs_deleted": self.blobs_deleted,
            "bytes_freed": self.bytes_freed,
            "blobs_shared": self.blobs_shared,
            "skipped": self.skipped,
            "reappeared": self.reappeared,
        }


def purge_closed(
    factory: sessionmaker[Session],
    blobs: BlobStore,
    prefix: str,
    older_than_days: int,
    now: datetime,
    *,
    dry_run: bool = False,
    actor: str = "retention",
) -> PurgeReport:
    """Purge what is due; ``dry_run`` counts the same without changing anything."""
    cutoff = now - timedelta(days=older_than_days)
    report = PurgeReport(dry_run, older_than_days, cutoff)
    after = 0
    while True:
        with factory() as session:
            ids = list(
                session.scalars(
                    select(Ticket.id)
                    .where(Ticket.status == CLOSED, Ticket.updated_at < cutoff, Ticket.id > after)
                    .order_by(Ticket.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                break
            after = ids[-1]
            try:
                doomed = _purge_batch(session, ids, prefix, report, now, actor, dry_run)
            except BaseException:
                session.rollback()
                raise
            if dry_run:
                session.rollback()
            else:
                session.commit()
        # After the commit: a file is deleted only once nothing refers to it any more.
        _delete(blobs, doomed, report, dry_run)
    report.reappeared = _sweep_reappeared(factory, blobs, report, dry_run)
    return report


def _delete(blobs: BlobStore, shas: set[str], report: PurgeReport, dry_run: bool) -> int:
    deleted = 0
    for sha in sorted(shas):
        path = blobs.path(sha)
        try:
            size = path.stat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            continue
        deleted += 1
        report.blobs_deleted += 1
        report.bytes_freed += size
    if deleted and not dry_run:
        log.info("purge: deleted %d blob files", deleted)
    return deleted


def _sweep_reappeared(
    factory: sessionmaker[Session], blobs: BlobStore, report: PurgeReport, dry_run: bool
) -> int:
    """Delete the raw files of purged messages that a redelivery wrote again."""
    found = 0
    after = 0
    while True:
        with factory() as session:
            rows = list(
                session.execute(
                    select(Inbound.id, Inbound.raw_sha256)
                    .where(Inbound.purged_at.is_not(None), Inbound.id > after)
                    .order_by(Inbound.id)
                    .limit(SWEEP_BATCH)
                )
            )
            if not rows:
                return found
            after = rows[-1][0]
            back = {sha for _, sha in rows if blobs.exists(sha)}
            back -= _still_referenced(session, back)
        found += _delete(blobs, back, report, dry_run)


def _purge_batch(
    session: Session,
    ticket_ids: list[int],
    prefix: str,
    report: PurgeReport,
    now: datetime,
    actor: str,
    dry_run: bool,
) -> set[str]:
    """Mark one batch of tickets' messages and attachments purged, add the events;
    return the blob files no longer referenced."""
    unsent = set(
        session.scalars(
            select(Outbox.ticket_id).where(
                Outbox.ticket_id.in_(ticket_ids), Outbox.status.in_(UNSENT)
            )
        )
    )
    candidates: set[str] = set()
    for ticket_id in ticket_ids:
        number = ticket_reference(prefix, ticket_id)
        if ticket_id in unsent:
            report.skipped.append(number)
            continue
        inbound = list(
            session.scalars(
                select(Inbound).where(
                    Inbound.purged_at.is_(None),
                    Inbound.status == InboundStatus.DONE,
                    or_(
                        Inbound.ticket_id == ticket_id,
                        Inbound.id.in_(
                            select(Article.inbound_id).where(Article.ticket_id == ticket_id)
                        ),
                    ),
                )
            )
        )
        attachments = list(
            session.scalars(
                select(Attachment)
                .join(Article, Attachment.article_id == Article.id)
                .where(Article.ticket_id == ticket_id, Attachment.purged_at.is_(None))
            )
        )
        if not inbound and not attachments:
            continue  # purged before
        for row in inbound:
            row.purged_at = now
            row.raw = None  # the bytes kept in the row, if any
            candidates.add(row.raw_sha256)
        for att in attachments:
            att.purged_at = now
            candidates.add(att.sha256)
        session.add(
            Event(
                ticket_id=ticket_id,
                kind="purged",
                actor=actor,
                detail={
                    "messages": len(inbound),
                    "attachments": len(attachments),
                    "older_than_days": report.older_than_days,
                    "reason": "retention.purge_closed_after_days",
                },
            )
        )
        report.tickets.append(number)
        report.messages += len(inbound)
        report.attachments += len(attachments)
    session.flush()
    shared = _still_referenced(session, candidates)
    report.blobs_shared += len(shared)
    if not dry_run:
        log.info(
            "purge: %d tickets, %d blobs to delete, %d shared with other messages",
            len(ticket_ids),
            len(candidates - shared),
            len(shared),
        )
    return candidates - shared


def _still_referenced(session: Session, shas: set[str]) -> set[str]:
    """Those of ``shas`` a row that is not purged still refers to."""
    if not shas:
        return set()
    found: set[str] = set()
    wanted = sorted(shas)
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        found.update(
            session.scalars(
                select(Inbound.raw_sha256).where(
                    Inbound.raw_sha256.in_(chunk), Inbound.purged_at.is_(None)
                )
            )
        )
        found.update(
            session.scalars(
                select(Attachment.sha256).where(
                    Attachment.sha256.in_(chunk), Attachment.purged_at.is_(None)
                )
            )
        )
    for context in session.scalars(select(Outbox.context).where(Outbox.status.in_(UNSENT))):
        found.update(s for s in _shas_in(context) if s in shas)
    return found


def _shas_in(value: Any) -> Iterator[str]:
    """Every ``"sha256"`` value in an outbox context (its attachments to send)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "sha256" and isinstance(item, str):
                yield item
            else:
                yield from _shas_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _shas_in(item)
