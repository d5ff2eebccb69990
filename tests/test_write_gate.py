"""Intake first on SQLite: a transaction that is not intake waits at BEGIN while mail is
being accepted, so a busy worker cannot keep SMTP or an import waiting (SQLite's own
lock wait polls with sleeps and favours whoever holds the lock again)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.blobs import BlobStore
from mailtriage.inbox import Inbox
from mailtriage.store import db
from mailtriage.store.write_gate import GateTimeout, WriteGate, intake_first


def _engine(tmp_path: Path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    db.prepare(engine)
    return engine


@dataclass
class Gated:
    engine: Engine
    gate: WriteGate
    factory: sessionmaker[Session]


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[Gated]:
    """A SQLite database with its write gate."""
    engine = _engine(tmp_path)
    gate = db.write_gate(engine)
    assert gate is not None
    yield Gated(engine, gate, db.session_factory(engine))
    engine.dispose()


def test_a_worker_transaction_waits_for_intake_in_progress(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    gate = db.write_gate(engine)
    assert gate is not None
    factory = db.session_factory(engine)
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def intake() -> None:
        with intake_first(gate):
            inside.set()
            release.wait(10)
            with factory() as session, session.begin():
                session.execute(text("select 1"))
                order.append("intake")

    def worker() -> None:
        with factory() as session, session.begin():
            session.execute(text("select 1"))
            order.append("worker")

    t_intake = threading.Thread(target=intake)
    t_intake.start()
    assert inside.wait(10)
    t_worker = threading.Thread(target=worker)
    t_worker.start()
    t_worker.join(0.5)
    assert t_worker.is_alive(), "the worker's BEGIN did not wait for the intake"
    assert order == []
    release.set()
    t_intake.join(10)
    t_worker.join(10)
    assert order == ["intake", "worker"]
    engine.dispose()


def test_another_process_waits_too_and_intake_is_never_held_up_by_the_gate(
    tmp_path: Path,
) -> None:
    """The gate is a lock file, so a worker in another process (the daemon's worker)
    waits as well; intake itself passes while another intake holds the gate."""
    engine = _engine(tmp_path)
    gate = db.write_gate(engine)
    assert gate is not None
    inbox = Inbox(db.session_factory(engine), BlobStore(tmp_path / "blobs"), fsync=False)
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    child = (
        "import sys, time\n"
        "from mailtriage.store import db\n"
        f"engine = db.make_engine({url!r})\n"
        "with engine.begin() as conn: pass\n"
        "print(time.time())\n"
    )
    with gate.intake():
        # another intake in this process is not blocked by the held gate
        accepted = inbox.accept(b"Subject: hi\r\n\r\nhello\r\n", "test")
        assert accepted.created
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None, "a worker in another process began during intake"
        released = time.time()
    out, _ = proc.communicate(timeout=30)
    assert float(out) >= released
    engine.dispose()


def test_no_gate_for_postgresql_or_memory() -> None:
    assert db.write_gate(db.make_engine("sqlite://")) is None
    assert db.write_gate(db.make_engine("postgresql+psycopg://u@127.0.0.1:1/x")) is None


def test_intake_waits_for_a_transaction_in_progress_and_gets_in_right_after(
    gated: Gated, tmp_path: Path
) -> None:
    """A transaction that is not intake keeps the gate until its commit: intake waits
    for the gate (in steps of at most a millisecond), not in SQLite's lock wait (sleeps
    of up to 100 ms), and is in right after the commit."""
    factory = gated.factory
    inbox = Inbox(factory, BlobStore(tmp_path / "blobs"), fsync=False)
    began = threading.Event()
    committed: list[float] = []
    accepted_at: list[float] = []

    def worker() -> None:
        with factory() as session, session.begin():
            session.execute(text("select 1"))
            began.set()
            time.sleep(0.5)
        committed.append(time.monotonic())

    t_worker = threading.Thread(target=worker)
    t_worker.start()
    assert began.wait(10)
    accepted = inbox.accept(b"Subject: hi\r\n\r\nhello\r\n", "test")
    accepted_at.append(time.monotonic())
    t_worker.join(10)
    assert accepted.created
    assert committed and accepted_at[0] >= committed[0]
    assert accepted_at[0] - committed[0] < 0.05, "intake did not get in right after the commit"


def test_a_rollback_or_a_failed_transaction_lets_go_of_the_gate(gated: Gated) -> None:
    gate, factory = gated.gate, gated.factory
    try:
        with factory() as session, session.begin():
            session.execute(text("select 1"))
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with gate.intake(wait_seconds=1):
        pass  # not held by the rolled-back transaction
    with factory() as session:
        session.execute(text("select 1"))  # begins; the session's close rolls back
    with gate.intake(wait_seconds=1):
        pass


def test_intake_gives_up_with_a_clear_error_when_a_transaction_holds_on(gated: Gated) -> None:
    gate, factory = gated.gate, gated.factory
    with factory() as session, session.begin():
        session.execute(text("select 1"))
        started = time.monotonic()
        with pytest.raises(GateTimeout, match="stayed busy"), gate.intake(wait_seconds=0.3):
            pass
        assert 0.3 <= time.monotonic() - started < 2


def test_a_writer_gives_up_like_a_locked_database_when_the_gate_is_never_let_go(
    gated: Gated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that never ends (a stopped process in its transaction) is an error
    after the wait, not a hang: the writer's BEGIN raises SQLAlchemy's OperationalError,
    which the worker loop, the sender and the CLI already treat as the database being
    unavailable for now; then the worker files the message once the gate is free."""
    from sqlalchemy.exc import OperationalError

    from mailtriage.config import settings_from_dict
    from mailtriage.worker import Worker

    from conftest import stuck_writer

    with stuck_writer(tmp_path / "gate.db", monkeypatch):
        started = time.monotonic()
        with (
            pytest.raises(OperationalError, match=r"stayed busy for 0\.3 s") as raised,
            gated.factory() as session,
            session.begin(),
        ):
            session.execute(text("select 1"))
        assert isinstance(raised.value.orig, GateTimeout)
        assert 0.3 <= time.monotonic() - started < 2
    # free again: intake and the worker go on
    settings = settings_from_dict(
        {"storage": {"dir": str(tmp_path / "var")}, "worker": {"processes": 1}}
    )
    inbox = Inbox(gated.factory, BlobStore(tmp_path / "blobs"))
    inbox.accept(b"From: a@kunde.example\r\nSubject: x\r\n\r\nHallo\r\n", "test")
    worker = Worker(inbox, gated.factory, inbox.blobs, settings)
    assert [p.outcome for p in worker.run_once()] == ["created"]


def test_a_writer_beginning_again_at_once_cannot_keep_intake_waiting(
    gated: Gated, tmp_path: Path
) -> None:
    """A worker storing chunk after chunk commits and begins again within microseconds;
    intake waiting for the gate (in steps of up to a millisecond) still gets in after
    the transaction in progress, not after the whole run."""
    factory = gated.factory
    inbox = Inbox(factory, BlobStore(tmp_path / "blobs"), fsync=False)
    stop = threading.Event()
    transactions = 0

    def writer() -> None:
        nonlocal transactions
        while not stop.is_set():
            with factory() as session, session.begin():
                session.execute(text("select 1"))
                time.sleep(0.01)
            transactions += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        waits = []
        for n in range(10):
            started = time.monotonic()
            inbox.accept(f"Subject: {n}\r\n\r\nhello\r\n".encode(), "test")
            waits.append(time.monotonic() - started)
    finally:
        stop.set()
        thread.join(10)
    assert transactions > 5  # the writer kept going meanwhile
    assert max(waits) < 0.2, waits
