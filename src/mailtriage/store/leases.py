"""Leases: how a worker takes rows (inbound messages, outbox mails) for itself.

One statement shape for every queue table: select the due rows FOR UPDATE SKIP
LOCKED (PostgreSQL; SQLite serialises writers with BEGIN IMMEDIATE instead), then
mark them taken by ``owner`` until the lease runs out. A worker that dies leaves its
rows to be taken again once the lease has expired.

Named leases (``hold_lease``) are the other kind: one row per thing only one
instance may do at a time (poll one IMAP folder), held by an owner until it expires
unless renewed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
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


def hold_lease(
    session: Session,
    model: Any,
    key: dict[str, Any],
    *,
    owner: str,
    now: datetime,
    lease_seconds: float,
    stale: str | None = None,
) -> str | None:
    """Take or renew the named lease ``key`` (column -> value) for ``owner``.

    None when ``owner`` holds it now (until ``now + lease_seconds``); otherwise the
    name of the live holder. A lease past its expiry is taken over, and so is one held
    by ``stale`` (a holder the caller knows to be dead). ``model`` needs
    the key columns, owner and expires_at. Two takers of a missing row race on its
    unique key: the loser gets IntegrityError at flush (the caller retries). On
    PostgreSQL the conditional UPDATE waits for a concurrent taker's commit and then
    sees its row, so exactly one wins.
    """
    match = [getattr(model, column) == value for column, value in key.items()]
    until = now + timedelta(seconds=lease_seconds)
    takeable = (model.owner == owner) | (model.expires_at < now)
    if stale is not None:
        takeable = takeable | (model.owner == stale)
    result = session.execute(
        update(model)
        .where(*match, takeable)
        .values(owner=owner, expires_at=until, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:  # type: ignore[attr-defined]
        return None
    holder = session.scalar(select(model.owner).where(*match))
    if holder is not None:
        return str(holder)
    session.add(model(**key, owner=owner, expires_at=until, updated_at=now))
    session.flush()
    return None


def drop_lease(session: Session, model: Any, key: dict[str, Any], *, owner: str) -> bool:
    """Give up the named lease (clean stop): another instance may take it at once."""
    match = [getattr(model, column) == value for column, value in key.items()]
    result = session.execute(
        delete(model)
        .where(*match, model.owner == owner)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
