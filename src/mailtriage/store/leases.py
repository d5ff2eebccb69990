"""Leases: how a worker takes rows (inbound messages, outbox mails) for itself.

One statement shape for every queue table: select the due rows FOR UPDATE SKIP
LOCKED (PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE instead), then
mark them taken by ``owner`` until the lease runs out. A worker that dies leaves its
rows to be taken again once the lease has expired.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session


def take_due(
    session: Session,
    model: Any,
    *,
    due: ColumnElement[bool],
    order_by: Sequence[Any],
    limit: int,
    owner: str,
    now: datetime,
    lease_seconds: float,
    status: str,
) -> list[int]:
    """Lease up to ``limit`` due rows of ``model`` to ``owner``; their ids, in order.

    ``model`` needs the columns id, status, lease_owner, lease_until and attempts;
    taking a row counts as one attempt.
    """
    ids = list(
        session.scalars(
            select(model.id)
            .where(due)
            .order_by(*order_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if ids:
        session.execute(
            update(model)
            .where(model.id.in_(ids))
            .values(
                status=status,
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempts=model.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
    return ids


def release_all(
    session: Session, model: Any, *, owner: str, leased_status: str, back_status: str
) -> int:
    """Hand back every lease of ``owner`` (clean shutdown): the rows are due again at
    once, and the taking does not count as an attempt."""
    result = session.execute(
        update(model)
        .where(model.lease_owner == owner, model.status == leased_status)
        .values(
            status=back_status,
            lease_owner=None,
            lease_until=None,
            attempts=model.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
