"""Several `mailtriage run` on one PostgreSQL (issue 13): they share the work, and no
message is processed and no mail is sent twice."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from mailtriage.app import App
from mailtriage.outbound.outbox import OutboxStore
from mailtriage.store.models import Inbound
from mailtriage.store.outbound_models import Outbox

from conftest import make_settings
from mails import mail


@pytest.fixture
def pg_app(tmp_path: Path, pg_url: str) -> Iterator[App]:
    settings = make_settings(tmp_path, pg_url, storage={"fsync": False})
    with App.from_settings(settings) as app:
        app.prepare_database()
        yield app


def _in_thread(call: Callable[[], Any], seconds: float) -> Any:
    """``call()`` in a thread; fails if it has not returned after ``seconds`` (it
    waits for a row lock instead of skipping the row)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the claim waited for another instance's row lock"
    return result[0]


def test_claims_skip_the_rows_another_instance_is_claiming(pg_app: App) -> None:
    """While one instance's claim transaction holds rows (FOR UPDATE), another
    instance's claim takes the other rows at once: it neither waits for the lock nor
    takes a locked row. Inbound messages (worker) and outbox mails (sender) alike."""
    for i in range(6):
        pg_app.inbox.accept(mail(subject=f"m{i}", sender=f"k{i}@kunde.example"), "test")
    other = sa.create_engine(pg_app.engine.url)  # the other instance's connection
    try:
        with other.connect() as conn, conn.begin():
            locked = list(
                conn.scalars(select(Inbound.id).order_by(Inbound.id).limit(3).with_for_update())
            )
            claimed = _in_thread(lambda: pg_app.inbox.claim("b", 10, 60), 10)
            assert len(locked) == 3 and len(claimed) == 3
            assert not {c.id for c in claimed} & set(locked)
        # processed once: the rows b claimed and the 3 released ones make 6 tickets
        worker = pg_app.worker()
        pg_app.inbox.release("b")
        assert sum(worker.drain().values()) == 6

        store = OutboxStore(pg_app.factory)
        with other.connect() as conn, conn.begin():
            locked = list(
                conn.scalars(select(Outbox.id).order_by(Outbox.id).limit(2).with_for_update())
            )
            jobs = _in_thread(lambda: store.claim("sender-b", 10, 60), 10)
            assert len(locked) == 2 and len(jobs) == 4
            assert not {j.id for j in jobs} & set(locked)
    finally:
        other.dispose()
