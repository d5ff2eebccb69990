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
