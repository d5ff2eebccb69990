"""SQLAlchemy 2 tables. Every "only once" is a UNIQUE constraint.

The schema itself is created by the Alembic migrations in ``migrations/``; these
classes must match them (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Integer primary keys: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
PK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class InboundStatus:
    RECEIVED = "received"
    PROCESSING = "processing"
    WAITING = "waiting"
    DONE = "done"
    QUARANTINED = "quarantined"
    CLAIMABLE = (RECEIVED, WAITING)


class Outcome:
    CREATED = "created"
    APPENDED = "appended"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


class Inbound(Base):
    """One raw message as received: the durability boundary."""

    __tablename__ = "inbound"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    raw_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(500))
    envelope: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default=InboundStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # What happened: created / appended / duplicate / ignored (when done).
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    message_id: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket.id", ondelete="SET NULL"), nullable=True
    )
    loop_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    loop_reasons: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    warnings: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Quarantine / last failure: the stage, a one-line reason and the traceback.
    stage: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    processed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # (migration 0007) When `mailtriage purge` deleted the raw bytes (retention); the
    # row, its sha256 (it still recognises a redelivery) and its ticket's text stay.
    purged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # (migration 0011) The raw bytes of a message of up to storage.inline_max_kb, kept
    # in the row: the commit that records it makes them durable, with no file and no
    # fsync of their own (SMTP's group commit covers many messages with one). NULL:
    # the bytes are a file in the blob store (larger messages), or purged. Deferred:
    # loading a row does not load them.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)

    __table_args__ = (Index("ix_inbound_status_next", "status", "next_attempt_at"),)


class Organisation(Base):
    __tablename__ = "organisation"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisation.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    organisation: Mapped[Organisation | None] = relationship()


class Ticket(Base):
    """A ticket; its human reference is ``<prefix>-<id:06d>`` (the id is unique)."""

    __tablename__ = "ticket"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="new")
    requester_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), nullable=True)
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisation.id"), nullable=True
    )
    level: Mapped[str | None] = mapped_column(String(4), nullable=True)
    category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    priority: Mapped[str | None] = mapped_column(String(10), nullable=True)
    language: Mapped[str | None] = mapped_column(String(10), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    classification_reasons: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The conversation: who answers (an agent's address), when we first answered a
    # human word, when the ticket was last resolved (the reopen window counts from it).
    assignee: Mapped[str | None] = mapped_column(String(320), nullable=True)
    first_response_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # SLA clocks (migration 0007), recomputed from the events on every change
    # (store/sla_store.py): the due time of each running clock (NULL: met, paused or
    # none), the earliest of the targets (`tickets list --due`), and when the next SLA
    # action falls due (the jobs' one indexed query).
    sla_first_response_due: Mapped[datetime | None] = mapped_column(nullable=True)
    sla_next_update_due: Mapped[datetime | None] = mapped_column(nullable=True)
    sla_solution_due: Mapped[datetime | None] = mapped_column(nullable=True)
    sla_escalation_due: Mapped[datetime | None] = mapped_column(nullable=True)
    sla_due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    sla_next_at: Mapped[datetime | None] = mapped_column(nullable=True)

    requester: Mapped[Contact | None] = relationship()
    organisation: Mapped[Organisation | None] = relationship()
    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket", order_by="Article.id", cascade="all, delete-orphan"
    )
    events: Mapped[list[Event]] = relationship(order_by="Event.id", cascade="all, delete-orphan")

    __table_args__ = (
        Index("ix_ticket_status", "status"),
        Index("ix_ticket_sla_next_at", "sla_next_at"),
        Index("ix_ticket_sla_due_at", "sla_due_at"),
        # a sender's tickets of the last minutes, read for every message it sends
        Index("ix_ticket_requester", "requester_id", "created_at"),
    )


class Article(Base):
    """One email in a ticket (inbound from a customer, or outbound from us)."""

    __tablename__ = "article"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    inbound_id: Mapped[int | None] = mapped_column(
        ForeignKey("inbound.id"), nullable=True, unique=True
    )
    direction: Mapped[str] = mapped_column(String(3), default="in")
    sender: Mapped[str] = mapped_column(String(320), default="")
    sender_name: Mapped[str] = mapped_column(String(255), default="")
    recipients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    cc: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reply_to: Mapped[list[Any]] = mapped_column(JSON, default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None] = mapped_column(nullable=True)
    # Normalised Message-ID, or "derived:<hash>" for a message without one.
    message_key: Mapped[str] = mapped_column(String(1000))
    message_id: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    in_reply_to: Mapped[list[Any]] = mapped_column(JSON, default=list)
    references: Mapped[list[Any]] = mapped_column(JSON, default=list)
    content_key: Mapped[str] = mapped_column(String(64))
    # The new text of the message (quoted history and signature set apart); the whole
    # text is ``full_text`` (NULL when it is the same).
    text: Mapped[str] = mapped_column(Text, default="")
    html: Mapped[str | None] = mapped_column(Text, nullable=True)
    defects: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # (migration 0006 appended these; the order here is the table's)
    full_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    # An internal note (an agent's #note): never shown or sent to a customer.
    internal: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Who wrote an outgoing article or a note (an agent's address); NULL: the system.
    author: Mapped[str | None] = mapped_column(String(320), nullable=True)

    ticket: Mapped[Ticket] = relationship(back_populates="articles")
    attachments: Mapped[list[Attachment]] = relationship(
        order_by="Attachment.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("message_key", "content_key", name="uq_article_message_content"),
        Index("ix_article_message_key", "message_key"),
        Index("ix_article_ticket", "ticket_id"),
    )


class Attachment(Base):
    __tablename__ = "attachment"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_id: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    is_inline: Mapped[bool] = mapped_column(Boolean, default=False)
    is_screenshot: Mapped[bool] = mapped_column(Boolean, default=False)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ocr_text: Mapped[str | None] = mapped_column(Text, nullable=True)  # screenshots (OCR)
    # (migration 0007) When `mailtriage purge` deleted the bytes; name, type, size stay.
    purged_at: Mapped[datetime | None] = mapped_column(nullable=True)

    __table_args__ = (Index("ix_attachment_article", "article_id"),)


class Event(Base):
    """Audit trail: what happened to a ticket (or an inbound message) and why."""

    __tablename__ = "event"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("ticket.id", ondelete="CASCADE"), nullable=True
    )
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320), default="system")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_event_ticket", "ticket_id"),)


class ArticleRef(Base):
    """One row per inbound article and Message-ID it carries: its own, In-Reply-To
    and References. Finds the tickets opened by replies that arrived before their
    parent (the parent adopts them).

    ``first`` is True on the row of the first article that carried a Message-ID, NULL
    on the others; UNIQUE (message_key, first) (NULLs never collide) makes two
    messages of one thread stored at the same moment collide: one fails with an
    IntegrityError, is retried, and then sees the other. The ticket is the article's
    (articles move when tickets are merged, the rows follow them).
    """

    __tablename__ = "article_ref"
    article_id: Mapped[int] = mapped_column(
        ForeignKey("article.id", ondelete="CASCADE"), primary_key=True
    )
    message_key: Mapped[str] = mapped_column(String(1000), primary_key=True)
    first: Mapped[bool | None] = mapped_column(Boolean, nullable=True)

    __table_args__ = (UniqueConstraint("message_key", "first", name="uq_article_ref_first"),)


class Participant(Base):
    """Someone besides the requester who takes part in a ticket's conversation: Cc'd on
    the customer's mail, or the end user whose mail a helpdesk forwarded. Participants
    may reply to the ticket and get our replies."""

    __tablename__ = "participant"
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower-cased
    name: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(20))  # "cc", "to", "forwarded"
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_participant_address", "address"),)


class TicketLink(Base):
    """A ticket opened because a message could not join another one (a stranger's
    reply, a reply after the reopen window): the link says why."""

    __tablename__ = "ticket_link"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    linked_ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("ticket_id", "linked_ticket_id", name="uq_ticket_link"),
        Index("ix_ticket_link_linked", "linked_ticket_id"),
    )


class Feedback(Base):
    """A customer's rating of a resolved ticket (1-5, optional comment): one per
    ticket, changeable for ``portal.feedback_change_days`` after it was first given."""

    __tablename__ = "feedback"
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True
    )
    address: Mapped[str] = mapped_column(String(320))  # who answered (lower-cased)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(10))  # "web" or "mail"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PortalRequest(Base):
    """One request for an organisation sign-in link (rate limits count these)."""

    __tablename__ = "portal_request"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(320))  # lower-cased, as typed
    client: Mapped[str] = mapped_column(String(100))  # the client's IP address
    sent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_portal_request_address", "address", "created_at"),
        Index("ix_portal_request_client", "client", "created_at"),
    )
