"""conversation: participants, ticket links, notes and new text on articles, the
assignee and the first-response and resolve times on tickets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("assignee", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("first_response_at", _TIME, nullable=True))
        batch.add_column(sa.Column("resolved_at", _TIME, nullable=True))
    with op.batch_alter_table("article") as batch:
        batch.add_column(sa.Column("full_text", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("internal", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("author", sa.String(length=320), nullable=True))
    op.create_table(
        "participant",
        sa.Column("ticket_id", _ID, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("inbound_id", _ID, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound.id"]),
        sa.PrimaryKeyConstraint("ticket_id", "address"),
    )
    op.create_index("ix_participant_address", "participant", ["address"])
    op.create_table(
        "ticket_link",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", _ID, nullable=False),
        sa.Column("linked_ticket_id", _ID, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("inbound_id", _ID, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["ticket.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["linked_ticket_id"], ["ticket.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_id", "linked_ticket_id", name="uq_ticket_link"),
    )
    op.create_index("ix_ticket_link_linked", "ticket_link", ["linked_ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_link_linked", table_name="ticket_link")
    op.drop_table("ticket_link")
    op.drop_index("ix_participant_address", table_name="participant")
    op.drop_table("participant")
    with op.batch_alter_table("article") as batch:
        batch.drop_column("author")
        batch.drop_column("internal")
        batch.drop_column("full_text")
    with op.batch_alter_table("ticket") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("first_response_at")
        batch.drop_column("assignee")
