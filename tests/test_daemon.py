"""`mailtriage run` as a real child process: SMTP in, tickets out, SIGTERM, kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import threading
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

from mails import mail
from servers import Daemon, cli_json, dovecot_server, folder_messages, folder_uids, wait_for

SUPPORT = "support@dataandmore.com"


def write_config(
    path: Path,
    database_url: str,
    *,
    smtp: dict[str, Any] | None = None,
    imap_account: dict[str, Any] | None = None,
    grace: float = 5,
    worker: dict[str, Any] | None = None,
) -> Path:
    """A TOML config for the daemon (JSON strings are valid TOML basic strings)."""

    def table(values: dict[str, Any]) -> str:
        return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())

    sections = {
        "database": {"url": database_url},
        "storage": {"dir": str(path.parent / "var")},
        "worker": {
            "processes": 1,
            "lease_seconds": 2.0,
            "retry_base_seconds": 0.1,
            **(worker or {}),
        },
        "smtp": {"port": 0, **(smtp or {})},
        "service": {"shutdown_grace_seconds": grace},
    }
    text = "".join(f"[{name}]\n{table(values)}" for name, values in sections.items())
    if imap_account:
        text += (
            "[imap]\n"
            + table(
                {"enabled": True, "reconnect_initial_seconds": 0.1, "reconnect_max_seconds": 1.0}
            )
            + "[[imap.accounts]]\n"
            + table(imap_account)
        )
    path.write_text(text, encoding="utf-8")
    return path


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mailtriage.db'}"


def send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        # each from its own address: the cap of new tickets per address stays out of it
        sender = f"s{zlib.crc32(subject.encode())}@kunde.example"
        client.sendmail(sender, [SUPPORT], mail(subject=subject, sender=sender))


def ticket_subjects(config: Path) -> list[str]:
    return [t["subject"] for t in cli_json(config, "tickets", "list")]


def test_run_takes_smtp_mail_to_tickets_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", sqlite_url(tmp_path), grace=5)
    with Daemon(config) as daemon:
        port = daemon.smtp_port()
        daemon.wait_for_line("worker")
        send(port, "Drucker druckt nicht")
        assert wait_for(lambda: ticket_subjects(config), timeout=20, what="the ticket") == [
            "Drucker druckt nicht"
        ]
        started = time.monotonic()
        assert daemon.terminate(timeout=10) == 0
        assert time.monotonic() - started < 5
    log = daemon.text()
    assert "received SIGTERM" in log and "SMTP listener stopped" in log
    assert log.rstrip().endswith("stopped") and "Traceback" not in log


def test_a_second_instance_on_the_same_database_is_safe(database_url: str, tmp_path: Path) -> None:
    a_cfg = write_config(tmp_path / "a.toml", database_url)
    with Daemon(a_cfg) as a:
        a_port = a.smtp_port()
        # the same port: refused with one line naming the key, A carries on
        clash = write_config(tmp_path / "clash.toml", database_url, smtp={"port": a_port})
        with Daemon(clash) as b:
            assert b.proc.wait(30) == 2
        assert "smtp.port: cannot listen on" in b.text() and "Traceback" not in b.text()
        b_cfg = write_config(tmp_path / "b.toml", database_url)
        with Daemon(b_cfg) as b:
            b_port = b.smtp_port()
            subjects = [f"zwei Instanzen {i}" for i in range(12)]
            for i, subject in enumerate(subjects):
                send(a_port if i % 2 else b_port, subject)
            send(a_port, subjects[0] + " (again)")
            expected = sorted([*subjects, subjects[0] + " (again)"])
            wait_for(
                lambda: sorted(ticket_subjects(a_cfg)) == expected,
                timeout=30,
                what="every message as one ticket",
            )
            assert b.terminate(timeout=10) == 0
        assert a.terminate(timeout=10) == 0


def test_kill_9_while_mail_streams_in_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """SMTP senders and an IMAP appender run while the daemon is killed with SIGKILL.
    After a restart: every message that got 250, and every message put into the
    mailbox, is exactly one ticket; every IMAP message sits once in Processed."""
    with dovecot_server() as server:
        user = server.add_user()
        account = server.account(user, idle=True, poll_interval_seconds=2)
        config = write_config(tmp_path / "c.toml", sqlite_url(tmp_path), imap_account=account)
        acked: list[str] = []
        appended: list[str] = []
        stopping = threading.Event()

        def smtp_sender(n: int, port: int) -> None:
            for i in range(40):
                if stopping.is_set():
                    return
                subject = f"smtp {n}-{i}"
                try:
                    send(port, subject)
                except (OSError, smtplib.SMTPException):
                    return  # the daemon is gone: this one may or may not have arrived
                acked.append(subject)

        def imap_appender() -> None:
            client = server.client(user)
            try:
                for i in range(60):
                    if stopping.is_set():
                        return
                    subject = f"imap {i}"
                    sender = f"imap.{i}@kunde.example"
                    client.append("INBOX", mail(subject=subject, sender=sender))
                    appended.append(subject)
            finally:
                client.logout()

        with Daemon(config) as daemon:
            port = daemon.smtp_port()
            first_worker = worker_pid(daemon)
            daemon.wait_for_line("connected to 127.0.0.1")
            threads = [threading.Thread(target=smtp_sender, args=(n, port)) for n in range(4)]
            threads.append(threading.Thread(target=imap_appender))
            for thread in threads:
                thread.start()
            try:
                wait_for(lambda: len(acked) >= 30, what="30 messages over SMTP")
                wait_for(
                    lambda: len(folder_uids(server, user, "Processed")) >= 5,
                    what="5 IMAP messages moved",
                )
                daemon.kill()  # SIGKILL, mid-stream
            finally:
                stopping.set()
                for thread in threads:
                    thread.join(30)
        assert daemon.proc.returncode == -9
        # the orphaned worker process notices and exits too
        wait_for(lambda: gone(first_worker), timeout=30, what="the orphaned worker to exit")
        moved_before = len(folder_uids(server, user, "Processed"))

        with Daemon(config) as daemon:
            daemon.smtp_port()
            wanted = set(acked) | set(appended)

            def settled() -> list[str] | None:
                subjects = ticket_subjects(config)
                return subjects if wanted <= set(subjects) else None

            subjects = wait_for(settled, timeout=60, interval=0.5, what="every message")
            wait_for(lambda: folder_uids(server, user, "INBOX") == [], what="an empty INBOX")
            assert daemon.terminate(timeout=10) == 0

        duplicates = {s: n for s, n in Counter(subjects).items() if n > 1}
        assert duplicates == {}
        processed = Counter(
            _subject(d[b"BODY[]"]) for d in folder_messages(server, user, "Processed").values()
        )
        assert processed == Counter(appended)  # each IMAP message moved exactly once
        assert moved_before >= 5 and len(acked) >= 30


def _subject(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"subject: "):
            return line[9:].decode()
    raise AssertionError("no subject")


def test_a_dead_worker_is_restarted_and_intake_never_stops(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", sqlite_url(tmp_path))
    with Daemon(config) as daemon:
        port = daemon.smtp_port()
        pid = worker_pid(daemon)
        os.kill(pid, signal.SIGKILL)  # a segfault, the OOM killer
        send(port, "während der Worker tot ist")  # intake does not care
        daemon.wait_for_line("restarting")
        assert worker_pid(daemon, after=pid) != pid
        assert wait_for(lambda: ticket_subjects(config), timeout=30, what="the ticket") == [
            "während der Worker tot ist"
        ]
        assert daemon.terminate(timeout=10) == 0


def worker_pid(daemon: Daemon, after: int | None = None) -> int:
    """The pid in the latest "worker ... started (pid N)" line (one newer than ``after``)."""

    def find() -> int | None:
        pids = [int(m) for m in re.findall(r"worker \S+ started \(pid (\d+)\)", daemon.text())]
        return pids[-1] if pids and pids[-1] != after else None

    return wait_for(find, timeout=20, what="the worker's start")


def gone(pid: int) -> bool:
    """The process has exited (no /proc entry, or a zombie waiting for its reaper)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", sqlite_url(tmp_path))
    with Daemon(config) as daemon:
        daemon.smtp_port()
        daemon.proc.send_signal(signal.SIGINT)
        assert daemon.proc.wait(10) == 0
    assert "received SIGINT" in daemon.text()


def test_while_mail_floods_in_filing_waits_and_then_catches_up(tmp_path: Path) -> None:
    """Intake first: a burst faster than worker.flood_per_second makes the worker wait
    between rounds (one log line says so); once the burst is over it files them all."""
    config = write_config(
        tmp_path / "c.toml",
        sqlite_url(tmp_path),
        worker={"flood_per_second": 20, "flood_pause_seconds": 30},
    )
    count, senders = 160, 4

    def burst(offset: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            for n in range(offset, count, senders):
                sender = f"flood{n}@kunde{n}.example"
                client.sendmail(sender, [SUPPORT], mail(subject=f"Welle {n}", sender=sender))

    with Daemon(config) as daemon:
        port = daemon.smtp_port()
        daemon.wait_for_line("worker")
        threads = [threading.Thread(target=burst, args=(i,)) for i in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        daemon.wait_for_line("filing waits while the flood lasts", timeout=10)
        filed = wait_for(
            lambda: len(ticket_subjects(config)) == count or None, timeout=60, what="all tickets"
        )
        assert filed
        daemon.wait_for_line("the flood has eased", timeout=10)
