"""The durable inbox and its leases, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select

from mailtriage.app import App
from mailtriage.config import Settings
from mailtriage.inbox import Incoming
from mailtriage.store.models import Inbound, utcnow


def test_accept_is_durable_and_idempotent(app: App) -> None:
    first = app.inbox.accept(b"Subject: a\r\n\r\nx", "test")
    again = app.inbox.accept(b"Subject: a\r\n\r\nx", "test-again")
    assert first.created and not again.created
    assert again.id == first.id
    with app.factory() as session:
        rows = session.scalars(select(Inbound)).all()
        assert len(rows) == 1 and rows[0].status == "received" and rows[0].source == "test"
        # a small message travels in its row: no blob file
        assert rows[0].raw == b"Subject: a\r\n\r\nx"
        assert app.inbox.raw(rows[0]) == b"Subject: a\r\n\r\nx"
    assert not app.blobs.exists(first.raw_sha256)


def test_messages_over_inline_max_are_blob_files(settings: Settings) -> None:
    """storage.inline_max_kb: larger messages are fsynced files in the blob store (their
    rows hold no bytes); 0 makes every message a file. Claims carry the kept bytes."""
    small, large = b"Subject: s\r\n\r\nx", b"Subject: l\r\n\r\n" + b"y" * 3000
    configured = replace(settings, storage=replace(settings.storage, inline_max_kb=2))
    with App.from_settings(configured) as app:
        app.prepare_database()
        accepted = app.inbox.accept_many([Incoming(small, "s"), Incoming(large, "s")])
        assert not app.blobs.exists(accepted[0].raw_sha256)
        assert app.blobs.get(accepted[1].raw_sha256) == large
        with app.factory() as session:
            rows = {r.id: r for r in session.scalars(select(Inbound))}
            assert rows[accepted[1].id].raw is None
            assert [app.inbox.raw(rows[a.id]) for a in accepted] == [small, large]
        claimed = {c.id: c for c in app.inbox.claim("w", 10, 60)}
        assert claimed[accepted[0].id].raw == small
        assert claimed[accepted[1].id].raw is None
    configured = replace(settings, storage=replace(settings.storage, inline_max_kb=0))
    with App.from_settings(configured) as app:
        one = app.inbox.accept(b"Subject: t\r\n\r\nz", "s")
        assert app.blobs.exists(one.raw_sha256)


def test_accept_many_with_repeats_in_one_batch(app: App) -> None:
    items = [
        Incoming(b"A: 1\r\n\r\n", "s"),
        Incoming(b"A: 2\r\n\r\n", "s"),
        Incoming(b"A: 1\r\n\r\n", "s"),
    ]
    result = app.inbox.accept_many(items)
    assert [r.created for r in result] == [True, True, False]
    assert result[0].id == result[2].id != result[1].id


def test_claims_are_exclusive_and_leases_expire(app: App) -> None:
    for i in range(10):
        app.inbox.accept(f"X-N: {i}\r\n\r\n".encode(), "s")
    a = app.inbox.claim("worker-a", 6, lease_seconds=60)
    b = app.inbox.claim("worker-b", 6, lease_seconds=60)
    assert len(a) == 6 and len(b) == 4
    assert not {c.id for c in a} & {c.id for c in b}
    assert app.inbox.claim("worker-c", 6, lease_seconds=60) == []
    # worker-a dies; once its lease has expired, its rows are due again
    later = utcnow() + timedelta(seconds=61)
    c = app.inbox.claim("worker-c", 10, lease_seconds=60, now=later)
    assert {x.id for x in c} == {x.id for x in a} | {x.id for x in b}
    assert all(x.attempts == 2 for x in c)
    # the dead worker cannot finish what it no longer owns
    assert not app.inbox.quarantine(a[0].id, "worker-a", stage="t", reason="r", traceback=None)


def test_concurrent_claimers_never_share_a_row(app: App) -> None:
    for i in range(40):
        app.inbox.accept(f"X-N: {i}\r\n\r\n".encode(), "s")
    got: dict[str, list[int]] = {}

    def claim(name: str) -> None:
        ids: list[int] = []
        while batch := app.inbox.claim(name, 3, lease_seconds=60):
            ids.extend(c.id for c in batch)
        got[name] = ids

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 40 and len(set(all_ids)) == 40


def test_defer_release_and_retry(app: App) -> None:
    acc = app.inbox.accept(b"X: 1\r\n\r\n", "s")
    [c] = app.inbox.claim("w", 1, 60)
    assert app.inbox.defer(
        c.id, "w", stage="store", reason="db down", traceback=None, delay_seconds=3600
    )
    assert app.inbox.claim("w", 1, 60) == []  # not due yet
    [c] = app.inbox.claim("w", 1, 60, now=utcnow() + timedelta(hours=2))
    assert app.inbox.release("w") == 1
    [c] = app.inbox.claim("w2", 1, 60, now=utcnow() + timedelta(hours=2))
    assert c.attempts == 2  # the released claim did not count
    assert app.inbox.quarantine(c.id, "w2", stage="parse", reason="bad", traceback="tb")
    assert app.inbox.retry(acc.id)
    assert not app.inbox.retry(acc.id)  # no longer quarantined
    [c] = app.inbox.claim("w3", 1, 60)
    assert c.id == acc.id and c.attempts == 1


def test_sqlite_commits_are_synced_before_an_accept_returns(tmp_path) -> None:
    """WAL with synchronous=NORMAL may lose the last commits on power loss: an inbound
    row whose 250 was sent must not be one of them."""
    from sqlalchemy import text

    from mailtriage.store.db import make_engine

    for durable, expected in ((True, 2), (False, 1)):  # FULL, NORMAL
        engine = make_engine(f"sqlite:///{tmp_path}/d{durable}.db", durable=durable)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == expected
        engine.dispose()
