"""sla: the due times of a ticket's SLA clocks, indexed for the jobs and `--due`

Existing tickets get NULL (no clock) until `mailtriage sla recompute --all`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)
_COLUMNS = (
    "sla_first_response_due",
    "sla_next_update_due",
    "sla_solution_due",
    "sla_escalation_due",
    "sla_due_at",
    "sla_next_at",
)


def upgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, _TIME, nullable=True))
    op.create_index("ix_ticket_sla_next_at", "ticket", ["sla_next_at"])
    op.create_index("ix_ticket_sla_due_at", "ticket", ["sla_due_at"])


def downgrade() -> None:
    op.drop_index("ix_ticket_sla_due_at", table_name="ticket")
    op.drop_index("ix_ticket_sla_next_at", table_name="ticket")
    with op.batch_alter_table("ticket") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
