"""The durability boundary: accept(raw, source) -> id; claim / defer / quarantine.

``accept`` returns only after the raw bytes are durable and the inbound row is
committed, so a caller may acknowledge the message (SMTP 250, IMAP move, backfill file
counted) as soon as it returns. A message of up to ``inline_max`` bytes travels in the
row itself (that commit makes it durable); a larger one is fsynced into the blob store
first.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.blobs import BlobStore
from mailtriage.config import StorageSettings
from mailtriage.store.db import write_gate
from mailtriage.store.leases import release_all, take_due
from mailtriage.store.models import Inbound, InboundStatus, utcnow
from mailtriage.store.tables import table
from mailtriage.store.write_gate import intake_first

_INBOUND = table(Inbound)


@dataclass(frozen=True)
class Accepted:
    id: int
    raw_sha256: str
    created: bool  # False: these exact bytes were accepted before


@dataclass(frozen=True)
class Claimed:
    id: int
    raw_sha256: str
    attempts: int
    source: str
    envelope: dict[str, Any] | None
    received_at: datetime | None = None
    raw: bytes | None = None  # kept in the row; None: a file in the blob store


@dataclass(frozen=True)
class Stored:
    """A raw message ready to be recorded in the inbox: its bytes in ``raw`` (to go
    into the row) or durably in the blob store (``raw`` None)."""

    sha256: str
    size: int
    source: str
    envelope: dict[str, Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True)
class Incoming:
    raw: bytes
    source: str
    envelope: dict[str, Any] | None = None


# storage.inline_max_kb's default
INLINE_MAX_BYTES = StorageSettings.inline_max_kb * 1024


class Inbox:
    def __init__(
        self,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        *,
        fsync: bool = True,
        inline_max: int = INLINE_MAX_BYTES,
    ) -> None:
        self.factory = factory
        self.blobs = blobs
        self.fsync = fsync
        self.inline_max = inline_max
        bind = factory.kw.get("bind")
        self._gate = write_gate(bind) if isinstance(bind, Engine) else None

    def accept(self, raw: bytes, source: str, envelope: dict[str, Any] | None = None) -> Accepted:
        """Store one message durably; idempotent on the sha256 of the raw bytes."""
        return self.accept_many([Incoming(raw, source, envelope)])[0]

    def accept_many(self, items: Sequence[Incoming]) -> list[Accepted]:
        """Store several messages: every blob is fsynced, then one commit for all rows."""
        return self.record(self.write_blobs(items))

    def write_blobs(self, items: Sequence[Incoming]) -> list[Stored]:
        """First half of accept_many: the raw bytes of large messages into the blob
        store (durably); small ones go into their rows at ``record``.

        Callers that hold large messages can drop the bytes before ``record``.
        """
        files = sum(1 for item in items if not self.inline(len(item.raw)))
        if files > 1 and self.fsync:  # the fsyncs of several files at once
            return list(_fsync_pool().map(self.prepare, items))
        return [self.prepare(item) for item in items]

    def inline(self, size: int) -> bool:
        """Whether a message of ``size`` bytes is kept in its row (no blob file)."""
        return size <= self.inline_max

    def prepare(self, item: Incoming) -> Stored:
        """``item`` ready for ``record``: the bytes kept for the row, or written durably
        into the blob store (then this blocks for the fsyncs)."""
        size = len(item.raw)
        if self.inline(size):
            sha = hashlib.sha256(item.raw).hexdigest()
            return Stored(sha, size, item.source, item.envelope, bytes(item.raw))
        sha = self.blobs.put(item.raw, durable=self.fsync)
        return Stored(sha, size, item.source, item.envelope)

    def raw(self, row: Inbound) -> bytes:
        """The raw bytes of a recorded message, from its row or the blob store."""
        return stored_raw(self.blobs, row.raw, row.raw_sha256)

    def record(self, stored: Sequence[Stored]) -> list[Accepted]:
        """Second half of accept_many: one committed inbound row per new blob."""
        try:
            with intake_first(self._gate), self.factory() as session, session.begin():
                return self._insert(session, stored)
        except IntegrityError:
            # Another instance accepted one of these bytes at the same moment: go one
            # by one so each row is either ours or theirs.
            return [self._record_one(item) for item in stored]

    def _insert(self, session: Session, stored: Sequence[Stored]) -> list[Accepted]:
        shas = {item.sha256 for item in stored}
        # Core statements on the table: the ORM's bulk path costs more than the insert
        # at SMTP rates.
        ids = {
            sha: row_id
            for sha, row_id in session.execute(
                select(_INBOUND.c.raw_sha256, _INBOUND.c.id).where(_INBOUND.c.raw_sha256.in_(shas))
            )
        }
        known = set(ids)
        rows: dict[str, dict[str, Any]] = {}
        for item in stored:
            if item.sha256 not in known and item.sha256 not in rows:
                now = utcnow()
                rows[item.sha256] = {
                    "raw_sha256": item.sha256,
                    "size": item.size,
                    "source": item.source[:500],
                    "envelope": item.envelope,
                    "status": InboundStatus.RECEIVED,
                    "attempts": 0,
                    "received_at": now,
                    "next_attempt_at": now,
                    "raw": item.raw,
                }
        if rows:
            # One multi-row INSERT ... RETURNING (SQLite >= 3.35 and PostgreSQL).
            inserted = session.execute(
                insert(_INBOUND).returning(_INBOUND.c.raw_sha256, _INBOUND.c.id),
                list(rows.values()),
            )
            ids.update({sha: row_id for sha, row_id in inserted})
        result: list[Accepted] = []
        for item in stored:
            created = item.sha256 in rows
            rows.pop(item.sha256, None)  # the same bytes twice in one batch: once new
            result.append(Accepted(ids[item.sha256], item.sha256, created))
        return result

    def _record_one(self, item: Stored) -> Accepted:
        try:
            with intake_first(self._gate), self.factory() as session, session.begin():
                return self._insert(session, [item])[0]
        except IntegrityError:
            with self.factory() as session:
                row_id = session.scalar(select(Inbound.id).where(Inbound.raw_sha256 == item.sha256))
            if row_id is None:  # pragma: no cover - constraint violated by something else
                raise
            return Accepted(row_id, item.sha256, False)

    # -- processing side ------------------------------------------------------------

    def claim(
        self, owner: str, limit: int, lease_seconds: float, now: datetime | None = None
    ) -> list[Claimed]:
        """Lease up to ``limit`` due rows; an expired lease (crashed worker) is due again."""
        now = now or utcnow()
        due = or_(
            (Inbound.status.in_(InboundStatus.CLAIMABLE)) & (Inbound.next_attempt_at <= now),
            (Inbound.status == InboundStatus.PROCESSING) & (Inbound.lease_until < now),
        )
        with self.factory() as session, session.begin():
            ids = take_due(
                session,
                Inbound,
                due=due,
                order_by=[Inbound.id],
                limit=limit,
                owner=owner,
                now=now,
                lease_seconds=lease_seconds,
                status=InboundStatus.PROCESSING,
            )
            if not ids:
                return []
            rows = session.execute(
                select(
                    Inbound.id,
                    Inbound.raw_sha256,
                    Inbound.attempts,
                    Inbound.source,
                    Inbound.envelope,
                    Inbound.received_at,
                    Inbound.raw,
                )
                .where(Inbound.id.in_(ids))
                .order_by(Inbound.id)
            )
            return [Claimed(*row) for row in rows]

    def defer(
        self,
        inbound_id: int,
        owner: str,
        *,
        stage: str,
        reason: str,
        traceback: str | None,
        delay_seconds: float,
        now: datetime | None = None,
    ) -> bool:
        """Give a leased row back to retry later; False if the lease was lost."""
        now = now or utcnow()
        return self._update_leased(
            inbound_id,
            owner,
            status=InboundStatus.WAITING,
            next_attempt_at=now + timedelta(seconds=delay_seconds),
            stage=stage,
            reason=reason[:4000],
            traceback=traceback,
        )

    def quarantine(
        self,
        inbound_id: int,
        owner: str | None,
        *,
        stage: str,
        reason: str,
        traceback: str | None,
    ) -> bool:
        return self._update_leased(
            inbound_id,
            owner,
            status=InboundStatus.QUARANTINED,
            stage=stage,
            reason=reason[:4000],
            traceback=traceback,
            processed_at=utcnow(),
        )

    def release(self, owner: str) -> int:
        """Hand back every lease of ``owner`` (clean shutdown): due again at once."""
        with self.factory() as session, session.begin():
            return release_all(
                session,
                Inbound,
                owner=owner,
                leased_status=InboundStatus.PROCESSING,
                back_status=InboundStatus.RECEIVED,
            )

    def retry(self, inbound_id: int) -> bool:
        """Send a quarantined message through the pipeline again."""
        with self.factory() as session, session.begin():
            result = session.execute(
                update(Inbound)
                .where(Inbound.id == inbound_id, Inbound.status == InboundStatus.QUARANTINED)
                .values(
                    status=InboundStatus.RECEIVED,
                    attempts=0,
                    next_attempt_at=utcnow(),
                    lease_owner=None,
                    lease_until=None,
                )
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _update_leased(self, inbound_id: int, owner: str | None, **values: Any) -> bool:
        with self.factory() as session, session.begin():
            stmt = update(Inbound).where(Inbound.id == inbound_id)
            if owner is not None:
                stmt = stmt.where(
                    Inbound.lease_owner == owner, Inbound.status == InboundStatus.PROCESSING
                )
            result = session.execute(
                stmt.values(lease_owner=None, lease_until=None, **values).execution_options(
                    synchronize_session=False
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
# fsyncs of separate files that overlap are written in one journal commit: a group of
# 64 blobs is durable in the time of a few sequential fsyncs (bench/ingest.py).
FSYNC_THREADS = 16


def _fsync_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(FSYNC_THREADS, thread_name_prefix="blob-fsync")
        return _POOL


def stored_raw(blobs: BlobStore, kept: bytes | None, raw_sha256: str) -> bytes:
    """A recorded message's raw bytes: ``kept`` in its row, else from the blob store."""
    return kept if kept is not None else blobs.get(raw_sha256)
