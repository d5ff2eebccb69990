"""The worker: retries, quarantine, crash recovery and several instances on one database."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from mailtriage import worker as worker_module
from mailtriage.app import App
from mailtriage.backfill import import_paths
from mailtriage.config import Settings
from mailtriage.store.models import Article, Inbound, Ticket, utcnow

from conftest import CLI, make_settings, stored_raw
from mails import mail


def count(app: App, model: Any) -> int:
    with app.factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_transient_database_error_is_retried(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    real = worker_module.store_analysis
    calls = {"n": 0}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(worker_module, "store_analysis", flaky)
    app.inbox.accept(mail(), "test")
    worker = app.worker()
    [first] = worker.run_once()
    assert first.outcome == "deferred"
    with app.factory() as session:
        row = session.scalars(select(Inbound)).one()
        assert row.status == "waiting" and row.stage == "store" and "locked" in row.reason
        row.next_attempt_at = utcnow()
        session.commit()
    [second] = worker.run_once()
    assert second.outcome == "created"
    assert count(app, Ticket) == 1


def test_unexpected_error_is_quarantined_after_max_attempts(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the store")

    monkeypatch.setattr(worker_module, "store_analysis", broken)
    app.inbox.accept(mail(), "test")
    worker = app.worker()
    outcomes = []
    for _ in range(app.settings.worker.max_attempts):
        with app.factory() as session:
            session.execute(Inbound.__table__.update().values(next_attempt_at=utcnow()))
            session.commit()
        outcomes += [p.outcome for p in worker.run_once()]
    assert outcomes[-1] == "quarantined"
    assert outcomes[:-1] == ["deferred"] * (len(outcomes) - 1)
    with app.factory() as session:
        row = session.scalars(select(Inbound)).one()
    assert row.status == "quarantined" and row.stage == "store"
    assert "bug in the store" in row.reason and "RuntimeError" in row.traceback
    assert stored_raw(app, row.id)  # the raw bytes are kept


def test_crashed_worker_lease_is_recovered_once(app: App) -> None:
    app.inbox.accept(mail(), "test")
    app.inbox.claim("crashed-worker", 10, lease_seconds=60)  # then it dies
    worker = app.worker()
    assert worker.run_once() == []  # the lease still holds
    with app.factory() as session:
        session.execute(
            Inbound.__table__.update().values(lease_until=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    [done] = worker.run_once()
    assert done.outcome == "created"
    assert count(app, Ticket) == 1


def test_poison_message_that_kills_workers_is_quarantined(app: App) -> None:
    acc = app.inbox.accept(mail(), "test")
    later = utcnow()
    for _ in range(app.settings.worker.max_attempts):  # every attempt "crashes"
        later += timedelta(seconds=app.settings.worker.lease_seconds + 1)
        assert app.inbox.claim("doomed", 1, app.settings.worker.lease_seconds, now=later)
    with app.factory() as session:
        session.execute(
            Inbound.__table__.update().values(lease_until=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    [result] = app.worker().run_once()
    assert result.outcome == "quarantined"
    with app.factory() as session:
        row = session.get(Inbound, acc.id)
        assert row is not None and row.stage == "worker" and "attempts" in (row.reason or "")


def _write_messages(directory: Path, prefix: str, n: int, trace: bytes = b"") -> None:
    directory.mkdir(parents=True)
    for i in range(n):
        (directory / f"{i}.eml").write_bytes(
            trace
            + mail(
                subject=f"{prefix} {i}",
                message_id=f"<{prefix}{i}@kunde.example>",
                # each from its own address: the cap of new tickets per address
                sender=f"{prefix}{i}@kunde.example",
            )
        )


def test_two_instances_share_one_database(tmp_path: Path, settings: Settings) -> None:
    """Two instances (own engines, own workers) import overlapping sets at once:
    every message becomes exactly one ticket, with unique ticket numbers."""
    _write_messages(tmp_path / "a", "shared", 30)
    # the same 30 messages as received by another path (other trace header)
    _write_messages(tmp_path / "b", "shared", 30, b"Received: from mx2 by us; Mon, 2 Nov 2026\r\n")
    _write_messages(tmp_path / "c", "only-c", 10)
    storage = {"dir": settings.storage.dir}
    s1 = make_settings(tmp_path, settings.database_url, storage=storage)
    # the second instance stores from its pool processes (own connections)
    s2 = make_settings(tmp_path, settings.database_url, storage=storage, worker={"processes": 2})
    with App.from_settings(s1) as app1, App.from_settings(s2) as app2:
        app1.prepare_database()
        app2.prepare_database()
        errors: list[BaseException] = []

        def run(app: App, paths: list[Path]) -> None:
            try:
                import_paths(app, paths)
            except BaseException as exc:
                errors.append(exc)

        t1 = threading.Thread(target=run, args=(app1, [tmp_path / "a"]))
        t2 = threading.Thread(target=run, args=(app2, [tmp_path / "b", tmp_path / "c"]))
        t1.start()
        t2.start()
        t1.join()
        t2.join()
        assert errors == []
        # anything deferred by a concurrent write is picked up by a later round
        for _ in range(20):
            with app1.factory() as session:
                session.execute(Inbound.__table__.update().values(next_attempt_at=utcnow()))
                session.commit()
            if not app1.worker().drain():
                break
        assert count(app1, Ticket) == 40
        assert count(app1, Article) == 40
        with app1.factory() as session:
            ids = session.scalars(select(Ticket.id)).all()
            statuses = set(session.scalars(select(Inbound.status)).all())
        assert len(set(ids)) == 40
        assert statuses == {"done"}


def test_analysis_error_is_deterministic_quarantined_at_once(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception from the pure analysis would recur on every attempt: no retries."""
    real = worker_module.analyse

    def fails_on_one(raw: bytes, *args: Any, **kwargs: Any) -> Any:
        if b"poison" in raw:
            raise ValueError("embedded null character")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(worker_module, "analyse", fails_on_one)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.eml").write_bytes(mail(subject="poison", message_id="<p@x.example>"))
    (tmp_path / "in" / "good.eml").write_bytes(mail(subject="fine", message_id="<g@x.example>"))
    report = cli.json("import", str(tmp_path / "in"))
    assert report["read"] == 2 and report["created"] == 1
    assert report["quarantined"] == 1 and report["pending"] == 0
    [row] = cli.json("quarantine", "list")
    shown = cli.json("quarantine", "show", str(row["id"]))
    assert shown["stage"] == "analyse" and "ValueError: embedded null character" in shown["reason"]
    assert shown["attempts"] == 1


def test_import_waits_for_its_deferred_messages(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent write (retried after 0.2 s) and a database error (backoff) are
    retried before import returns: nothing is left pending."""
    real = worker_module.store_analysis
    failures = [
        IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")),
        OperationalError("INSERT", {}, Exception("database is locked")),
    ]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(worker_module, "store_analysis", flaky)
    _write_messages(tmp_path / "in", "retry", 2)
    report = import_paths(app, [tmp_path / "in"])
    assert failures == []
    assert (report.created, report.pending, report.quarantined) == (2, 0, 0)


def test_a_mail_that_fails_to_store_leaves_the_others_of_its_group_stored(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group is stored in one transaction without savepoints; when one mail fails
    (after writing its ticket), that is rolled back and the group stored again mail by
    mail: the others are filed, nothing of the failing one stays, and it is retried
    and in the end quarantined with its stage and reason."""
    real = worker_module.store_analysis

    def failing(session: Any, inbound_id: int, owner: str, analysis: Any, **kw: Any) -> Any:
        applied = real(session, inbound_id, owner, analysis, **kw)
        if analysis.parsed.subject == "Kaputt":
            raise RuntimeError("bug in the store")
        return applied

    monkeypatch.setattr(worker_module, "store_analysis", failing)
    subjects = ["Drucker 0", "Drucker 1", "Kaputt", "Drucker 3", "Drucker 4"]
    for i, subject in enumerate(subjects):
        app.inbox.accept(
            mail(subject=subject, message_id=f"<m{i}@kunde.example>", body=f"Nummer {i}"),
            subject,
        )
    worker = app.worker()
    first = worker.run_once()
    assert [p.outcome for p in first] == ["created", "created", "deferred", "created", "created"]
    outcomes = []
    for _ in range(app.settings.worker.max_attempts - 1):
        with app.factory() as session:
            session.execute(Inbound.__table__.update().values(next_attempt_at=utcnow()))
            session.commit()
        outcomes += [p.outcome for p in worker.run_once()]
    assert outcomes[-1] == "quarantined"
    with app.factory() as session:
        keys = session.scalars(select(Article.message_key).order_by(Article.id)).all()
        tickets = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
        row = session.scalars(select(Inbound).where(Inbound.source == "Kaputt")).one()
    assert keys == [f"m{i}@kunde.example" for i in (0, 1, 3, 4)]
    assert tickets == ["Drucker 0", "Drucker 1", "Drucker 3", "Drucker 4"]
    assert row.status == "quarantined" and row.stage == "store"
    assert "RuntimeError: bug in the store" in row.reason


def test_a_lost_lease_in_a_group_loses_only_that_mail(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker took one mail of the group over: the others are stored."""
    real = worker_module.store_analysis

    def taken_over(session: Any, inbound_id: int, owner: str, analysis: Any, **kw: Any) -> Any:
        if analysis.parsed.subject == "Übernommen":
            owner = "another-worker"
        return real(session, inbound_id, owner, analysis, **kw)

    monkeypatch.setattr(worker_module, "store_analysis", taken_over)
    for i, subject in enumerate(["Drucker 0", "Übernommen", "Drucker 2"]):
        app.inbox.accept(mail(subject=subject, message_id=f"<l{i}@kunde.example>"), subject)
    processed = app.worker().run_once()
    assert [p.outcome for p in processed] == ["created", "lost", "created"]
    with app.factory() as session:
        tickets = session.scalars(select(Ticket.subject).order_by(Ticket.id)).all()
    assert tickets == ["Drucker 0", "Drucker 2"]
