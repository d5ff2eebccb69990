"""ticket requester index: a sender's recent tickets without a scan of every ticket

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ticket_requester", "ticket", ["requester_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_requester", table_name="ticket")
