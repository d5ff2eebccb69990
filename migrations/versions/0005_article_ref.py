"""article_ref: the Message-IDs each inbound article carries (threading of replies
that arrive before their parent)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "article_ref",
        sa.Column("article_id", _ID, nullable=False),
        sa.Column("message_key", sa.String(length=1000), nullable=False),
        sa.Column("first", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(["article_id"], ["article.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("article_id", "message_key"),
        sa.UniqueConstraint("message_key", "first", name="uq_article_ref_first"),
    )
    _backfill()


def _backfill() -> None:
    """The rows of the inbound articles already stored, the oldest article first
    (``first`` on the first carrier of each Message-ID). In Python: reading JSON lists
    is not portable SQL."""
    conn = op.get_bind()
    article = sa.table(
        "article",
        sa.column("id", _ID),
        sa.column("direction", sa.String()),
        sa.column("message_key", sa.String()),
        sa.column("in_reply_to", sa.JSON()),
        sa.column("references", sa.JSON()),
    )
    ref = sa.table(
        "article_ref",
        sa.column("article_id", _ID),
        sa.column("message_key", sa.String()),
        sa.column("first", sa.Boolean()),
    )
    seen: set[str] = set()
    rows: list[dict[str, object]] = []
    result = conn.execute(
        sa.select(article.c.id, article.c.message_key, article.c.in_reply_to, article.c.references)
        .where(article.c.direction == "in")
        .order_by(article.c.id)
    )
    for article_id, key, in_reply_to, references in result.all():
        keys = (key, *(in_reply_to or ()), *reversed(references or ()))
        for ident in dict.fromkeys(k for k in keys if isinstance(k, str) and 0 < len(k) <= 1000):
            rows.append(
                {"article_id": article_id, "message_key": ident, "first": ident not in seen or None}
            )
            seen.add(ident)
    for start in range(0, len(rows), _BATCH):
        conn.execute(ref.insert(), rows[start : start + _BATCH])


def downgrade() -> None:
    op.drop_table("article_ref")
