"""retention: when a raw message or an attachment's bytes were purged

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Nullable, no default: instant on PostgreSQL, no table rewrite on SQLite either.
    op.add_column("inbound", sa.Column("purged_at", _TIME, nullable=True))
    op.add_column("attachment", sa.Column("purged_at", _TIME, nullable=True))


def downgrade() -> None:
    for table in ("attachment", "inbound"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("purged_at")
