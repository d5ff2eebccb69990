"""Tables of the outbound side: the outbox and the address suppression list.

Every mail we send is an ``outbox`` row whose key (ticket, kind, step) is UNIQUE, so a
restart, a retry or a second instance can never queue it twice; the Message-ID is
derived from that key and stored with the row, so a resend after a crash reuses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailtriage.store.models import PK, Base, utcnow


class OutboxStatus:
    PENDING = "pending"  # due at next_attempt_at (first try or a retry)
    SENDING = "sending"  # leased by a sender; an expired lease is due again
    SENT = "sent"
    FAILED = "failed"  # permanent: 5xx, or retries ran past the deadline
    SKIPPED = "skipped"  # not sent on purpose: suppressed address or rate limit
    ALL = (PENDING, SENDING, SENT, FAILED, SKIPPED)


class Outbox(Base):
    """One outgoing mail, from queued to sent (or failed, or skipped)."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # "ack", ...
    step: Mapped[int] = mapped_column(Integer, default=0)
    # Without angle brackets; derived from (ticket, kind, step) when queued.
    message_id: Mapped[str] = mapped_column(String(500), unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(10))
    # Everything the template needs, fixed when queued (see outbound.ack.MailContext).
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # 4xx and network errors are retried until then.
    deadline: Mapped[datetime] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "relay 127.0.0.1:25" or "maildir /path"
    sent_via: Mapped[str | None] = mapped_column(String(500), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("ticket_id", "kind", "step", name="uq_outbox_key"),
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_sent", "recipient", "sent_at"),
    )

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.ticket_id, self.kind, self.step)


class Suppression(Base):
    """An address we do not write to until ``until`` (its mailbox bounced permanently)."""

    __tablename__ = "suppression"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    until: Mapped[datetime] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket.id", ondelete="SET NULL"), nullable=True
    )
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
