"""Several `mailtriage run` on one PostgreSQL (issue 13): they share the work, and no
message is processed and no mail is sent twice."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from mailtriage.app import App
from mailtriage.outbound.outbox import OutboxStore
from mailtriage.store.intake_models import ImapCursor
from mailtriage.store.models import Inbound, Ticket
from mailtriage.store.outbound_models import Outbox
from relay import Relay
from test_daemon import _subject as _subject_of
from test_daemon import ticket_subjects, write_config
from test_http import http_port, readyz

from conftest import make_settings
from mails import mail
from servers import Daemon, dovecot_server, folder_messages, folder_uids, wait_for


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


# -- two daemons on one PostgreSQL -----------------------------------------------------

SMTP_MESSAGES = 1000
IMAP_MESSAGES = 60
SMTP_CONNECTIONS = 4  # per daemon


def _instance_config(
    path: Path, database_url: str, storage: Path, relay: Relay, account: dict[str, Any]
) -> Path:
    """One instance: its own SMTP port, the shared database, blobs, relay and mailbox."""

    def table(values: dict[str, Any]) -> str:
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())

    sections: dict[str, dict[str, Any]] = {
        "database": {"url": database_url},
        "storage": {"dir": str(storage), "fsync": False},
        "worker": {
            "processes": 1,
            "batch_size": 16,
            "lease_seconds": 10.0,
            "retry_base_seconds": 0.1,
            "poll_interval_seconds": 0.2,
        },
        "smtp": {"port": 0},
        "service": {"shutdown_grace_seconds": 5},
        "outbound": {
            **relay.settings(),
            "poll_interval_seconds": 0.3,
            "batch_size": 10,
            "lease_seconds": 8.0,
            "retry_base_seconds": 0.5,
        },
        "imap": {
            "enabled": True,
            "reconnect_initial_seconds": 0.1,
            "reconnect_max_seconds": 1.0,
            "lease_seconds": 3.0,
        },
    }
    text = "".join(f"[{name}]\n{table(values)}" for name, values in sections.items())
    text += "[[imap.accounts]]\n" + table(account)
    path.write_text(text, encoding="utf-8")
    return path


def _smtp_stream(
    subjects: list[str], ports: list[int], acked: list[str], first: int, gate: threading.Event
) -> Callable[[], None]:
    """A sending MTA: one connection, message after message; when its daemon is gone,
    it sends the message it was sending and the rest to the next one (same bytes).
    After a third of its messages it waits for ``gate``."""

    def run() -> None:
        index = first
        client: smtplib.SMTP | None = None
        for number, subject in enumerate(subjects):
            if number == len(subjects) // 3:
                gate.wait(120)
            raw = mail(subject=subject, sender=_sender(subject), message_id=f"<{_slug(subject)}@k>")
            while True:
                try:
                    if client is None:
                        client = smtplib.SMTP("127.0.0.1", ports[index % len(ports)], timeout=30)
                    client.sendmail(_sender(subject), ["support@dataandmore.com"], raw)
                    acked.append(subject)
                    break
                except (OSError, smtplib.SMTPException):
                    with contextlib.suppress(Exception):
                        if client is not None:
                            client.close()
                    client = None
                    index += 1  # the daemon died: the other one takes the mail
        if client is not None:
            with contextlib.suppress(Exception):
                client.quit()

    return run


def _slug(subject: str) -> str:
    return subject.replace(" ", "-")


def _sender(subject: str) -> str:
    return f"{_slug(subject)}@kunde.example"  # each message its own customer


def _db_counts(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "subjects": Counter(conn.scalars(select(Ticket.subject))),
            "inbound": dict(
                conn.execute(select(Inbound.status, func.count()).group_by(Inbound.status)).all()
            ),
            "outbox": dict(
                conn.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).all()
            ),
        }


def test_two_daemons_on_one_postgresql_share_the_work_and_survive_a_kill(
    pg_url: str, tmp_path: Path
) -> None:
    """Two `mailtriage run` on one PostgreSQL, one blob directory, one IMAP mailbox and
    one relay; 1,000 messages over SMTP to both and some over IMAP; one daemon is
    killed with SIGKILL half-way. Every message becomes exactly one ticket, every
    customer gets one acknowledgement, and nothing is left pending."""
    storage = tmp_path / "var"
    with dovecot_server() as server, Relay() as relay:
        user = server.add_user()
        account = server.account(user, idle=True, poll_interval_seconds=2)
        a_cfg = _instance_config(tmp_path / "a.toml", pg_url, storage, relay, account)
        b_cfg = _instance_config(tmp_path / "b.toml", pg_url, storage, relay, account)
        smtp_subjects = [f"smtp {i}" for i in range(SMTP_MESSAGES)]
        imap_subjects = [f"imap {i}" for i in range(IMAP_MESSAGES)]
        acked: list[str] = []
        started = time.monotonic()
        with Daemon(a_cfg) as a:
            a_port = a.smtp_port()
            a.wait_for_line("connected to 127.0.0.1")  # A polls the mailbox
            with Daemon(b_cfg) as b:
                b_port = b.smtp_port()
                b.wait_for_line("is polled by")  # B stands by for it
                gate = threading.Event()
                streams = [
                    threading.Thread(
                        target=_smtp_stream(
                            smtp_subjects[n :: 2 * SMTP_CONNECTIONS],
                            [a_port, b_port],
                            acked,
                            n,
                            gate,
                        )
                    )
                    for n in range(2 * SMTP_CONNECTIONS)
                ]
                for thread in streams:
                    thread.start()
                imap = server.client(user)
                try:
                    for subject in imap_subjects[: IMAP_MESSAGES // 2]:
                        imap.append("INBOX", mail(subject=subject, sender=_sender(subject)))
                    # A third is in; both daemons are processing and sending: go on
                    wait_for(
                        lambda: all(d.text().count(" sent via ") >= 10 for d in (a, b)),
                        timeout=120,
                        what="both daemons to send acknowledgements",
                    )
                    gate.set()
                    wait_for(
                        lambda: len(acked) >= SMTP_MESSAGES * 0.6,
                        timeout=120,
                        what="60% of the SMTP messages",
                    )
                    a.kill()  # SIGKILL, mid-stream, while it holds the IMAP folder
                    for subject in imap_subjects[IMAP_MESSAGES // 2 :]:
                        imap.append("INBOX", mail(subject=subject, sender=_sender(subject)))
                finally:
                    imap.logout()
                    for thread in streams:
                        thread.join(120)
                assert sorted(acked) == sorted(smtp_subjects)  # every one got its 250
                b.wait_for_line("taking INBOX over")
                engine = sa.create_engine(pg_url)
                try:

                    def settled() -> dict[str, Any] | None:
                        counts = _db_counts(engine)
                        done = (
                            sum(counts["subjects"].values()) >= SMTP_MESSAGES + IMAP_MESSAGES
                            and set(counts["inbound"]) == {"done"}
                            and set(counts["outbox"]) == {"sent"}
                        )
                        return counts if done else None

                    counts = wait_for(settled, timeout=240, interval=1.0, what="all settled")
                finally:
                    engine.dispose()
                assert b.terminate(timeout=15) == 0
        elapsed = time.monotonic() - started
        assert a.proc.returncode == -9
        received = relay.received
        inbox_left = folder_uids(server, user, "INBOX")
        processed = Counter(
            _subject_of(d[b"BODY[]"]) for d in folder_messages(server, user, "Processed").values()
        )
    wanted = Counter(smtp_subjects + imap_subjects)
    assert counts["subjects"] == wanted  # each message exactly one ticket
    assert counts["inbound"] == {"done": SMTP_MESSAGES + IMAP_MESSAGES}
    assert counts["outbox"] == {"sent": SMTP_MESSAGES + IMAP_MESSAGES}
    assert inbox_left == [] and processed == Counter(imap_subjects)
    # One acknowledgement per customer. Delivery to the relay is at least once: a kill
    # between the relay's 250 and the commit of "sent" sends that one mail again, with
    # the same Message-ID (outbound/sender.py); one daemon sends one mail at a time.
    per_customer: dict[str, set[str]] = {}
    for item in received:
        per_customer.setdefault(item.rcpt_tos[0], set()).add(str(item.message["Message-ID"]))
    assert sorted(per_customer) == sorted(_sender(s) for s in wanted)
    assert all(len(ids) == 1 for ids in per_customer.values())
    assert len(received) - len(per_customer) <= 1, "more than the one mail in flight"
    sent = {"a": a.text().count(" sent via "), "b": b.text().count(" sent via ")}
    again = len(received) - len(per_customer)
    print(f"two instances: {len(wanted)} messages in {elapsed:.0f}s; sent by {sent}; {again} twice")


def test_a_hung_daemon_loses_its_imap_folder_to_the_other(pg_url: str, tmp_path: Path) -> None:
    """Daemon A polls the mailbox, B stands by. A hangs (SIGSTOP): once its lease has
    expired B takes the folder over; A, woken up (SIGCONT), finds its lease taken and
    stands by. Each IMAP message is taken in and moved exactly once. (PostgreSQL: a
    process stopped inside a SQLite write transaction would stop everyone.)"""
    with dovecot_server() as server:
        user = server.add_user()
        account = server.account(user, idle=True, poll_interval_seconds=30)
        configs = []
        for name in ("a", "b"):
            path = write_config(tmp_path / f"{name}.toml", pg_url, imap_account=account)
            path.write_text(path.read_text().replace("[imap]\n", "[imap]\nlease_seconds = 2\n"))
            if name == "b":  # /readyz of the instance standing by
                path.write_text(path.read_text() + "[http]\nenabled = true\nport = 0\n")
            configs.append(path)
        subjects = [f"imap {i}" for i in range(15)]

        def append(batch: list[str]) -> None:
            client = server.client(user)
            try:
                for subject in batch:
                    client.append("INBOX", mail(subject=subject, sender=_sender(subject)))
            finally:
                client.logout()

        def moved(n: int) -> Callable[[], bool]:
            return lambda: len(folder_uids(server, user, "Processed")) == n

        with Daemon(configs[0]) as a:
            a.smtp_port()
            a.wait_for_line("connected to 127.0.0.1")
            with Daemon(configs[1]) as b:
                b.smtp_port()
                b.wait_for_line("is polled by")
                # Standing by is healthy: the other instance polls the folder.
                _status, body = readyz(http_port(b))
                imap_check = next(v for k, v in body["checks"].items() if k.startswith("imap"))
                assert imap_check["ok"] and "standing by" in imap_check["detail"], body
                assert body["checks"]["sla_jobs"]["ok"], body
                append(subjects[:5])
                wait_for(moved(5), timeout=20, what="5 messages moved by A")
                # Not inside a transaction: a process frozen there would hold its row
                # locks (PostgreSQL's idle_in_transaction_session_timeout ends that)
                wait_for(lambda: _cursor(pg_url) == 5, what="A's cursor after the move")
                os.kill(a.proc.pid, signal.SIGSTOP)
                try:
                    b.wait_for_line("taking INBOX over", timeout=20)
                    append(subjects[5:10])
                    wait_for(moved(10), timeout=20, what="5 more moved by B")
                finally:
                    os.kill(a.proc.pid, signal.SIGCONT)
                a.wait_for_line("lease lost", timeout=20)
                append(subjects[10:])
                wait_for(moved(15), timeout=20, what="the last 5 moved")
                wait_for(
                    lambda: sorted(ticket_subjects(configs[0])) == sorted(subjects),
                    timeout=60,
                    what="15 tickets",
                )
                assert b.text().count("connected to 127.0.0.1") == 1  # it kept the folder
                assert a.text().count("connected to 127.0.0.1") == 1  # A did not log in again
                assert b.terminate(timeout=15) == 0
            a.wait_for_line("taking INBOX over")  # B's clean stop gave the folder up
            assert a.terminate(timeout=15) == 0
        processed = Counter(
            _subject_of(d[b"BODY[]"]) for d in folder_messages(server, user, "Processed").values()
        )
    assert processed == Counter(subjects)


def _cursor(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.max(ImapCursor.last_uid))) or 0)
    finally:
        engine.dispose()


def test_a_lease_of_zero_seconds_is_refused_with_the_key(tmp_path: Path) -> None:
    with dovecot_server() as server:
        path = tmp_path / "c.toml"
        write_config(path, f"sqlite:///{tmp_path / 'm.db'}", imap_account=server.account("u"))
        path.write_text(path.read_text().replace("[imap]\n", "[imap]\nlease_seconds = 0\n"))
        with Daemon(path) as daemon:
            assert daemon.proc.wait(30) == 2
    assert "imap.lease_seconds: expected a number > 0, got 0" in daemon.text()
    assert "Traceback" not in daemon.text()
