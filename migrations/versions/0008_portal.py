"""portal: customer feedback per ticket, and the sign-in requests rate limits count

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column(
            "ticket_id", _ID, sa.ForeignKey("ticket.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "portal_request",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_portal_request_address", "portal_request", ["address", "created_at"])
    op.create_index("ix_portal_request_client", "portal_request", ["client", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_portal_request_client", table_name="portal_request")
    op.drop_index("ix_portal_request_address", table_name="portal_request")
    op.drop_table("portal_request")
    op.drop_table("feedback")
