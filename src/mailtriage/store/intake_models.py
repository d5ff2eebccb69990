"""Tables owned by the intake edges (IMAP positions)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailtriage.store.models import PK, Base, utcnow


class ImapCursor(Base):
    """How far one IMAP folder has been taken in, per UIDVALIDITY.

    ``last_uid`` is the highest UID whose message was accepted durably *and* moved or
    flagged. A new UIDVALIDITY starts a new row at 0; the raw sha256 idempotency of the
    inbox keeps the re-read messages from becoming duplicates.
    """

    __tablename__ = "imap_cursor"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(320))
    folder: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("account", "folder", "uidvalidity", name="uq_imap_cursor_position"),
    )


class ImapLease(Base):
    """Which instance polls one IMAP folder now (issue 13: several instances).

    One row per account and folder. The holder renews ``expires_at`` while it polls;
    another instance takes the folder over only once that has passed (the holder died
    or hangs), so two pollers never fetch the same folder at once.
    """

    __tablename__ = "imap_lease"
    id: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(320))
    folder: Mapped[str] = mapped_column(String(500))
    owner: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("account", "folder", name="uq_imap_lease_folder"),)
