"""Outbound mail end to end, with a real SMTP relay (aiosmtpd on loopback) and the real
database: acknowledgements, retries, crashes, loops, bounces, the CLI."""

from __future__ import annotations

import email
import json
import os
import queue
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mailtriage.app import App
from mailtriage.config import Settings
from mailtriage.outbound.scheduler import OutboundScheduler
from mailtriage.outbound.sender import Sender
from mailtriage.store.models import Article, Event, Inbound, Ticket, utcnow
from mailtriage.store.outbound_models import Outbox, Suppression
from relay import Received, Relay

from conftest import CLI, make_settings
from mails import mail

ROOT = Path(__file__).parent.parent
KB = ROOT / "kb" / "index.example.toml"
OWN_DOMAIN = "mailtriage.dataandmore.com"

GERMAN = {
    "subject": "Passwort vergessen",
    "body": "Hallo, ich habe mein Passwort vergessen und kann mich seit heute nicht mehr "
    "anmelden. Können Sie mir bitte helfen?",
    "sender": "Erika Muster <erika@kunde.example>",
}
ENGLISH = {
    "subject": "Cannot sign in",
    "body": "Hello, I forgot my password and cannot sign in to the portal since this "
    "morning. Could you please help me?",
    "sender": "John Smith <john@customer.example>",
}


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as server:
        yield server


def outbound_settings(
    tmp_path: Path, database_url: str, relay: Relay | None = None, **outbound: Any
) -> Settings:
    values: dict[str, Any] = {"retry_base_seconds": 0.0, "lease_seconds": 60.0}
    if relay is not None:
        values |= relay.settings()
    values |= outbound
    return make_settings(
        tmp_path,
        database_url,
        storage={"fsync": False},
        outbound=values,
        kb={"index_file": str(KB)},
    )


@pytest.fixture
def open_app(tmp_path: Path, database_url: str) -> Iterator[Callable[..., App]]:
    opened: list[App] = []

    def factory(relay: Relay | None = None, **outbound: Any) -> App:
        app = App.from_settings(outbound_settings(tmp_path, database_url, relay, **outbound))
        app.prepare_database()
        opened.append(app)
        return app

    yield factory
    for app in opened:
        app.close()


def receive(app: App, *raws: bytes) -> list[str]:
    """Accept messages into the inbox and process them; the outcomes."""
    for raw in raws:
        app.inbox.accept(raw, "test")
    worker = app.worker()
    outcomes: list[str] = []
    while batch := worker.run_once():
        outcomes.extend(p.outcome for p in batch)
    return outcomes


def count(app: App, model: Any, *where: Any) -> int:
    with app.factory() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def events(app: App, ticket_id: int) -> list[Event]:
    with app.factory() as session:
        return list(session.scalars(select(Event).where(Event.ticket_id == ticket_id)))


def outbox_rows(app: App) -> list[Outbox]:
    with app.factory() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def write_config(path: Path, settings: Settings) -> Path:
    lines = []
    for section in ("database", "storage", "worker", "outbound", "kb"):
        lines.append(f"[{section}]")
        values = getattr(settings, section)
        for key in values.__dataclass_fields__:
            value = getattr(values, key)
            if isinstance(value, str | bool | int | float):
                lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the acknowledgement ----------------------------------------------------------------


def test_ack_end_to_end_import_to_relay(
    tmp_path: Path, database_url: str, relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    german_id = "<de-1@kunde.example>"
    (inbox / "de.eml").write_bytes(
        mail(**GERMAN, message_id=german_id, references="<x0@k.example>")
    )
    (inbox / "en.eml").write_bytes(mail(**ENGLISH, message_id="<en-1@customer.example>"))
    config = write_config(tmp_path / "c.toml", outbound_settings(tmp_path, database_url, relay))
    cli = CLI(config, capsys)

    assert cli.json("import", str(inbox))["created"] == 2
    assert cli.json("outbox", "send") == {
        "sent": 2, "retrying": 0, "failed": 0, "skipped": 0, "lost": 0,
    }  # fmt: skip
    assert cli.json("outbox", "send")["sent"] == 0
    got = {r.rcpt_tos: r for r in relay.received}
    assert set(got) == {("erika@kunde.example",), ("john@customer.example",)}

    de = got[("erika@kunde.example",)]
    msg = de.message
    assert de.mail_from == "support@dataandmore.com"
    assert msg["From"] == "Data & More Support <support@dataandmore.com>"
    assert msg["To"] == "Erika Muster <erika@kunde.example>"
    assert msg["Subject"] == "Re: [DM-000001] Passwort vergessen"
    # the plus address of the ticket with the customer's signed token (a secret was
    # generated in the storage dir on first use)
    assert re.fullmatch(
        r"Data & More Support <support\+dm-000001\.[a-z2-7]{16}@dataandmore\.com>",
        str(msg["Reply-To"]),
    )
    assert msg["In-Reply-To"] == german_id
    assert msg["References"] == f"<x0@k.example> {german_id}"
    assert msg["Message-ID"].endswith(f"@{OWN_DOMAIN}>")
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Content-Language"] == "de"
    text = de.text()
    assert text.startswith("Guten Tag Erika Muster,")
    # the promise counts business hours (sla.business_time, the default)
    assert "DM-000001" in text and "innerhalb von 24 Arbeitsstunden" in text
    assert "Anmeldung und Zugang" in text  # the category in plain words
    assert "Screenshots" in text
    assert "https://support.dataandmore.com/de/kb/passwort-zuruecksetzen" in text
    assert "Passwort zurücksetzen" in de.html()

    en = got[("john@customer.example",)]
    assert en.message["Subject"] == "Re: [DM-000002] Cannot sign in"
    assert en.message["Content-Language"] == "en"
    assert en.text().startswith("Dear John Smith,")
    assert "https://support.dataandmore.com/en/kb/password-reset" in en.text()

    ticket = cli.json("tickets", "show", "DM-000001")
    assert [a["direction"] for a in ticket["articles"]] == ["in", "out"]
    out = ticket["articles"][1]
    assert f"<{out['message_id']}>" == msg["Message-ID"]
    assert out["to"] == ["erika@kunde.example"] and out["in_reply_to"] == ["de-1@kunde.example"]
    kinds = [e["kind"] for e in ticket["events"]]
    assert kinds == ["created", "kb_articles", "mail_sent"]
    kb = ticket["events"][1]["detail"]
    assert kb["articles"][0]["id"] == "passwort-zuruecksetzen"
    assert any("keyword" in r for r in kb["articles"][0]["reasons"])
    sent = ticket["events"][2]["detail"]
    assert sent["via"] == f"relay 127.0.0.1:{relay.port}" and sent["due_at"]

    # The customer answers the acknowledgement: the answer joins the ticket, no new ack.
    (inbox / "reply.eml").write_bytes(
        mail(
            subject="AW: " + msg["Subject"],
            body="Hier noch ein Screenshot der Fehlermeldung.",
            sender=GERMAN["sender"],
            in_reply_to=msg["Message-ID"],
            references=f"{german_id} {msg['Message-ID']}",
        )
    )
    assert cli.json("import", str(inbox))["appended"] == 1
    assert cli.json("outbox", "send")["sent"] == 0
    assert len(relay.received) == 2
    ticket = cli.json("tickets", "show", "1")
    assert [a["direction"] for a in ticket["articles"]] == ["in", "out", "in"]


def test_without_a_relay_mail_goes_to_the_local_maildir(open_app: Callable[..., App]) -> None:
    app = open_app()
    assert receive(app, mail(**GERMAN)) == ["created"]
    sender = Sender(app.factory, app.settings)
    assert sender.flush().sent == 1
    assert sender.flush().sent == 0
    maildir = app.settings.storage_dir / "outbox-maildir"
    [file] = (maildir / "new").iterdir()
    msg = email.message_from_bytes(file.read_bytes(), policy=policy.default)
    assert msg["Subject"] == "Re: [DM-000001] Passwort vergessen"
    assert msg["Content-Language"] == "de"
    [row] = outbox_rows(app)
    assert row.status == "sent" and row.sent_via == f"maildir {maildir}"


def test_language_falls_back_to_the_configured_default(
    tmp_path: Path, database_url: str, relay: Relay
) -> None:
    settings = make_settings(
        tmp_path, database_url, triage={"default_language": "en"}, outbound=relay.settings()
    )
    with App.from_settings(settings) as app:
        app.prepare_database()
        french = mail(
            subject="Imprimante",
            body="Bonjour, notre imprimante ne fonctionne "
            "plus depuis ce matin. Pouvez-vous nous aider rapidement?",
        )
        assert receive(app, french) == ["created"]
        assert Sender(app.factory, app.settings).flush().sent == 1
    [got] = relay.received
    assert got.message["Content-Language"] == "en" and got.text().startswith("Dear Erika")


def evil_mail(from_header: bytes, message_id: bytes) -> bytes:
    return (
        b"From: " + from_header + b"\r\n"
        b"To: support@dataandmore.com\r\n"
        b"Subject: =?utf-8?q?Hilfe=0D=0ABcc:_spy@attacker.example=0D=0A=0D=0Abody?=\r\n"
        b"Message-ID: " + message_id + b"\r\n"
        b"References: <a@b>\r\n Bcc: spy@attacker.example\r\n"
        b"Date: Mon, 02 Nov 2026 09:30:00 +0100\r\n"
        b"\r\n"
        b"Hallo, der Drucker druckt nicht mehr. Was kann ich tun?\r\n"
    )


def test_header_injection_from_a_customer_mail(open_app: Callable[..., App], relay: Relay) -> None:
    app = open_app(relay)
    evil = evil_mail(b"=?utf-8?q?Eve=0D=0ABcc:_spy?= <eve@kunde.example>", b"<evil-1@k.example>")
    # The parser reads this From as "_spy@attacker.example?=": no plain address, no ack.
    odd = evil_mail(
        b"=?utf-8?q?Eve=0D=0ABcc:_spy@attacker.example?= <eve2@kunde.example>",
        b"<evil-2@k.example>",
    )
    assert receive(app, evil, odd) == ["created", "created"]
    assert Sender(app.factory, app.settings).flush().sent == 1
    [got] = relay.received
    assert got.rcpt_tos == ("eve@kunde.example",)
    head = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc" not in head and b"\rBcc" not in head
    msg = got.message
    assert "Bcc" not in msg
    assert msg["To"].addresses[0].addr_spec == "eve@kunde.example"  # type: ignore[attr-defined]
    assert "\n" not in msg["To"].addresses[0].display_name  # type: ignore[attr-defined]
    assert "\n" not in msg["Subject"] and "Bcc: spy" in msg["Subject"]  # text, not a header
    skipped = [e for e in events(app, 2) if e.kind == "ack_skipped"]
    assert "no plain sender address" in skipped[0].detail["reason"]


def test_smtp_in_ack_out_through_mailtriage_run(
    tmp_path: Path, database_url: str, relay: Relay
) -> None:
    """`mailtriage run`: the SMTP listener takes a mail, the worker makes the ticket,
    the scheduler's outbox job sends the acknowledgement to the relay."""
    from mailtriage.service import Service, run_service

    settings = make_settings(
        tmp_path,
        database_url,
        storage={"fsync": False},
        smtp={"port": 0},
        outbound=relay.settings() | {"poll_interval_seconds": 0.1},
        service={"shutdown_grace_seconds": 10},
    )
    stop = threading.Event()
    ready: queue.Queue[Service] = queue.Queue()
    thread = threading.Thread(
        target=run_service, args=(settings, stop), kwargs={"on_ready": ready.put}
    )
    thread.start()
    try:
        service = ready.get(timeout=60)
        assert service.smtp is not None and service.outbound is not None
        host, port = service.smtp.address[:2]
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail("erika@kunde.example", ["support@dataandmore.com"], mail(**GERMAN))
        deadline = time.monotonic() + 30
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    [got] = relay.received
    assert got.rcpt_tos == ("erika@kunde.example",)
    assert got.message["Subject"] == "Re: [DM-000001] Passwort vergessen"


# -- retries, failures, crashes -------------------------------------------------------


def test_relay_down_then_up_sends_each_ack_exactly_once(
    open_app: Callable[..., App], relay: Relay
) -> None:
    app = open_app(relay)
    customers = [f"kunde{i}@kunde.example" for i in range(3)]
    receive(app, *(mail(sender=c, subject=f"Frage {i}") for i, c in enumerate(customers)))
    sender = Sender(app.factory, app.settings)
    relay.stop()
    for attempt in (1, 2):
        report = sender.flush()
        assert (report.retrying, report.sent) == (3, 0)
        rows = outbox_rows(app)
        assert {r.status for r in rows} == {"pending"} and {r.attempts for r in rows} == {attempt}
        assert all("relay unreachable" in (r.last_error or "") for r in rows)
    relay.start()
    relay.answer_data("451 4.3.0 Try again later")  # one more temporary failure
    report = sender.flush()
    assert (report.sent, report.retrying) == (2, 1)
    assert sender.flush().sent == 1
    assert sender.flush().total() == 0
    received = relay.received
    assert sorted(r.rcpt_tos[0] for r in received) == customers
    assert len({r.message["Message-ID"] for r in received}) == 3
    assert {r.status for r in outbox_rows(app)} == {"sent"}
    assert count(app, Article, Article.direction == "out") == 3


def test_permanent_failure_is_an_event_and_retry_sends_it(
    open_app: Callable[..., App], relay: Relay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = open_app(relay)
    receive(app, mail(**GERMAN))
    relay.answer_rcpt("550 5.1.1 <erika@kunde.example>: user unknown")
    report = Sender(app.factory, app.settings).flush()
    assert report.failed == 1 and relay.received == []
    [row] = outbox_rows(app)
    assert row.status == "failed" and "550" in (row.last_error or "")
    failed = [e for e in events(app, row.ticket_id) if e.kind == "mail_failed"]
    assert failed and failed[0].detail["smtp_code"] == 550
    with app.factory() as session:
        assert session.get(Ticket, row.ticket_id).status == "new"  # type: ignore[union-attr]

    cli = CLI(write_config(tmp_path / "c.toml", app.settings), capsys)
    assert cli("outbox", "retry", str(row.id))[0] == 0
    code, _, err = cli("outbox", "retry", str(row.id))
    assert code == 2 and "only failed or skipped" in err
    assert cli("outbox", "retry", "999")[0] == 2
    assert cli.json("outbox", "send")["sent"] == 1
    assert len(relay.received) == 1
    listed = cli.json("outbox", "list")
    assert [(r["ticket"], r["status"], r["attempts"]) for r in listed] == [("DM-000001", "sent", 1)]
    shown = cli.json("outbox", "show", str(row.id))
    assert shown["status"] == "sent" and "Subject: Re: [DM-000001]" in shown["message"]
    code, out, _ = cli("outbox", "show", str(row.id), "--raw")
    assert code == 0 and out.startswith("From: Data & More Support")


def test_temporary_errors_give_up_at_the_deadline(open_app: Callable[..., App]) -> None:
    app = open_app(
        None, relay_host="127.0.0.1", relay_port=Relay().port, give_up_after_hours=0.5 / 3600
    )
    receive(app, mail(**GERMAN))
    sender = Sender(app.factory, app.settings)
    assert sender.flush().retrying == 1
    time.sleep(0.6)
    assert sender.flush().failed == 1
    [row] = outbox_rows(app)
    assert row.status == "failed" and "gave up at the deadline" in (row.last_error or "")


KILL_AFTER_SEND = """
import os, signal, sys
from mailtriage.outbound import mailer
# The relay's deliver returns after its 250; the Maildir's sync after the batch's files
# are durable in new/ (the sender records them after that).
for cls, method in ((mailer.RelayMailer, "deliver"), (mailer.MaildirMailer, "sync")):
    def delivered(self, *args, _orig=getattr(cls, method), **kwargs):
        _orig(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # ... and we die before the commit
    setattr(cls, method, delivered)
from mailtriage.cli import main
sys.exit(main(["--config", sys.argv[1], "outbox", "send"]))
"""


@pytest.mark.parametrize("via", ["relay", "maildir"])
def test_kill_9_between_send_and_commit(
    open_app: Callable[..., App], relay: Relay, tmp_path: Path, via: str
) -> None:
    """At most one duplicate, with the same Message-ID: the sender commits the result
    right after the relay's 250, so a kill in between leaves the row 'sending'; once its
    lease expires it is sent again (at least once beats at most once for an ack). The
    Message-ID was fixed when the mail was queued, so the copy is recognisably the same
    mail. The Maildir names its file after the Message-ID: there, no duplicate at all."""
    app = open_app(relay if via == "relay" else None)
    receive(app, mail(**GERMAN))
    config = write_config(tmp_path / "c.toml", app.settings)
    child = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_SEND, str(config)],
        capture_output=True,
        timeout=60,
        env=os.environ | {"MAILTRIAGE_CONFIG": ""},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    maildir = app.settings.storage_dir / "outbox-maildir" / "new"
    delivered = lambda: len(relay.received) if via == "relay" else len(list(maildir.iterdir()))  # noqa: E731
    assert delivered() == 1
    [row] = outbox_rows(app)
    assert row.status == "sending"
    sender = Sender(app.factory, app.settings)
    assert sender.flush().total() == 0  # the dead sender's lease still holds
    with app.factory() as session, session.begin():  # ... until it expires
        session.execute(update(Outbox).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert sender.flush().sent == 1
    assert sender.flush().total() == 0
    if via == "relay":
        first, second = relay.received
        assert first.message["Message-ID"] == second.message["Message-ID"]
    else:
        assert delivered() == 1
    [row] = outbox_rows(app)
    assert row.status == "sent" and row.attempts == 2
    assert count(app, Article, Article.direction == "out") == 1
    assert len([e for e in events(app, row.ticket_id) if e.kind == "mail_sent"]) == 1


def test_two_senders_never_send_one_mail_twice(open_app: Callable[..., App], relay: Relay) -> None:
    app = open_app(relay, batch_size=2)
    receive(app, *(mail(sender=f"k{i}@kunde.example", subject=f"Frage {i}") for i in range(8)))
    senders = [Sender(app.factory, app.settings) for _ in range(2)]
    reports = []
    threads = [threading.Thread(target=lambda s=s: reports.append(s.flush())) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.sent for r in reports) == 8
    assert len(relay.received) == 8
    assert len({r.message["Message-ID"] for r in relay.received}) == 8


def test_the_scheduler_job_sends_in_the_background(
    open_app: Callable[..., App], relay: Relay
) -> None:
    app = open_app(relay, poll_interval_seconds=0.05)
    receive(app, mail(**GERMAN))
    scheduler = OutboundScheduler(app.factory, app.settings)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while not relay.received and time.monotonic() < deadline:
            time.sleep(0.02)
        scheduler.send_due()  # a second run at once sends nothing again
        time.sleep(0.2)
    finally:
        scheduler.stop()
    assert len(relay.received) == 1
    assert not scheduler.scheduler.running


# -- loops, out-of-office replies and bounces -----------------------------------------


def vacation_reply(got: Received) -> bytes:
    """A vacation responder that follows RFC 3834."""
    original = got.message
    reply = EmailMessage()
    reply["From"] = "Erika Muster <erika@kunde.example>"
    reply["To"] = str(original["Reply-To"] or original["From"])
    reply["Subject"] = f"Abwesenheitsnotiz: {original['Subject']}"
    reply["Date"] = "Mon, 02 Nov 2026 10:00:00 +0100"
    reply["Message-ID"] = make_msgid(domain="kunde.example")
    reply["In-Reply-To"] = original["Message-ID"]
    reply["References"] = original["Message-ID"]
    reply["Auto-Submitted"] = "auto-replied"
    reply.set_content("Ich bin bis zum 20.11. nicht im Büro und lese meine E-Mails nicht.")
    return reply.as_bytes()


def outlook_reply(got: Received) -> bytes:
    """An Exchange-style automatic reply: no Auto-Submitted, a subject prefix."""
    original = got.message
    topic = str(original["Subject"]).removeprefix("Re: ")
    reply = EmailMessage()
    reply["From"] = "Erika Muster <erika@kunde.example>"
    reply["To"] = str(original["Reply-To"] or original["From"])
    reply["Subject"] = f"Automatische Antwort: {topic}"
    reply["Thread-Topic"] = topic
    reply["Date"] = "Mon, 02 Nov 2026 10:00:00 +0100"
    reply["Message-ID"] = make_msgid(domain="kunde.example")
    reply["In-Reply-To"] = original["Message-ID"]
    reply["X-Auto-Response-Suppress"] = "All"
    reply.set_content("Vielen Dank für Ihre Nachricht. Ich bin derzeit nicht im Büro.")
    return reply.as_bytes()


def human_looking_reply(got: Received) -> bytes:
    """A responder that sets no header at all but keeps the thread."""
    original = got.message
    reply = EmailMessage()
    reply["From"] = "Erika Muster <erika@kunde.example>"
    reply["To"] = str(original["Reply-To"] or original["From"])
    reply["Subject"] = f"Re: {original['Subject']}"
    reply["Date"] = "Mon, 02 Nov 2026 10:00:00 +0100"
    reply["Message-ID"] = make_msgid(domain="kunde.example")
    reply["In-Reply-To"] = original["Message-ID"]
    reply.set_content("Danke, Ihre Nachricht ist angekommen. Wir melden uns.")
    return reply.as_bytes()


def rude_reply(got: Received) -> bytes:
    """The worst case: no header, no thread, and it answers everything."""
    reply = EmailMessage()
    reply["From"] = "Erika Muster <erika@kunde.example>"
    reply["To"] = "support@dataandmore.com"
    reply["Subject"] = "Ihre Nachricht"
    reply["Date"] = "Mon, 02 Nov 2026 10:00:00 +0100"
    reply["Message-ID"] = make_msgid(domain="kunde.example")
    reply.set_content(f"Danke, Ihre Nachricht ist angekommen ({make_msgid()}). Wir melden uns.")
    return reply.as_bytes()


@pytest.mark.parametrize(
    ("responder", "mails", "tickets", "outcome"),
    [
        (vacation_reply, 1, 1, "ignored"),
        (outlook_reply, 1, 1, "ignored"),
        (human_looking_reply, 1, 1, "appended"),
        (rude_reply, 3, 4, "created"),  # only outbound.address_limit = 3 stops this one
    ],
    ids=["rfc3834", "exchange", "no-headers-threaded", "no-headers-unthreaded"],
)
def test_two_autoresponders_stop(
    open_app: Callable[..., App],
    relay: Relay,
    responder: Callable[[Received], bytes],
    mails: int,
    tickets: int,
    outcome: str,
) -> None:
    """Ours and one that answers every mail it gets: the exchange stops."""
    app = open_app(relay, address_limit=3)
    assert receive(app, mail(**GERMAN)) == ["created"]
    sender = Sender(app.factory, app.settings)
    answered = 0
    outcomes: list[str] = []
    for _ in range(20):
        sender.flush()
        new = relay.received[answered:]
        if not new:
            break
        answered += len(new)
        outcomes += receive(app, *(responder(got) for got in new))
    else:
        pytest.fail("the two responders are still mailing each other")
    assert len(relay.received) == mails
    assert count(app, Ticket) == tickets
    assert outcomes[0] == outcome
    if outcome == "ignored":
        [noted] = [e for e in events(app, 1) if e.kind.endswith("_noted")]
        assert noted.kind in ("out_of_office_noted", "auto_reply_noted")
        assert noted.detail["answers"] == relay.received[0].message["Message-ID"].strip("<>")
        with app.factory() as session:
            inbound = session.scalars(select(Inbound).order_by(Inbound.id.desc())).first()
            assert inbound is not None and inbound.ticket_id == 1 and inbound.loop_reasons
    if mails == 3:
        skipped = [r for r in outbox_rows(app) if r.status == "skipped"]
        assert len(skipped) == 1 and "rate limit" in (skipped[0].last_error or "")


def test_out_of_office_is_noted_without_reopening(
    open_app: Callable[..., App], relay: Relay
) -> None:
    app = open_app(relay)
    receive(app, mail(**GERMAN))
    Sender(app.factory, app.settings).flush()
    with app.factory() as session, session.begin():
        session.execute(update(Ticket).values(status="closed"))
        before = session.scalar(select(Ticket.updated_at))
    assert receive(app, vacation_reply(relay.received[0])) == ["ignored"]
    with app.factory() as session:
        ticket = session.get(Ticket, 1)
        assert ticket is not None and ticket.status == "closed" and ticket.updated_at == before
        assert len(ticket.articles) == 2  # the reply is not an article
    assert [e.kind for e in events(app, 1)][-1] == "out_of_office_noted"


def dsn(our: EmailMessage, status: str, action: str) -> bytes:
    """A delivery status notification (RFC 3464) about our mail."""
    return (
        "Return-Path: <>\r\n"
        "From: Mail Delivery System <MAILER-DAEMON@mx.kunde.example>\r\n"
        "To: support@dataandmore.com\r\n"
        f"Subject: Undelivered Mail Returned to Sender ({status})\r\n"
        f"Message-ID: <dsn-{status}@mx.kunde.example>\r\n"
        "Date: Mon, 02 Nov 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
        "\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.\r\n"
        "\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.kunde.example\r\n\r\n"
        "Final-Recipient: rfc822; erika@kunde.example\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} mailbox unavailable\r\n"
        "\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {our['From']}\r\nTo: {our['To']}\r\nSubject: {our['Subject']}\r\n"
        f"Message-ID: {our['Message-ID']}\r\n"
        "\r\n--b--\r\n"
    ).encode()


def test_bounces_are_noted_and_a_permanent_one_suppresses_the_address(
    open_app: Callable[..., App], relay: Relay
) -> None:
    app = open_app(relay, suppress_days=30)
    receive(app, mail(**GERMAN))
    sender = Sender(app.factory, app.settings)
    sender.flush()
    ours = relay.received[0].message

    assert receive(app, dsn(ours, "4.2.2", "delayed")) == ["ignored"]
    assert count(app, Suppression) == 0
    assert receive(app, dsn(ours, "5.1.1", "failed")) == ["ignored"]
    noted = [e for e in events(app, 1) if e.kind == "bounce_noted"]
    assert [(e.detail["status"], e.detail["permanent"]) for e in noted] == [
        ("4.2.2", False),
        ("5.1.1", True),
    ]
    assert noted[1].detail["suppressed"] == ["erika@kunde.example"]
    with app.factory() as session:
        [row] = session.scalars(select(Suppression))
        assert row.address == "erika@kunde.example" and "5.1.1" in row.reason
        assert row.until > utcnow() + timedelta(days=29)
        assert session.get(Ticket, 1).status == "new"  # type: ignore[union-attr]

    # Her next mail is a ticket, but its acknowledgement is not sent.
    assert receive(app, mail(**GERMAN | {"subject": "Noch eine Frage"})) == ["created"]
    assert sender.flush().skipped == 1
    assert len(relay.received) == 1
    skipped = [e for e in events(app, 2) if e.kind == "mail_skipped"]
    assert "suppressed until" in skipped[0].detail["reason"]


def test_our_own_mail_coming_back_is_ignored(open_app: Callable[..., App], relay: Relay) -> None:
    app = open_app(relay)
    receive(app, mail(**GERMAN))
    Sender(app.factory, app.settings).flush()
    assert receive(app, relay.received[0].data) == ["ignored"]
    assert count(app, Ticket) == 1
    with app.factory() as session:
        inbound = session.scalars(select(Inbound).order_by(Inbound.id.desc())).first()
        assert inbound is not None and inbound.loop_kind == "own"


def test_automated_mail_gets_no_ack(open_app: Callable[..., App]) -> None:
    app = open_app()
    auto = mail(subject="Automatic reply: Order 4711", headers={"Auto-Submitted": "auto-replied"})
    listed = mail(subject="Newsletter", headers={"List-Id": "<news.kunde.example>"})
    assert receive(app, auto, listed) == ["ignored", "ignored"]
    assert outbox_rows(app) == []
    human = mail(
        subject="Auto-Antwort einrichten?",
        body="Wie richte ich eine Abwesenheitsnotiz ein?",
        headers={"Auto-Submitted": "no"},
    )
    assert receive(app, human) == ["created"]
    assert len(outbox_rows(app)) == 1


# -- the sender's batch (issue 10's debt: CPU per acknowledgement) --------------------


@pytest.mark.parametrize("via", ["relay", "maildir"])
def test_rate_limits_hold_within_one_batch(
    open_app: Callable[..., App], relay: Relay, via: str
) -> None:
    """The guard's facts are read once per batch: the mail the batch itself sends
    counts against the limit as it goes."""
    app = open_app(relay if via == "relay" else None, address_limit=2, batch_size=20)
    receive(app, *(mail(**GERMAN | {"subject": f"Frage {i}"}) for i in range(4)))
    report = Sender(app.factory, app.settings).flush()
    assert (report.sent, report.skipped) == (2, 2)
    maildir = app.settings.storage_dir / "outbox-maildir" / "new"
    assert (len(relay.received) if via == "relay" else len(list(maildir.iterdir()))) == 2
    skipped = [r for r in outbox_rows(app) if r.status == "skipped"]
    assert len(skipped) == 2
    assert all("outbound.address_limit" in (r.last_error or "") for r in skipped)


def test_a_sent_acknowledgement_carries_verifiable_tokens(open_app: Callable[..., App]) -> None:
    """Reply-To and Message-ID of the mail in the Maildir carry the recipient's signed
    token (what a reply to it is matched with)."""
    from mailtriage.pipeline.reply_token import (
        REPLY,
        parse_message_id,
        parse_reply_address,
        verify_token,
    )
    from mailtriage.server_secret import load_secret

    app = open_app()
    receive(app, mail(**GERMAN | {"sender": "Jürgen Größe-Übel <juergen@kunde.example>"}))
    assert Sender(app.factory, app.settings).flush().sent == 1
    [file] = (app.settings.storage_dir / "outbox-maildir" / "new").iterdir()
    msg = email.message_from_bytes(file.read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].display_name == "Jürgen Größe-Übel"  # type: ignore[attr-defined]
    assert msg["Auto-Submitted"] == "auto-replied" and msg["X-Auto-Response-Suppress"] == "All"
    secret = load_secret(app.settings.security, app.settings.storage_dir)
    reply_to = msg["Reply-To"].addresses[0].addr_spec  # type: ignore[attr-defined]
    ref = parse_reply_address(reply_to, "support@dataandmore.com")
    assert ref is not None and ref.ticket_id == 1
    assert verify_token(secret, ref.token, 1, "juergen@kunde.example", REPLY)
    assert not verify_token(secret, ref.token, 1, "someone@else.example", REPLY)
    ours = parse_message_id(msg["Message-ID"], [OWN_DOMAIN])
    assert ours is not None and (ours.ticket_id, ours.kind, ours.step) == (1, "ack", 0)
    assert verify_token(secret, ours.token, 1, "juergen@kunde.example", REPLY)
    # and the loop guard knows it as our own mail when it comes back
    assert receive(app, file.read_bytes().replace(b"\n", b"\r\n")) == ["ignored"]


def test_a_maildir_batch_not_synced_is_not_recorded_and_is_written_once_later(
    open_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Maildir batch is recorded only after the sync of new/: when it fails,
    the rows stay leased and nothing is noted as sent; once the leases end the mails
    go again, and the Maildir still holds one file per Message-ID."""
    from mailtriage.outbound.mailer import DeliveryError, MaildirMailer

    app = open_app()
    receive(app, *(mail(sender=f"k{i}@kunde.example", subject=f"Frage {i}") for i in range(3)))
    sync = MaildirMailer.sync

    def broken(self: MaildirMailer) -> None:
        raise DeliveryError("maildir: Input/output error", permanent=False)

    monkeypatch.setattr(MaildirMailer, "sync", broken)
    sender = Sender(app.factory, app.settings)
    assert sender.flush().retrying == 3
    assert {r.status for r in outbox_rows(app)} == {"sending"}
    assert count(app, Article, Article.direction == "out") == 0
    monkeypatch.setattr(MaildirMailer, "sync", sync)
    with app.factory() as session, session.begin():
        session.execute(update(Outbox).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert sender.flush().sent == 3
    assert len(list((app.settings.storage_dir / "outbox-maildir" / "new").iterdir())) == 3
    assert {r.status for r in outbox_rows(app)} == {"sent"}
    assert count(app, Article, Article.direction == "out") == 3


def test_a_batch_shares_one_relay_connection_and_errors_do_not_stop_it(
    open_app: Callable[..., App], relay: Relay
) -> None:
    """Through a relay the claimed batch's mails go over one SMTP session; a 5xx or
    4xx answer to one mail closes that session and the next mail opens another."""
    app = open_app(relay, batch_size=20)
    receive(app, *(mail(sender=f"k{i}@kunde.example", subject=f"Frage {i}") for i in range(5)))
    sender = Sender(app.factory, app.settings)
    assert sender.run_once().sent == 5
    assert len(relay.received) == 5 and relay.connections == 1
    receive(app, *(mail(sender=f"m{i}@kunde.example", subject=f"Frage {i}") for i in range(5)))
    relay.answer_data("550 5.7.1 rejected", "451 4.3.0 try later")
    report = sender.run_once()
    assert (report.sent, report.failed, report.retrying) == (3, 1, 1)
    assert len(relay.received) == 8
    assert relay.connections == 1 + 3  # one session per error, and the one after them
    statuses = sorted(r.status for r in outbox_rows(app))
    assert statuses == ["failed", "pending"] + ["sent"] * 8
