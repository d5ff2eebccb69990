"""Issue 11 end to end: mail in through the real SMTP listener, the worker, mail out
through the outbox sender to a recording relay, on SQLite and PostgreSQL.

Each scenario of the issue is a test here; each way a stranger could read or change
someone else's ticket, or make us mail a third party, is a test that tries it.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mailtriage.app import App
from mailtriage.config import settings_from_dict
from mailtriage.intake.smtp import SmtpListener
from mailtriage.outbound.sender import Sender
from mailtriage.store.models import (
    Article,
    Event,
    Inbound,
    Participant,
    Ticket,
    TicketLink,
    utcnow,
)
from relay import Received, Relay

from mails import mail

SUPPORT = "support@dataandmore.com"
SECRET = "an end-to-end test secret, long enough"
ERIKA = "erika@kunde.example"
STRANGER = "stranger@evil.example"
ANNA = "anna@dataandmore.com"
AUTH_PASS = {
    "Authentication-Results": "mx.dataandmore.com; dkim=pass header.d=dataandmore.com; "
    "spf=pass smtp.mailfrom=dataandmore.com"
}
FIRST = {
    "subject": "Drucker druckt nicht",
    "body": "Hallo, unser Drucker im Büro druckt seit heute früh nicht mehr. "
    "Können Sie bitte helfen?\n\nViele Grüße\nErika Muster",
    "sender": f"Erika Muster <{ERIKA}>",
    "message_id": "<erika-1@kunde.example>",
}
OLD_SUBJECT = "Drucker druckt nicht"


class Desk:
    """The service's parts in this process: the SMTP listener, the worker, the outbox
    sender, and a recording relay behind it."""

    def __init__(self, tmp_path: Path, database_url: str, relay: Relay, **extra: Any) -> None:
        data: dict[str, Any] = {
            "database": {"url": database_url},
            "storage": {"dir": str(tmp_path / "var"), "fsync": False},
            "worker": {"processes": 1, "retry_base_seconds": 0.01},
            "smtp": {"port": 0},
            "outbound": relay.settings() | {"retry_base_seconds": 0.0},
            "security": {"secret": SECRET, "authserv_ids": ["mx.dataandmore.com"]},
            "agents": [{"address": ANNA, "name": "Anna Schmidt", "level": "L1"}],
        }
        for section, values in extra.items():
            data.setdefault(section, {}).update(values)
        self.relay = relay
        self.app = App.from_settings(settings_from_dict(data))
        self.app.prepare_database()
        self.listener = SmtpListener(self.app.inbox, self.app.settings)
        self.host, self.port = self.listener.start()

    def close(self) -> None:
        self.listener.stop(5)
        self.app.close()

    def send(self, raw: bytes, rcpts: list[str] | None = None, mail_from: str = ERIKA) -> None:
        """Through the SMTP listener, then the worker and the outbox sender."""
        with smtplib.SMTP(self.host, self.port, timeout=30) as client:
            client.sendmail(mail_from, rcpts or [SUPPORT], raw)
        worker = self.app.worker()
        while worker.run_once():
            pass
        Sender(self.app.factory, self.app.settings).flush()

    def mails_to(self, address: str) -> list[Received]:
        return [r for r in self.relay.received if address in r.rcpt_tos]

    def tickets(self) -> list[Ticket]:
        with self.app.factory() as session:
            return list(session.scalars(select(Ticket).order_by(Ticket.id)))

    def ticket(self, ticket_id: int) -> Ticket:
        with self.app.factory() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            return ticket

    def articles(self, ticket_id: int) -> list[Article]:
        with self.app.factory() as session:
            return list(
                session.scalars(
                    select(Article).where(Article.ticket_id == ticket_id).order_by(Article.id)
                )
            )

    def events(self, ticket_id: int, kind: str | None = None) -> list[Event]:
        with self.app.factory() as session:
            rows = session.scalars(
                select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id)
            )
            return [e for e in rows if kind is None or e.kind == kind]

    def links(self) -> list[tuple[int, int, str]]:
        with self.app.factory() as session:
            return [
                (link.ticket_id, link.linked_ticket_id, link.reason)
                for link in session.scalars(select(TicketLink).order_by(TicketLink.id))
            ]

    def participants(self) -> list[tuple[int, str, str]]:
        with self.app.factory() as session:
            rows = session.execute(
                select(Participant.ticket_id, Participant.address, Participant.role)
            ).all()
            return [(t, a, r) for t, a, r in rows]

    def count(self, model: Any, *where: Any) -> int:
        with self.app.factory() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def execute(self, statement: Any) -> None:
        with self.app.factory() as session, session.begin():
            session.execute(statement)

    def open_ticket(self) -> Received:
        """Erika's first mail; returns our acknowledgement to her."""
        self.send(mail(**FIRST))
        [ack] = self.mails_to(ERIKA)
        return ack


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as server:
        yield server


@pytest.fixture
def make_desk(tmp_path: Path, database_url: str, relay: Relay) -> Iterator[Any]:
    made: list[Desk] = []

    def factory(**extra: Any) -> Desk:
        desk = Desk(tmp_path, database_url, relay, **extra)
        made.append(desk)
        return desk

    yield factory
    for desk in made:
        desk.close()


@pytest.fixture
def desk(make_desk: Any) -> Desk:
    return make_desk()  # type: ignore[no-any-return]


def _plain(received: Received) -> str:
    """Everything a recipient can read: the headers and every text part."""
    msg = received.message
    parts = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))  # type: ignore[attr-defined]
    return "\n".join(parts)


# -- customers replying ---------------------------------------------------------------


def test_a_new_ticket_notifies_the_agents_of_its_level(desk: Desk) -> None:
    desk.open_ticket()
    [notice] = desk.mails_to(ANNA)
    seen = _plain(notice)
    assert "DM-000001" in seen and "druckt seit heute früh nicht mehr" in seen
    assert notice.message["Reply-To"].addresses[0].addr_spec.startswith("support+dm-000001.")


def test_customer_replies_gmail_outlook_and_german_outlook_join_one_ticket(desk: Desk) -> None:
    ack = desk.open_ticket()
    assert ack.message["Subject"] == f"Re: [DM-000001] {OLD_SUBJECT}"
    reply_to = ack.message["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+dm-000001")
    # Gmail: threads by In-Reply-To/References of our acknowledgement.
    desk.send(
        mail(
            sender=FIRST["sender"],
            subject=f"Re: {ack.message['Subject']}",
            body="Hier ist die Fehlermeldung: E-42.\n\n"
            "Am Mo., 2. Nov. 2026 um 10:00 Uhr schrieb Data & More Support:\n"
            "> Guten Tag Erika Muster,\n> wir haben Ihre Anfrage erhalten.\n",
            in_reply_to=ack.message["Message-ID"],
            references=f"{FIRST['message_id']} {ack.message['Message-ID']}",
        )
    )
    # Outlook with rewritten Message-IDs: only the reply address and the tag remain.
    desk.send(
        mail(
            sender=FIRST["sender"],
            to=reply_to,
            subject=f"RE: [DM-000001] {OLD_SUBJECT}",
            body="Der Drucker zeigt jetzt E-43.",
        ),
        rcpts=[reply_to],
    )
    # German Outlook, to the plain support address, with only the tag.
    desk.send(
        mail(
            sender=FIRST["sender"],
            subject=f"AW: [DM-000001] {OLD_SUBJECT}",
            body="Nachtrag: es betrifft alle drei Drucker.",
        )
    )
    assert [t.id for t in desk.tickets()] == [1]
    articles = [a for a in desk.articles(1) if a.direction == "in"]
    assert len(articles) == 4
    gmail = articles[1]
    assert gmail.text == "Hier ist die Fehlermeldung: E-42."
    assert gmail.full_text is not None and "wir haben Ihre Anfrage erhalten" in gmail.full_text
    reasons = [" ".join(e.detail["reasons"]) for e in desk.events(1, "article_added")]
    # our acknowledgement's Message-ID and Reply-To carry Erika's signed token
    assert "by signed reply token in <dm-000001.ack.0." in reasons[0]
    assert "by signed reply token in support+dm-000001." in reasons[1]
    assert "subject tag DM-000001" in reasons[2]
    assert len(desk.mails_to(ERIKA)) == 1  # no acknowledgement for a follow-up


def test_cc_becomes_a_participant_who_may_reply(desk: Desk) -> None:
    desk.send(mail(**FIRST, headers={"Cc": "Max <max@kunde.example>, anna@dataandmore.com"}))
    with desk.app.factory() as session:
        people = session.execute(select(Participant.address, Participant.role)).all()
    assert [tuple(p) for p in people] == [("max@kunde.example", "cc")]  # never the agent
    desk.send(
        mail(sender="max@kunde.example", subject=f"AW: [DM-000001] {OLD_SUBJECT}", body="+1"),
        mail_from="max@kunde.example",
    )
    assert [t.id for t in desk.tickets()] == [1]
    assert [a.sender for a in desk.articles(1) if a.direction == "in"] == [
        ERIKA,
        "max@kunde.example",
    ]
    assert desk.mails_to("max@kunde.example") == []


def test_a_reply_with_a_new_cc_adds_a_participant(desk: Desk) -> None:
    desk.open_ticket()
    desk.send(
        mail(
            sender=ERIKA,
            subject=f"AW: [DM-000001] {OLD_SUBJECT}",
            body="Ich setze meinen Chef in Kopie.",
            headers={"Cc": "Chef <chef@kunde.example>"},
        )
    )
    assert desk.participants() == [(1, "chef@kunde.example", "cc")]
    desk.send(
        mail(sender="chef@kunde.example", subject=f"AW: [DM-000001] {OLD_SUBJECT}", body="Eilt!"),
        mail_from="chef@kunde.example",
    )
    assert [t.id for t in desk.tickets()] == [1]
    assert [a.sender for a in desk.articles(1) if a.direction == "in"] == [
        ERIKA,
        ERIKA,
        "chef@kunde.example",
    ]


def test_helpdesk_forward_keeps_the_helpdesk_as_requester(desk: Desk) -> None:
    desk.send(
        mail(
            sender="IT Helpdesk <helpdesk@kunde.example>",
            subject="WG: Drucker kaputt",
            body="Bitte um Hilfe, siehe unten.\n\n"
            "Von: End User <enduser@kunde.example>\n"
            "Gesendet: Montag, 2. November 2026 09:00\n"
            "An: helpdesk@kunde.example\n"
            "Betreff: Drucker kaputt\n\n"
            "Mein Drucker druckt nicht.\n",
        ),
        mail_from="helpdesk@kunde.example",
    )
    with desk.app.factory() as session:
        ticket = session.get(Ticket, 1)
        assert ticket is not None and ticket.requester is not None
        assert ticket.requester.email == "helpdesk@kunde.example"
        people = session.execute(select(Participant.address, Participant.role)).all()
    assert [tuple(p) for p in people] == [("enduser@kunde.example", "forwarded")]


# -- strangers ------------------------------------------------------------------------


STRANGER_WAYS = {
    "subject tag": {"subject": "Re: [DM-000001] Bitte um Rückruf"},
    "In-Reply-To of the customer's mail": {
        "subject": "Bitte um Rückruf",
        "in_reply_to": FIRST["message_id"],
        "references": FIRST["message_id"],
    },
    # e.g. forwarded by the customer: our ack's Message-ID in References is no key
    "our ack's Message-ID in References": {
        "subject": "Bitte um Rückruf",
        "references": "ACK_ID",
    },
    "the customer's reply address": {"subject": "Bitte um Rückruf", "to": "REPLY_TO"},
}


@pytest.mark.parametrize("way", list(STRANGER_WAYS))
def test_a_stranger_gets_a_new_linked_ticket_and_nothing_of_the_old(desk: Desk, way: str) -> None:
    ack = desk.open_ticket()
    reply_to = ack.message["Reply-To"].addresses[0].addr_spec
    values = dict(STRANGER_WAYS[way])
    rcpts = None
    if values.get("to") == "REPLY_TO":
        values["to"] = reply_to
        rcpts = [reply_to]
    if values.get("references") == "ACK_ID":
        values["references"] = ack.message["Message-ID"]
    before = desk.ticket(1)
    values["headers"] = {"Cc": "victim@third.example"}
    desk.send(
        mail(sender=f"Mallory <{STRANGER}>", body="Bitte rufen Sie mich an.", **values),
        rcpts=rcpts,
        mail_from=STRANGER,
    )
    assert [t.id for t in desk.tickets()] == [1, 2]
    after = desk.ticket(1)
    assert (after.status, after.subject, after.updated_at) == (
        before.status,
        before.subject,
        before.updated_at,
    )
    assert [a.sender for a in desk.articles(1) if a.direction == "in"] == [ERIKA]
    [link] = desk.links()
    assert link[:2] == (2, 1)
    assert f"sender {STRANGER} is not a participant of DM-000001 (matched by" in link[2]
    [stranger_ack] = desk.mails_to(STRANGER)
    seen = _plain(stranger_ack)
    assert "DM-000002" in seen
    assert "DM-000001" not in seen and "dm-000001" not in seen.lower()
    assert OLD_SUBJECT not in seen and "Erika" not in seen
    assert desk.ticket(2).subject.replace("Re: ", "") == "Bitte um Rückruf"
    assert len(desk.mails_to(ERIKA)) == 1  # Erika hears nothing of it
    # whom the stranger copies joins the stranger's ticket, never Erika's
    assert desk.participants() == [(2, "victim@third.example", "cc")]
    assert desk.mails_to("victim@third.example") == []


def test_a_colliding_message_id_does_not_move_someone_elses_ticket(desk: Desk) -> None:
    """Customer B's reply arrives before its parent; a stranger then sends a mail whose
    Message-ID is that parent's: B's ticket stays B's."""
    desk.send(
        mail(
            sender="Bert <bert@b.example>",
            subject="Re: Angebot",
            body="Ja, bitte so bestellen.",
            in_reply_to="<parent@b.example>",
            references="<parent@b.example>",
        ),
        mail_from="bert@b.example",
    )
    desk.send(
        mail(
            sender=STRANGER,
            subject="Angebot",
            message_id="<parent@b.example>",
            body="Hallo",
            # putting B on Cc does not help: B's reply was not written to the stranger
            headers={"Cc": "bert@b.example"},
        ),
        mail_from=STRANGER,
    )
    tickets = desk.tickets()
    assert [(t.id, t.status) for t in tickets] == [(1, "new"), (2, "new")]
    assert [a.sender for a in desk.articles(1) if a.direction == "in"] == ["bert@b.example"]
    assert all(a.sender != STRANGER for a in desk.articles(1))
    assert desk.events(1, "merged") == []
    [stranger_ack] = desk.mails_to(STRANGER)
    assert "DM-000001" not in _plain(stranger_ack) and "bestellen" not in _plain(stranger_ack)
    kept = " ".join(desk.events(2, "created")[0].detail["reasons"])
    assert "ticket 1 refers to this message but is kept" in kept


# -- agents ---------------------------------------------------------------------------


def agent_mail(body: str, *, authenticated: bool = True, cc: str | None = None, **kw: Any) -> bytes:
    kw.setdefault("subject", f"Re: [DM-000001] {OLD_SUBJECT}")
    headers = dict(AUTH_PASS) if authenticated else {}
    if cc:
        headers["Cc"] = cc
    return mail(sender=f"Anna Schmidt <{ANNA}>", body=body, headers=headers, **kw)


def test_agent_reply_is_stored_and_the_note_kept_internal(desk: Desk) -> None:
    desk.open_ticket()
    desk.send(
        agent_mail(
            "Guten Tag Frau Muster, bitte starten Sie den Drucker neu.\n\n"
            "#note\nKunde hat Wartungsvertrag, nicht berechnen.\n"
        ),
        mail_from=ANNA,
    )
    out = [a for a in desk.articles(1) if a.author == ANNA]
    assert [(a.direction, a.internal) for a in out] == [("out", False), ("out", True)]
    assert out[0].text == "Guten Tag Frau Muster, bitte starten Sie den Drucker neu."
    assert out[1].text == "Kunde hat Wartungsvertrag, nicht berechnen."
    ticket = desk.ticket(1)
    assert ticket.first_response_at is not None and ticket.status == "waiting"
    assert len(desk.tickets()) == 1
    ack, relayed = desk.mails_to(ERIKA)
    seen = _plain(relayed)
    assert "bitte starten Sie den Drucker neu" in seen
    assert "Wartungsvertrag" not in seen and "#note" not in seen  # the note stays inside
    assert ANNA not in seen  # the agent's own address is not exposed
    assert relayed.mail_from == SUPPORT and "Anna Schmidt" in relayed.message["From"]
    assert relayed.message["Subject"] == ack.message["Subject"]
    notices = desk.mails_to(ANNA)
    assert len(notices) == 1  # the notice of the new ticket; an agent's mail gets no ack
    assert "Wartungsvertrag" not in _plain(ack)


def test_agent_answers_the_notice_with_its_reply_address(desk: Desk) -> None:
    """No Authentication-Results at all: the agent token in the notice's reply address
    authenticates the agent (it was sent only to them)."""
    desk.open_ticket()
    [notice] = desk.mails_to(ANNA)
    reply_to = notice.message["Reply-To"].addresses[0].addr_spec
    desk.send(
        agent_mail(
            "#category installation\nDer Techniker kommt morgen.",
            authenticated=False,
            to=reply_to,
            subject=f"Re: {notice.message['Subject']}",
            in_reply_to=notice.message["Message-ID"],
        ),
        rcpts=[reply_to],
        mail_from=ANNA,
    )
    assert desk.ticket(1).category == "installation"
    [event] = desk.events(1, "agent_reply")
    assert "signed agent token" in " ".join(event.detail["reasons"])
    assert "Der Techniker kommt morgen." in _plain(desk.mails_to(ERIKA)[-1])
    # the same reply address used by someone else is a customer's mail to a plus address
    desk.send(
        mail(sender=STRANGER, to=reply_to, subject="Re: x", body="#status closed"),
        rcpts=[reply_to],
        mail_from=STRANGER,
    )
    assert desk.ticket(1).status != "closed" and [t.id for t in desk.tickets()] == [1, 2]


def test_level_command_is_applied_and_stored_as_a_correction(desk: Desk) -> None:
    desk.open_ticket()
    desk.send(agent_mail("#level L2\n#priority high\n#assign Anna Schmidt\n"), mail_from=ANNA)
    ticket = desk.ticket(1)
    assert (ticket.level, ticket.priority, ticket.assignee) == ("L2", "high", ANNA)
    [corrected] = desk.events(1, "corrected")
    assert corrected.actor == ANNA and corrected.detail["after"]["level"] == "L2"

    # ... and is training data for `mailtriage train`, scored by `eval --corrections`
    from mailtriage.evaluation import eval_corrections
    from mailtriage.triage.corrections import correction_examples
    from mailtriage.triage.rules_file import load_rules

    with desk.app.factory() as session:
        [example] = correction_examples(session)
    assert example.kind == "correction" and example.source == "DM-000001"
    assert (example.labels["level"], example.labels["priority"]) == ("L2", "high")
    scored = eval_corrections([(example.source, example.inp, dict(example.labels))], load_rules())
    assert scored.rules.n == 1 and scored.rules.predictions[0].gold["priority"] == "high"


def test_a_bad_command_applies_nothing(desk: Desk) -> None:
    desk.open_ticket()
    desk.send(agent_mail("#level L2\n#frobnicate\nHallo"), mail_from=ANNA)
    ticket = desk.ticket(1)
    assert ticket.level != "L2" and ticket.status == "new"
    assert [a for a in desk.articles(1) if a.author == ANNA] == []
    [refused] = desk.events(1, "agent_command_refused")
    assert "unknown command #frobnicate" in refused.detail["errors"][0]
    assert len(desk.mails_to(ERIKA)) == 1  # nothing relayed
    _notice, error = desk.mails_to(ANNA)
    assert "#frobnicate" in _plain(error)


def test_a_spoofed_agent_command_is_refused(desk: Desk) -> None:
    desk.open_ticket()
    level = desk.ticket(1).level
    desk.send(
        agent_mail("#status closed\n#level L3\nIhr Ticket ist erledigt.", authenticated=False),
        mail_from=ANNA,
    )
    ticket = desk.ticket(1)
    assert (ticket.status, ticket.level) == ("new", level)
    assert desk.events(1, "corrected") == [] and desk.events(1, "agent_reply") == []
    assert [a for a in desk.articles(1) if a.author == ANNA] == []
    assert len(desk.mails_to(ERIKA)) == 1  # nothing relayed
    [link] = desk.links()
    assert link[:2] == (2, 1) and "agent address not authenticated" in link[2]


def test_a_forged_authentication_header_below_ours_does_not_count(desk: Desk) -> None:
    desk.open_ticket()
    raw = agent_mail("#status closed\nErledigt.", authenticated=False)
    # our server's header on top says fail; the sender's own claim below it says pass
    raw = (
        b"Authentication-Results: mx.dataandmore.com; dkim=fail header.d=dataandmore.com\r\n"
        + b"Authentication-Results: mx.dataandmore.com; dkim=pass header.d=dataandmore.com\r\n"
        + raw
    )
    desk.send(raw, mail_from=ANNA)
    assert desk.ticket(1).status == "new" and desk.events(1, "agent_reply") == []


# -- status ---------------------------------------------------------------------------


def test_reopen_after_resolve_and_a_new_linked_ticket_after_the_window(desk: Desk) -> None:
    desk.open_ticket()
    desk.send(agent_mail("#status resolved\nErledigt."), mail_from=ANNA)
    ticket = desk.ticket(1)
    assert ticket.status == "resolved" and ticket.resolved_at is not None
    desk.send(
        mail(sender=ERIKA, subject=f"AW: [DM-000001] {OLD_SUBJECT}", body="Geht wieder nicht.")
    )
    assert desk.ticket(1).status == "open" and len(desk.tickets()) == 1
    changes = [
        (e.detail["from"], e.detail["to"], e.actor) for e in desk.events(1, "status_changed")
    ]
    assert changes == [("new", "resolved", ANNA), ("resolved", "open", "customer")]
    # resolved again, 20 days ago: past the 14-day window
    desk.execute(
        update(Ticket)
        .where(Ticket.id == 1)
        .values(status="resolved", resolved_at=utcnow() - timedelta(days=20))
    )
    desk.send(mail(sender=ERIKA, subject=f"AW: [DM-000001] {OLD_SUBJECT}", body="Und wieder."))
    assert desk.ticket(1).status == "resolved"
    assert [t.id for t in desk.tickets()] == [1, 2]
    [link] = desk.links()
    assert link[:2] == (2, 1) and "past the reopen window" in link[2]
    # the ack, the relayed "Erledigt.", the feedback request, the new ticket's ack
    kinds = [m.message["Subject"] for m in desk.mails_to(ERIKA)]
    assert len(kinds) == 4 and sum("Wie zufrieden" in k for k in kinds) == 1


# -- loops ----------------------------------------------------------------------------


def test_a_naive_auto_responder_gets_at_most_one_mail(desk: Desk) -> None:
    robot = "info@robot.example"
    desk.send(mail(sender=robot, subject="Anfrage", body="Bitte Angebot senden."), mail_from=robot)
    for _ in range(10):  # it answers whatever it got, keeping only the subject
        [last] = desk.mails_to(robot)[-1:]
        desk.send(
            mail(
                sender=robot,
                subject=f"Re: {last.message['Subject']}",
                body="Vielen Dank für Ihre Nachricht. Wir melden uns.",
            ),
            mail_from=robot,
        )
    assert len(desk.mails_to(robot)) == 1
    assert len(desk.tickets()) == 1


def test_mail_from_our_own_plus_address_opens_nothing(desk: Desk) -> None:
    own = "support+dm-000001@dataandmore.com"
    desk.send(mail(sender=own, subject="Re: [DM-000001] x", body="Hallo"), mail_from=own)
    assert desk.tickets() == []
    assert desk.relay.received == []
    with desk.app.factory() as session:
        [row] = session.scalars(select(Inbound))
        assert row.outcome == "ignored"


def test_x_auto_response_suppress_all_creates_a_ticket_without_ack(desk: Desk) -> None:
    desk.send(mail(**FIRST, headers={"X-Auto-Response-Suppress": "All"}))
    assert [t.id for t in desk.tickets()] == [1]
    assert desk.mails_to(ERIKA) == []
    assert len(desk.mails_to(ANNA)) == 1  # the agents still hear of the new ticket
    assert "X-Auto-Response-Suppress: All" in " ".join(
        desk.events(1, "created")[0].detail["reasons"]
    )


def test_the_cap_on_new_tickets_per_address_keeps_the_rest(make_desk: Any) -> None:
    desk = make_desk(conversation={"new_tickets_per_address": 3})
    for i in range(5):
        # Written now: the cap is for live floods, not for an archive (old dates).
        now = datetime.now(UTC)
        desk.send(mail(sender=ERIKA, subject=f"Frage {i}", body=f"Frage Nummer {i}?", date=now))
    assert [t.id for t in desk.tickets()] == [1, 2, 3]
    assert len(desk.mails_to(ERIKA)) == 3
    kept = [a.subject for a in desk.articles(3) if a.direction == "in"]
    assert kept == ["Frage 2", "Frage 3", "Frage 4"]
    assert len(desk.mails_to(ANNA)) == 3  # no notice for what was kept
    assert desk.count(Inbound, Inbound.status == "done") == 5  # nothing dropped


def test_agent_answering_a_customer_mail_cced_to_them_takes_the_same_path(desk: Desk) -> None:
    desk.open_ticket()
    desk.send(
        agent_mail(
            "#priority urgent\nIch kümmere mich darum, anbei die Anleitung.",
            to=f"Erika Muster <{ERIKA}>",
            cc=SUPPORT,
            attachments=[("anleitung.pdf", "application/pdf", b"%PDF-1.4 test")],
        ),
        mail_from=ANNA,
    )
    [public] = [a for a in desk.articles(1) if a.author == ANNA]
    assert public.direction == "out" and public.internal is False
    assert public.text == "Ich kümmere mich darum, anbei die Anleitung."
    with desk.app.factory() as session:
        article = session.get(Article, public.id)
        assert article is not None
        assert [a.filename for a in article.attachments] == ["anleitung.pdf"]
    assert desk.ticket(1).priority == "urgent"
    assert desk.participants() == []  # agents never become participants
    # Erika got the agent's mail directly: no second copy relayed
    assert len(desk.mails_to(ERIKA)) == 1
