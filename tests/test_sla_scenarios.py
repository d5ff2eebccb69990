"""Issue 12 scenarios: the SLA jobs through the real CLI (`scheduler tick --now`),
mail in through the inbox and the worker, mail out through the outbox sender to a
recording relay, on SQLite and PostgreSQL.

A ticket is opened (and answered) now; its whole history is then moved back to the
scenario's moment (``shift``) and its due times recomputed with `sla recompute`, as
if it had happened then. Times are Europe/Berlin; working hours Mon-Fri 08-18;
holidays of Bavaria. Friday 22 May 2026 is before Whit Monday (25 May, a holiday).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from mailtriage.app import App
from mailtriage.cli import main
from mailtriage.config import load_settings
from mailtriage.store.models import Article, Event, Ticket
from mailtriage.store.outbound_models import Outbox
from relay import Received, Relay

from mails import mail, png
from servers import Daemon, wait_for

BERLIN = ZoneInfo("Europe/Berlin")
SUPPORT = "support@dataandmore.com"
ERIKA = "erika@kunde.example"
ANNA = "anna.l1@dataandmore.com"
BERND = "bernd.l2@dataandmore.com"
LEAD = "lead@dataandmore.com"
SECRET = "an sla scenario test secret, long enough"
AUTH_PASS = {
    "Authentication-Results": "mx.dataandmore.com; dkim=pass header.d=dataandmore.com; "
    "spf=pass smtp.mailfrom=dataandmore.com"
}
FRIDAY = datetime(2026, 5, 22, 15, 0, tzinfo=BERLIN)
SCREENSHOT = png(1280, 800)


def berlin(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


class Desk:
    def __init__(self, tmp_path: Path, database_url: str, relay: Relay, extra: str = "") -> None:
        self.relay = relay
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f"""
[database]
url = "{database_url}"
[storage]
dir = "{tmp_path / "var"}"
fsync = false
[worker]
processes = 1
retry_base_seconds = 0.01
[outbound]
relay_host = "{relay.host}"
relay_port = {relay.port}
retry_base_seconds = 0.0
ticket_limit = 100
[security]
secret = "{SECRET}"
authserv_ids = ["mx.dataandmore.com"]
[sla]
response_hours = 8
team_lead_address = "{LEAD}"
{extra}
[[agents]]
address = "{ANNA}"
name = "Anna Eins"
level = "L1"
[[agents]]
address = "{BERND}"
name = "Bernd Zwei"
level = "L2"
""",
            encoding="utf-8",
        )
        self.app = App.from_settings(load_settings(self.config))
        self.app.prepare_database()

    def close(self) -> None:
        self.app.close()

    def cli(self, *args: str) -> tuple[int, str]:
        code = main(["--config", str(self.config), *args])
        return code, ""

    def receive(self, raw: bytes) -> None:
        self.app.inbox.accept(raw, "test")
        worker = self.app.worker()
        while worker.run_once():
            pass

    def open_ticket(self, level: str = "L1", priority: str = "normal") -> int:
        """Erika's ticket (with a screenshot), classified ``level``/``priority``."""
        self.receive(
            mail(
                subject="Schnittstelle liefert nichts",
                body="Hallo, die REST-Schnittstelle liefert seit heute keine Daten mehr.",
                sender=f"Erika Muster <{ERIKA}>",
                attachments=[("fehler.png", "image/png", SCREENSHOT)],
            )
        )
        with self.app.factory() as session, session.begin():
            ticket_id = session.scalar(select(func.max(Ticket.id)))
            assert ticket_id is not None
            # what the classifier said (not an agent's correction)
            session.execute(
                update(Ticket).where(Ticket.id == ticket_id).values(level=level, priority=priority)
            )
        return ticket_id

    def agent_replies(self, ticket_id: int, text: str = "Bitte starten Sie neu.") -> None:
        self.receive(
            mail(
                subject=f"Re: [DM-{ticket_id:06d}] Schnittstelle liefert nichts",
                sender=f"Anna Eins <{ANNA}>",
                body=text,
                headers=AUTH_PASS,
            )
        )

    def shift(self, ticket_id: int, created: datetime) -> None:
        """Move the ticket's whole history so that it was created at ``created``, and
        recompute its due times as of then."""
        with self.app.factory() as session, session.begin():
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            delta = created - ticket.created_at
            for column in ("created_at", "updated_at", "first_response_at", "resolved_at"):
                value = getattr(ticket, column)
                if value is not None:
                    setattr(ticket, column, value + delta)
            for model in (Event, Article):
                for row in session.scalars(select(model).where(model.ticket_id == ticket_id)):
                    row.created_at = row.created_at + delta
        now = (ticket.updated_at + delta).isoformat()
        assert self.cli("sla", "recompute", str(ticket_id), "--now", now)[0] == 0

    def tick(self, at: datetime) -> None:
        assert self.cli("scheduler", "tick", "--now", at.isoformat())[0] == 0

    def mails(self, kind: str, to: str | None = None) -> list[Received]:
        return [
            r
            for r in self.relay.received
            if r.message["X-Mailtriage-Kind"] == kind and (to is None or to in r.rcpt_tos)
        ]

    def events(self, ticket_id: int, kind: str) -> list[Event]:
        with self.app.factory() as session:
            return list(
                session.scalars(
                    select(Event)
                    .where(Event.ticket_id == ticket_id, Event.kind == kind)
                    .order_by(Event.id)
                )
            )

    def ticket(self, ticket_id: int) -> Ticket:
        with self.app.factory() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            return ticket


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as server:
        yield server


@pytest.fixture
def desk(tmp_path: Path, database_url: str, relay: Relay) -> Iterator[Desk]:
    d = Desk(tmp_path, database_url, relay)
    yield d
    d.close()


def sla_json(desk: Desk, ticket_id: int, capsys: pytest.CaptureFixture[str], **kw: str) -> Any:
    capsys.readouterr()
    extra = [a for k, v in kw.items() for a in (f"--{k}", v)]
    assert (
        main(["--config", str(desk.config), "sla", "show", str(ticket_id), "--json", *extra]) == 0
    )
    return json.loads(capsys.readouterr().out)


def test_friday_ticket_warns_and_breaches_after_the_weekend_and_whit_monday(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    ticket_id = desk.open_ticket(level="L2")  # L2: no escalation in this scenario
    # the acknowledgement promises the policy's first-response due time
    with desk.app.factory() as session:
        ack_context = session.scalar(select(Outbox.context).where(Outbox.kind == "ack"))
    assert ack_context is not None and ack_context["business_hours"] is True
    due = desk.ticket(ticket_id).sla_first_response_due
    assert due is not None and datetime.fromisoformat(ack_context["due_at"]) == due
    desk.shift(ticket_id, FRIDAY)
    # 8 business hours from Friday 15:00: 3 h Friday, 5 h Tuesday (Whit Monday is off)
    data = sla_json(desk, ticket_id, capsys)
    first = next(c for c in data["clocks"] if c["clock"] == "first_response")
    assert first["due"] == "2026-05-26T11:00:00+00:00"  # Tuesday 13:00 CEST
    assert data["stored"]["first_response_due"] == "2026-05-26T11:00:00+00:00"
    assert data["stored"]["next_at"] == "2026-05-26T07:00:00+00:00"  # 50 %: Tue 09:00

    for quiet in (
        berlin(5, 22, 17, 59),
        berlin(5, 23, 15),
        berlin(5, 25, 12),
        berlin(5, 26, 8, 59),
    ):
        desk.tick(quiet)  # Friday evening, Saturday, Whit Monday: nothing yet
    assert desk.events(ticket_id, "sla_warning") == []
    desk.tick(berlin(5, 26, 9))  # 4 of 8 hours
    assert [e.detail["fraction"] for e in desk.events(ticket_id, "sla_warning")] == [0.5]
    desk.tick(berlin(5, 26, 11, 24))  # 80 %: 6.4 hours
    desk.tick(berlin(5, 26, 11, 30))
    assert [e.detail["fraction"] for e in desk.events(ticket_id, "sla_warning")] == [0.5, 0.8]
    warnings = desk.mails("sla_warning")
    assert [list(r.rcpt_tos) for r in warnings] == [[BERND], [BERND]]  # the ticket's level (L2)
    assert "Erste Antwort" in warnings[0].text() or "First response" in warnings[0].text()
    assert desk.events(ticket_id, "sla_breach") == []
    desk.tick(berlin(5, 26, 13))
    desk.tick(berlin(5, 26, 13))  # twice: nothing more
    breaches = desk.events(ticket_id, "sla_breach")
    assert len(breaches) == 1 and breaches[0].detail["clock"] == "first_response"
    lead = desk.mails("sla_breach", LEAD)
    assert len(lead) == 1 and f"DM-{ticket_id:06d}" in lead[0].message["Subject"]
    assert lead[0].message["Auto-Submitted"] == "auto-generated"
    assert len(desk.mails("sla_warning")) == 2
    ack = desk.mails("ack", ERIKA)
    assert len(ack) == 1 and (
        "Arbeitsstunden" in ack[0].text() or "business hours" in ack[0].text()
    )
    data = sla_json(desk, ticket_id, capsys, now=berlin(5, 26, 14).isoformat())
    assert next(c for c in data["clocks"] if c["clock"] == "first_response")["state"] == "breached"


def test_an_answer_in_time_means_no_breach(desk: Desk) -> None:
    ticket_id = desk.open_ticket(level="L2")
    desk.agent_replies(ticket_id)
    assert desk.ticket(ticket_id).status == "waiting"
    desk.shift(ticket_id, FRIDAY)
    for at in (berlin(5, 26, 9), berlin(5, 26, 13), berlin(5, 27, 18)):
        desk.tick(at)
    assert desk.events(ticket_id, "sla_warning") == []
    assert desk.events(ticket_id, "sla_breach") == []
    assert desk.mails("sla_breach") == [] and desk.mails("sla_warning") == []


def test_an_l1_ticket_unsolved_for_two_business_days_is_escalated_once(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    ticket_id = desk.open_ticket(level="L1")
    desk.shift(ticket_id, FRIDAY)
    # 20 business hours: Friday 3, Tuesday 10, Wednesday 7 -> Wednesday 15:00
    desk.tick(berlin(5, 27, 14, 59))
    assert desk.events(ticket_id, "escalated") == []
    assert desk.ticket(ticket_id).level == "L1"
    desk.tick(berlin(5, 27, 15))
    desk.tick(berlin(5, 27, 15, 5))
    desk.tick(berlin(5, 29, 10))
    escalated = desk.events(ticket_id, "escalated")
    assert len(escalated) == 1
    detail = escalated[0].detail
    assert detail["business_hours_elapsed"] == 20.0 and "2 business day" in detail["rule"]
    assert desk.ticket(ticket_id).level == "L2"
    to_l2 = desk.mails("escalation")
    assert [list(r.rcpt_tos) for r in to_l2] == [[BERND]]
    notice = to_l2[0]
    assert "REST-Schnittstelle liefert seit heute keine Daten" in notice.text()
    assert [p.get_filename() for p in notice.message.iter_attachments()] == ["fehler.png"]
    assert notice.message["Reply-To"].addresses[0].addr_spec.startswith("support+dm-")
    to_customer = desk.mails("escalation_note")
    assert [list(r.rcpt_tos) for r in to_customer] == [[ERIKA]]
    assert "Spezialisten" in to_customer[0].text() or "specialists" in to_customer[0].text()
    assert "/t/" in to_customer[0].text()  # every mail to a customer links the ticket's page
    capsys.readouterr()
    assert main(["--config", str(desk.config), "tickets", "show", str(ticket_id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["level"] == "L2"
    assert main(["--config", str(desk.config), "tickets", "show", str(ticket_id)]) == 0
    text = capsys.readouterr().out
    assert "escalated L1 -> L2" in text and "20.0 business hours" in text


def test_mail_to_staff_quotes_the_conversation_without_the_customers_page_link(
    desk: Desk,
) -> None:
    """The acknowledgement carries Erika's page link (a capability for her address).
    The escalation notice quotes the conversation (the acknowledgement, her reply
    quoting it); the agent notice of a new mail quotes her text quoting it: no mail to
    staff may carry the link. Her own mails keep theirs."""
    ticket_id = desk.open_ticket(level="L1")
    desk.tick(datetime.now(BERLIN))  # sends the acknowledgement
    acks = desk.mails("ack", to=ERIKA)
    assert len(acks) == 1
    links = re.findall(r"https?://\S+/t/[A-Za-z0-9_.-]+", acks[0].text())
    assert links, "the acknowledgement links the ticket's page"
    token = links[0].rsplit("/t/", 1)[1]
    quoted = "\n\n> " + acks[0].text().replace("\n", "\n> ")
    desk.receive(
        mail(
            subject=f"Re: [DM-{ticket_id:06d}] Schnittstelle liefert nichts",
            body="Noch ein Detail: Fehler 502." + quoted,
            sender=f"Erika Muster <{ERIKA}>",
            in_reply_to=acks[0].message["Message-ID"],
        )
    )
    desk.receive(  # a new ticket, quoting the old acknowledgement
        mail(
            subject="Noch ein Problem mit dem Export",
            body="Der Export bricht ab, wie beim letzten Mal." + quoted,
            sender=f"Erika Muster <{ERIKA}>",
        )
    )
    desk.tick(datetime.now(BERLIN))  # sends the notices of the new ticket
    notices = [r for r in desk.mails("notice") if "Export bricht ab" in r.text()]
    assert notices
    desk.shift(ticket_id, FRIDAY)
    desk.tick(berlin(5, 27, 15))
    to_l2 = [r for r in desk.mails("escalation", to=BERND) if f"DM-{ticket_id:06d}" in r.text()]
    assert len(to_l2) == 1
    assert "Fehler 502" in to_l2[0].text()  # the conversation is quoted
    for staff in (*notices, to_l2[0]):
        for body in (staff.text(), staff.html()):
            assert token not in body and "/t/" not in body
        assert "link to the customer's page removed" in staff.text()
    to_customer = desk.mails("escalation_note", to=ERIKA)
    assert len(to_customer) == 1 and "/t/" in to_customer[0].text()


@pytest.mark.parametrize("how", ["tickets set", "#level by mail"])
def test_a_level_set_by_an_agent_is_never_escalated(desk: Desk, how: str) -> None:
    ticket_id = desk.open_ticket(level="L1")
    if how == "tickets set":
        code, _ = desk.cli("tickets", "set", str(ticket_id), "--level", "L1", "--by", ANNA)
        assert code == 0
    else:
        desk.agent_replies(ticket_id, "#level L1\n#status open\n")
        assert desk.events(ticket_id, "corrected")[0].detail["set"] == ["level"]
    desk.shift(ticket_id, FRIDAY)
    desk.tick(berlin(6, 5, 12))
    assert desk.events(ticket_id, "escalated") == []
    assert desk.ticket(ticket_id).level == "L1" and desk.mails("escalation") == []


def test_reminder_and_auto_close_while_waiting_for_the_customer(desk: Desk) -> None:
    ticket_id = desk.open_ticket(level="L2")
    desk.agent_replies(ticket_id, "Welche Version nutzen Sie?")
    desk.shift(ticket_id, FRIDAY)
    waiting_since = desk.events(ticket_id, "status_changed")[-1].created_at
    desk.tick(waiting_since + timedelta(days=3) - timedelta(minutes=1))
    assert desk.mails("reminder") == []
    desk.tick(waiting_since + timedelta(days=3))
    desk.tick(waiting_since + timedelta(days=3, hours=1))
    reminders = desk.mails("reminder")
    assert [list(r.rcpt_tos) for r in reminders] == [[ERIKA]]
    assert desk.ticket(ticket_id).status == "waiting"
    desk.tick(waiting_since + timedelta(days=7) - timedelta(minutes=1))
    assert desk.ticket(ticket_id).status == "waiting"
    desk.tick(waiting_since + timedelta(days=7))
    desk.tick(waiting_since + timedelta(days=8))
    assert desk.ticket(ticket_id).status == "closed"
    assert len(desk.events(ticket_id, "auto_closed")) == 1
    assert len(desk.events(ticket_id, "reminder_sent")) == 1
    closed = desk.mails("auto_close")
    assert [list(r.rcpt_tos) for r in closed] == [[ERIKA]]
    assert all("/t/" in m.text() for m in (*reminders, *closed))  # the ticket page's link
    # what the customer got is on the ticket as public articles (not internal notes)
    with desk.app.factory() as session:
        public = session.scalars(
            select(Article.subject).where(
                Article.ticket_id == ticket_id,
                Article.direction == "out",
                Article.internal.is_(False),
            )
        ).all()
    assert len(public) >= 3  # ack, the agent's reply, reminder, auto-close
    assert desk.ticket(ticket_id).sla_next_at is None


def test_a_customer_reply_resumes_the_clock_and_no_reminder_follows(desk: Desk) -> None:
    ticket_id = desk.open_ticket(level="L2")
    desk.agent_replies(ticket_id)
    desk.receive(
        mail(
            subject=f"Re: [DM-{ticket_id:06d}] Schnittstelle liefert nichts",
            sender=f"Erika Muster <{ERIKA}>",
            body="Version 3.2, danke.",
        )
    )
    assert desk.ticket(ticket_id).status == "open"
    desk.shift(ticket_id, FRIDAY)
    ticket = desk.ticket(ticket_id)
    # next update: 24 business hours from the reply (Friday 15:00 and the few seconds
    # the test took) -> Thursday 28 May 09:00
    due = ticket.sla_next_update_due
    assert due is not None and abs(due - berlin(5, 28, 9)) < timedelta(minutes=1)
    assert ticket.sla_first_response_due is None  # met
    desk.tick(berlin(6, 10, 9))
    assert desk.mails("reminder") == []
    assert [e.detail["clock"] for e in desk.events(ticket_id, "sla_breach")] == ["next_update"]


def test_ticks_by_two_processes_at_once_send_every_notice_once(
    tmp_path: Path, pg_url: str, relay: Relay
) -> None:
    desk = Desk(tmp_path, pg_url, relay)
    try:
        ids = [desk.open_ticket(level="L1") for _ in range(6)]
        for ticket_id in ids:
            desk.shift(ticket_id, FRIDAY)
        at = berlin(5, 27, 15).isoformat()  # warnings, breach and escalation all due
        env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
        cmd = [sys.executable, "-m", "mailtriage", "--config", str(desk.config)]
        procs = [
            subprocess.Popen(
                [*cmd, "scheduler", "tick", "--now", at, "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
        counts = [json.loads(o[0])["sla"] for o in outs]
        assert sum(c.get("escalated", 0) for c in counts) == 6
        with desk.app.factory() as session:
            for kind in ("sla_breach", "escalated"):
                n = session.scalar(
                    select(func.count()).select_from(Event).where(Event.kind == kind)
                )
                assert n == 6, kind
            keys = session.execute(select(Outbox.ticket_id, Outbox.kind, Outbox.step)).all()
        assert len(keys) == len(set(keys))
        assert len(desk.mails("escalation")) == 6
        assert len(desk.mails("sla_breach")) == 6
        assert len(desk.mails("escalation_note")) == 6
        per_ticket = {
            t: [r for r in desk.mails("escalation") if f"DM-{t:06d}" in r.message["Subject"]]
            for t in ids
        }
        assert all(len(v) == 1 for v in per_ticket.values())
    finally:
        desk.close()


def test_mailtriage_run_runs_the_sla_jobs(tmp_path: Path, relay: Relay) -> None:
    desk = Desk(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", relay, "job_interval_seconds = 0.5\n")
    try:
        ticket_id = desk.open_ticket(level="L1")
        desk.shift(ticket_id, FRIDAY)  # long overdue by the real clock
        with desk.config.open("a", encoding="utf-8") as f:
            f.write("[smtp]\nport = 0\n[service]\nshutdown_grace_seconds = 5\n")
        with Daemon(desk.config) as daemon:
            daemon.wait_for_line("SLA jobs started")
            wait_for(lambda: desk.mails("escalation"), timeout=30, what="the escalation notice")
            assert daemon.terminate(timeout=15) == 0
        assert len(desk.events(ticket_id, "escalated")) == 1
        assert [e.detail["clock"] for e in desk.events(ticket_id, "sla_breach")] == [
            "first_response"
        ]
        assert desk.events(ticket_id, "sla_warning") == []  # overtaken by the breach
        assert "Traceback" not in daemon.text()
    finally:
        desk.close()


def test_sla_mail_never_goes_to_a_participant_and_auto_replies_change_nothing(
    desk: Desk,
) -> None:
    """Erika Cc'd a colleague: the reminder, the escalation note and the auto-close go to
    Erika alone. Her out-of-office answer to the reminder neither reopens the ticket
    nor restarts the waiting (no second reminder), and it is closed on time."""
    desk.receive(
        mail(
            subject="Schnittstelle liefert nichts",
            body="Hallo, die REST-Schnittstelle liefert seit heute keine Daten mehr.",
            sender=f"Erika Muster <{ERIKA}>",
            headers={"Cc": "Max Kollege <max@kunde.example>"},
        )
    )
    ticket_id = 1
    with desk.app.factory() as session, session.begin():
        session.execute(update(Ticket).values(level="L1", priority="normal"))
    desk.agent_replies(ticket_id)
    desk.shift(ticket_id, FRIDAY)
    waiting_since = desk.events(ticket_id, "status_changed")[-1].created_at
    desk.tick(waiting_since + timedelta(days=3))
    [reminder] = desk.mails("reminder")
    assert list(reminder.rcpt_tos) == [ERIKA] and reminder.message["Cc"] is None
    assert reminder.message["Auto-Submitted"] == "auto-generated"
    desk.receive(
        mail(
            subject=f"Automatische Antwort: {reminder.message['Subject']}",
            sender=f"Erika Muster <{ERIKA}>",
            body="Ich bin bis Montag nicht im Büro.",
            in_reply_to=reminder.message["Message-ID"],
            headers={"Auto-Submitted": "auto-replied"},
        )
    )
    assert desk.ticket(ticket_id).status == "waiting"
    desk.tick(waiting_since + timedelta(days=6, hours=23))
    assert len(desk.mails("reminder")) == 1
    desk.tick(waiting_since + timedelta(days=7))
    assert desk.ticket(ticket_id).status == "closed"
    for kind in ("reminder", "auto_close", "escalation_note"):
        for received in desk.mails(kind):
            assert list(received.rcpt_tos) == [ERIKA], kind
    sla_kinds = ("reminder", "auto_close", "escalation_note", "sla_warning", "sla_breach")
    for received in desk.relay.received:
        if received.message["X-Mailtriage-Kind"] in sla_kinds:
            assert "max@kunde.example" not in str(received.message)


def test_due_list_and_sla_show_through_the_cli(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    late = desk.open_ticket(level="L2")
    early = desk.open_ticket(level="L2")
    answered = desk.open_ticket(level="L2")
    desk.agent_replies(answered)
    desk.shift(late, FRIDAY)
    desk.shift(early, FRIDAY - timedelta(days=7))
    desk.shift(answered, FRIDAY - timedelta(days=14))
    capsys.readouterr()
    assert main(["--config", str(desk.config), "tickets", "list", "--due", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in rows] == [f"DM-{early:06d}", f"DM-{late:06d}"]
    assert rows[0]["sla_due_at"] < rows[1]["sla_due_at"]
    assert main(["--config", str(desk.config), "tickets", "list", "--due"]) == 0
    assert main(["--config", str(desk.config), "sla", "show", f"DM-{late:06d}"]) == 0
    text = capsys.readouterr().out
    assert "first_response: breached, 8 h" in text and "policy default (business time)" in text
    assert main(["--config", str(desk.config), "sla", "show", "DM-999999"]) == 2
    assert "no ticket DM-999999" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(desk.config), "scheduler", "tick", "--now", "tomorrow"])
    assert exit_.value.code == 2
    assert "--now: not an ISO 8601 time: 'tomorrow'" in capsys.readouterr().err


def test_a_bad_sla_key_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[sla.working_hours]\nfriday = "8-17"\n', encoding="utf-8")
    assert main(["--config", str(config), "scheduler", "tick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mailtriage: error: sla.working_hours.friday: expected")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
