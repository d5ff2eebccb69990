"""inline raw: small messages' raw bytes in the inbound row instead of a blob file

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound") as batch:
        batch.add_column(sa.Column("raw", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Rows whose bytes live only here would lose them: refuse rather than lose mail.
    bind = op.get_bind()
    inline = bind.execute(sa.text("SELECT count(*) FROM inbound WHERE raw IS NOT NULL")).scalar()
    if inline:
        raise RuntimeError(
            f"{inline} inbound messages are stored in the database only (inbound.raw); "
            "downgrading would lose them"
        )
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("raw")
