"""Mail of the conversation end to end: notices to agents, agents' replies relayed to
the customer, command errors; through the real outbox sender to a recording SMTP
relay, on SQLite and PostgreSQL. And the signed tokens in every mail we send."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailtriage.app import App
from mailtriage.config import AgentSettings, Settings
from mailtriage.outbound.ack import OutboundPolicy, outbound_policy
from mailtriage.outbound.conversation_mail import (
    notice_agents,
    notice_step,
    queue_agent_notices,
    queue_command_error,
    queue_relay,
)
from mailtriage.outbound.sender import Sender
from mailtriage.pipeline import reply_token
from mailtriage.pipeline.reply_token import AGENT, REPLY
from mailtriage.portal import links
from mailtriage.store.models import (
    Article,
    Attachment,
    Event,
    Inbound,
    Participant,
    Ticket,
    utcnow,
)
from mailtriage.store.outbound_models import Outbox, Suppression
from relay import Received, Relay

from conftest import CLI, make_settings
from mails import mail, png, read_mail

SUPPORT = "support@dataandmore.com"
OWN_DOMAIN = "mailtriage.dataandmore.com"
SECRET = "a-test-secret-of-enough-length"
ANNA = AgentSettings(address="anna.l1@dataandmore.com", name="Anna Eins", level="L1")
BERND = AgentSettings(address="Bernd.L2@DataAndMore.com", name="Bernd Zwei", level="L2")
CUSTOMER = "erika@kunde.example"
SCREENSHOT = png(1280, 800)


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as server:
        yield server


def conversation_settings(tmp_path: Path, database_url: str, relay: Relay) -> Settings:
    settings = make_settings(
        tmp_path,
        database_url,
        storage={"fsync": False},
        outbound=relay.settings() | {"retry_base_seconds": 0.0},
        security={"secret": SECRET},
    )
    return dataclasses.replace(settings, agents=(ANNA, BERND))


@pytest.fixture
def app(tmp_path: Path, database_url: str, relay: Relay) -> Iterator[App]:
    with App.from_settings(conversation_settings(tmp_path, database_url, relay)) as application:
        application.prepare_database()
        yield application


def receive(app: App, raw: bytes) -> None:
    app.inbox.accept(raw, "test")
    worker = app.worker()
    while worker.run_once():
        pass


def customer_mail() -> bytes:
    return mail(
        subject="Schnittstelle liefert nichts",
        body="Hallo, die REST-Schnittstelle liefert seit heute keine Daten mehr.",
        sender=f"Erika Muster <{CUSTOMER}>",
        message_id="<first@kunde.example>",
        attachments=[("fehler.png", "image/png", SCREENSHOT)],
    )


def policy(app: App) -> OutboundPolicy:
    return outbound_policy(app.settings)


def send(app: App) -> dict[str, int]:
    return Sender(app.factory, app.settings).flush().to_dict()


def by_kind(relay: Relay, kind: str) -> list[Received]:
    return [r for r in relay.received if r.message["X-Mailtriage-Kind"] == kind]


def secret() -> bytes:
    return SECRET.encode()


def new_ticket(app: App, level: str = "L2") -> tuple[int, int]:
    """A customer's ticket of ``level``: (its inbound id, its article id). The notices
    the worker queued for it are removed: these tests queue their own."""
    receive(app, customer_mail())
    with app.factory() as session, session.begin():
        session.execute(delete(Outbox).where(Outbox.kind == "notice"))
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        ticket.level = level
        article = session.scalar(select(Article).where(Article.ticket_id == 1))
        assert article is not None and article.inbound_id is not None
        return article.inbound_id, article.id


def agent_reply(app: App, text: str, *, with_file: bool = True) -> int:
    """The outgoing article the inbound side stores for an agent's reply."""
    data = b"%PDF-1.4 the manual\n"
    sha = app.blobs.put(data, durable=False)
    with app.factory() as session, session.begin():
        article = Article(
            ticket_id=1,
            direction="out",
            sender=BERND.address,
            sender_name=BERND.name,
            subject="Re: Schnittstelle",
            message_key="agent-reply-1@dataandmore.com",
            message_id="agent-reply-1@dataandmore.com",
            content_key="c" * 64,
            text=text,
            author=BERND.address.lower(),
        )
        session.add(article)
        session.flush()
        if with_file:
            session.add(
                Attachment(
                    article_id=article.id,
                    filename="handbuch.pdf",
                    content_type="application/pdf",
                    size=len(data),
                    sha256=sha,
                )
            )
        return article.id


# -- pure ----------------------------------------------------------------------------


def test_notice_agents_by_level_else_l1_else_none() -> None:
    agents = (ANNA, BERND)
    assert notice_agents(agents, "L2") == [(1, BERND)]
    assert notice_agents(agents, "L1") == [(0, ANNA)]
    assert notice_agents(agents, "L3") == [(0, ANNA)]  # nobody on L3: L1
    assert notice_agents(agents, None) == [(0, ANNA)]
    assert notice_agents((BERND,), "L3") == []  # nobody on L3 nor L1
    assert notice_agents((), "L1") == []
    assert notice_step(42, 1) == 4201


# -- the acknowledgement carries the customer's token ----------------------------------


def test_ack_reply_to_and_message_id_carry_the_customers_token(app: App, relay: Relay) -> None:
    receive(app, customer_mail())
    assert send(app)["sent"] == 2  # the ack and the notice to the agent of its level
    [ack] = by_kind(relay, "ack")
    msg = ack.message
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    ref = reply_token.parse_reply_address(reply_to, SUPPORT)
    assert ref is not None and ref.ticket_id == 1 and ref.token
    assert reply_to == f"support+dm-000001.{ref.token}@dataandmore.com"
    assert reply_token.verify_token(secret(), ref.token, 1, CUSTOMER, REPLY)
    assert not reply_token.verify_token(secret(), ref.token, 1, "eve@evil.example", REPLY)
    assert not reply_token.verify_token(secret(), ref.token, 1, CUSTOMER, AGENT)
    assert not reply_token.verify_token(secret(), ref.token, 2, CUSTOMER, REPLY)
    mid = reply_token.parse_message_id(msg["Message-ID"], [OWN_DOMAIN])
    assert mid is not None and (mid.ticket_id, mid.kind, mid.step) == (1, "ack", 0)
    assert reply_token.verify_token(secret(), mid.token, 1, CUSTOMER, REPLY)
    # everything else as before
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailtriage-Ticket"] == "DM-000001"
    assert msg["Subject"] == "Re: [DM-000001] Schnittstelle liefert nichts"


# -- notices -------------------------------------------------------------------------


def test_notice_to_the_l2_agent_with_the_screenshot_and_the_agent_token(
    app: App, relay: Relay
) -> None:
    inbound_id, article_id = new_ticket(app, "L2")
    with app.factory() as session, session.begin():
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        ids = queue_agent_notices(session, ticket, inbound_id, article_id, None, policy(app))
        again = queue_agent_notices(session, ticket, inbound_id, article_id, None, policy(app))
    assert len(ids) == 1 and again == ids  # idempotent
    assert send(app)["sent"] == 2  # the ack and the notice
    [notice] = by_kind(relay, "notice")
    assert notice.rcpt_tos == ("Bernd.L2@dataandmore.com",)
    msg = notice.message
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Mailtriage-Ticket"] == "DM-000001"
    assert msg["Subject"].startswith("[DM-000001] Neues Ticket (L2, ")
    assert msg["Subject"].endswith("): Schnittstelle liefert nichts")
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    ref = reply_token.parse_reply_address(reply_to, SUPPORT)
    assert ref is not None and ref.ticket_id == 1
    assert reply_token.verify_token(secret(), ref.token, 1, "bernd.l2@dataandmore.com", AGENT)
    assert not reply_token.verify_token(secret(), ref.token, 1, CUSTOMER, REPLY)
    mid = reply_token.parse_message_id(msg["Message-ID"], [OWN_DOMAIN])
    assert mid is not None and (mid.kind, mid.step) == ("notice", notice_step(article_id, 1))
    text = notice.text()
    assert "Erika Muster" in text and CUSTOMER in text
    assert "REST-Schnittstelle liefert seit heute keine Daten" in text
    assert "#status resolved" in text and "#level L2" in text and "#note" in text
    assert "fehler.png" in text
    [png_part] = [p for p in msg.iter_attachments() if p.get_filename() == "fehler.png"]
    assert png_part.get_content_type() == "image/png"
    assert png_part.get_content() == SCREENSHOT
    with app.factory() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == "notice"))
        assert b"PNG" not in str(row.context).encode()  # the bytes stay in the blob store
        sent = session.scalar(select(Article).where(Article.message_id == row.message_id))
        assert sent is not None and sent.internal  # never shown to a customer


def test_a_screenshot_lost_from_the_blob_store_is_cut_out_of_its_mail_again(
    app: App, relay: Relay
) -> None:
    """Attachments are written without an fsync (the raw message is the durable record):
    a power cut can leave the file empty, or gone. The notice still carries the very
    screenshot, cut out of the customer's raw message again, and the blob is whole
    afterwards; once no kept message carries it either, the notice is not sent without
    it (it waits for ``outbox retry``)."""
    inbound_id, article_id = new_ticket(app, "L2")
    sha = hashlib.sha256(SCREENSHOT).hexdigest()
    app.blobs.path(sha).write_bytes(b"")  # what a power cut may leave of a new file
    with app.factory() as session, session.begin():
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        queue_agent_notices(session, ticket, inbound_id, article_id, None, policy(app))
    assert send(app)["sent"] == 2  # the ack and the notice
    [notice] = by_kind(relay, "notice")
    [png_part] = [p for p in notice.message.iter_attachments() if p.get_filename() == "fehler.png"]
    assert png_part.get_content() == SCREENSHOT
    assert app.blobs.get(sha) == SCREENSHOT
    # gone from the blob store and from the inbox (the raw message purged)
    app.blobs.path(sha).unlink()
    with app.factory() as session, session.begin():
        session.execute(delete(Outbox).where(Outbox.kind == "notice"))
        inbound = session.get(Inbound, inbound_id)
        assert inbound is not None
        if inbound.raw is None:
            app.blobs.path(inbound.raw_sha256).unlink()
        inbound.raw, inbound.purged_at = None, utcnow()
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        queue_agent_notices(session, ticket, inbound_id, article_id, None, policy(app))
    report = send(app)
    assert report["sent"] == 0 and report["sent"] + report["retrying"] + report["failed"] == 1
    with app.factory() as session:
        row = session.scalar(select(Outbox).where(Outbox.kind == "notice"))
        assert row is not None and "fehler.png" in (row.last_error or "")
        assert "no kept message carries it" in (row.last_error or "")


def test_notice_attachment_over_the_cap_is_listed_not_attached(app: App, relay: Relay) -> None:
    inbound_id, article_id = new_ticket(app, "L1")
    small = dataclasses.replace(policy(app), attachment_limit_bytes=100)
    with app.factory() as session, session.begin():
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        [_] = queue_agent_notices(session, ticket, inbound_id, article_id, None, small)
    send(app)
    [notice] = by_kind(relay, "notice")
    assert notice.rcpt_tos == ("anna.l1@dataandmore.com",)
    assert list(notice.message.iter_attachments()) == []
    assert "fehler.png" in notice.text() and "nicht angehängt" in notice.text()


def test_no_agents_no_notice(app: App) -> None:
    inbound_id, article_id = new_ticket(app)
    without = dataclasses.replace(policy(app), agents=())
    with app.factory() as session, session.begin():
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        assert queue_agent_notices(session, ticket, inbound_id, article_id, None, without) == []


# -- the relay -----------------------------------------------------------------------


def add_participant(app: App, address: str) -> None:
    with app.factory() as session, session.begin():
        session.add(Participant(ticket_id=1, address=address, name="Chef", role="cc"))


def queue_reply(app: App, article_id: int) -> int | None:
    with app.factory() as session, session.begin():
        ticket = session.get(Ticket, 1)
        assert ticket is not None
        return queue_relay(session, ticket, article_id, BERND.name, policy(app))


def test_relay_hides_the_agent_cc_the_participant_attachment_kept(
    app: App, relay: Relay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    new_ticket(app)
    add_participant(app, "chef@kunde.example")
    article_id = agent_reply(
        app, "Guten Tag, bitte starten Sie den Dienst neu.\n\nBernd, bernd.l2@DATAandmore.com"
    )
    outbox_id = queue_reply(app, article_id)
    assert outbox_id is not None and queue_reply(app, article_id) == outbox_id
    assert send(app)["sent"] == 2
    [reply] = by_kind(relay, "reply")
    assert set(reply.rcpt_tos) == {CUSTOMER, "chef@kunde.example"}
    # the agent's address: nowhere, neither in the raw bytes nor in the decoded parts
    assert b"bernd.l2" not in reply.data.lower()
    assert "bernd.l2" not in (reply.text() + reply.html()).lower()
    msg = reply.message
    assert msg["From"] == '"Bernd Zwei (Data & More Support)" <support@dataandmore.com>'
    assert msg["To"].addresses[0].addr_spec == CUSTOMER
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["chef@kunde.example"]
    assert "Auto-Submitted" not in msg  # written by a person
    assert msg["X-Mailtriage-Ticket"] == "DM-000001"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Subject"] == "Re: [DM-000001] Schnittstelle liefert nichts"
    assert msg["In-Reply-To"] == "<first@kunde.example>"
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    ref = reply_token.parse_reply_address(reply_to, SUPPORT)
    assert ref is not None and reply_token.verify_token(secret(), ref.token, 1, CUSTOMER, REPLY)
    mid = reply_token.parse_message_id(msg["Message-ID"], [OWN_DOMAIN])
    assert mid is not None and (mid.kind, mid.step) == ("reply", article_id)
    assert reply.text().startswith("Guten Tag, bitte starten Sie den Dienst neu.")
    [pdf] = list(msg.iter_attachments())
    assert pdf.get_filename() == "handbuch.pdf" and pdf.get_content() == b"%PDF-1.4 the manual\n"
    # the agent's article is the record (not a second article); it keeps its own key
    # (a redelivery of the agent's mail is a duplicate); the event says what went out
    with app.factory() as session:
        article = session.get(Article, article_id)
        assert article is not None and article.message_key == "agent-reply-1@dataandmore.com"
        outs = session.scalar(
            select(func.count()).select_from(Article).where(Article.direction == "out")
        )
        assert outs == 2  # the ack and the agent's reply
        [sent] = [
            e.detail
            for e in session.scalars(select(Event).where(Event.kind == "mail_sent"))
            if e.detail["kind"] == "reply"
        ]
        assert f"<{sent['message_id']}>" == msg["Message-ID"]
        assert sent["to"] == CUSTOMER and sent["cc"] == ["chef@kunde.example"]
        assert sent["article"] == article_id


def test_a_relay_shared_with_cc_carries_no_page_link(app: App, relay: Relay) -> None:
    """A page link is a capability made for one address. The relay goes to the
    requester and the participants as one mail, so it carries none: neither the
    requester's (a participant could act on the page as the requester) nor one the
    agent quoted from the customer's mail. Alone, the requester gets theirs."""
    new_ticket(app)
    own = links.ticket_url(app.settings, secret(), 1, CUSTOMER, utcnow())
    assert "/t/" in own
    queue_reply(app, agent_reply(app, "Bitte sehen Sie nach.", with_file=False))
    send(app)
    [alone] = by_kind(relay, "reply")
    assert alone.rcpt_tos == (CUSTOMER,)
    [link] = [w for w in alone.text().split() if "/t/" in w]
    claim = links.read_ticket_token(secret(), link.rsplit("/t/", 1)[1])
    assert claim is not None and claim.address == CUSTOMER
    add_participant(app, "chef@kunde.example")
    with app.factory() as session, session.begin():
        session.execute(delete(Article).where(Article.message_key.like("agent-reply-%")))
    quoted = f"Ihr Stand: {own}\n\nBernd"
    queue_reply(app, agent_reply(app, quoted, with_file=False))
    send(app)
    shared = by_kind(relay, "reply")[-1]
    assert set(shared.rcpt_tos) == {CUSTOMER, "chef@kunde.example"}
    assert b"/t/" not in shared.data
    assert "/t/" not in shared.text() + shared.html()
    assert "Ihr Stand: [link to the customer's page removed]" in shared.text()


def suppress(session: Session, address: str) -> None:
    session.add(Suppression(address=address, until=utcnow() + timedelta(days=3), reason="5.1.1"))


def test_relay_to_a_suppressed_requester_is_skipped(app: App, relay: Relay) -> None:
    new_ticket(app)
    assert send(app)["sent"] == 1  # the ack, before the bounce
    with app.factory() as session, session.begin():
        suppress(session, CUSTOMER)
    queue_reply(app, agent_reply(app, "Antwort"))
    assert send(app) == {"sent": 0, "retrying": 0, "failed": 0, "skipped": 1, "lost": 0}
    assert by_kind(relay, "reply") == []
    with app.factory() as session:
        row = session.scalar(select(Outbox).where(Outbox.kind == "reply"))
        assert row is not None and row.status == "skipped"
        assert "suppressed" in (row.last_error or "")


def test_relay_leaves_out_a_suppressed_participant(app: App, relay: Relay) -> None:
    new_ticket(app)
    add_participant(app, "weg@kunde.example")
    add_participant(app, "chef@kunde.example")
    queue_reply(app, agent_reply(app, "Antwort", with_file=False))
    with app.factory() as session, session.begin():  # bounced after it was queued
        suppress(session, "weg@kunde.example")
    send(app)
    [reply] = by_kind(relay, "reply")
    assert set(reply.rcpt_tos) == {CUSTOMER, "chef@kunde.example"}
    assert b"weg@kunde.example" not in reply.data


def test_relay_of_an_internal_note_is_refused(app: App) -> None:
    new_ticket(app)
    article_id = agent_reply(app, "nur intern", with_file=False)
    with app.factory() as session, session.begin():
        article = session.get(Article, article_id)
        assert article is not None
        article.internal = True
    with pytest.raises(ValueError, match="not a public outgoing article"):
        queue_reply(app, article_id)


# -- the command error ---------------------------------------------------------------


def test_command_error_mail_to_the_agent(app: App, relay: Relay) -> None:
    new_ticket(app)
    errors = ["#stauts resolved: unknown command", "#level L9: not a level"]
    with app.factory() as session, session.begin():
        outbox_id = queue_command_error(session, 1, 77, BERND.address, errors, policy(app))
        assert queue_command_error(session, 1, 77, BERND.address, errors, policy(app)) == outbox_id
    send(app)
    [got] = by_kind(relay, "cmd_error")
    assert got.rcpt_tos == ("Bernd.L2@dataandmore.com",)
    msg = got.message
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"].startswith("[DM-000001] Befehl nicht verstanden")
    text = got.text()
    assert "#stauts resolved: unknown command" in text and "#level L9" in text
    assert "nichts übernommen" in text and "#status" in text
    mid = reply_token.parse_message_id(msg["Message-ID"], [OWN_DOMAIN])
    assert mid is not None and (mid.kind, mid.step) == ("cmd_error", 77)
    assert reply_token.verify_token(secret(), mid.token, 1, "bernd.l2@dataandmore.com", AGENT)


# -- tickets show --------------------------------------------------------------------


def test_tickets_show_has_the_conversation_participants_and_links(
    app: App, relay: Relay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mailtriage.store.models import TicketLink

    new_ticket(app)
    add_participant(app, "chef@kunde.example")
    article_id = agent_reply(app, "Bitte neu starten.", with_file=False)
    queue_reply(app, article_id)
    send(app)
    receive(app, mail(subject="Andere Frage", sender="Fremd <fremd@andere.example>"))
    with app.factory() as session, session.begin():
        session.add(
            Article(
                ticket_id=1,
                direction="out",
                internal=True,
                author=BERND.address.lower(),
                sender=BERND.address,
                message_key="note-1",
                content_key="d" * 64,
                text="Kunde hat Version 3.",
                full_text="#note\nKunde hat Version 3.",
            )
        )
        session.add(TicketLink(ticket_id=2, linked_ticket_id=1, reason="a stranger's reply"))
    config = tmp_path / "show.toml"
    config.write_text(
        f'[database]\nurl = "{app.settings.database_url}"\n'
        f'[storage]\ndir = "{app.settings.storage.dir}"\n'
        f'[[agents]]\naddress = "{BERND.address}"\nname = "{BERND.name}"\nlevel = "L2"\n',
        encoding="utf-8",
    )
    cli = CLI(config, capsys)
    data: dict[str, Any] = cli.json("tickets", "show", "DM-000001")
    assert data["status"] and data["number"] == "DM-000001"
    arts = data["articles"]
    assert [(a["direction"], a["internal"]) for a in arts] == [
        ("in", False), ("out", False), ("out", False), ("out", True),
    ]  # fmt: skip
    [relayed] = [a for a in arts if a["author"] and not a["internal"]]
    assert relayed["author"] == BERND.address.lower() and relayed["author_name"] == "Bernd Zwei"
    assert relayed["text"] == "Bitte neu starten." and "full_text" in relayed
    assert arts[3]["full_text"] == "#note\nKunde hat Version 3."
    assert data["participants"] == [{"address": "chef@kunde.example", "name": "Chef", "role": "cc"}]
    linked = cli.json("tickets", "show", "2")
    assert linked["links"] == [{"ticket": "DM-000001", "reason": "a stranger's reply"}]
    assert data["links"] == [{"ticket": "DM-000002", "reason": "a stranger's reply"}]
    code, out, _ = cli("tickets", "show", "1")
    assert code == 0
    assert "[internal note]" in out and "Kunde hat Version 3." in out
    assert "Bernd Zwei" in out and "chef@kunde.example" in out and "DM-000002" in out


def test_no_header_injection_from_cc_names_or_attachment_names() -> None:
    from datetime import UTC, datetime

    from mailtriage.outbound.headers import MailAttachment, OutgoingMail

    evil = "Chef\r\nBcc: spy@attacker.example"
    message = read_mail(
        OutgoingMail(
            from_name="Bernd (Data & More Support)\r\nBcc: spy@attacker.example",
            from_address=SUPPORT,
            to_name="Erika",
            to_address=CUSTOMER,
            reply_to="support+dm-000001@dataandmore.com",
            subject="Re: [DM-000001] x",
            message_id="dm-000001.reply.5.abcdefghijklmnop@mailtriage.dataandmore.com",
            date=datetime(2026, 11, 2, tzinfo=UTC),
            text="Antwort",
            auto_submitted="",
            cc=(("chef@kunde.example", evil), ("spy@attacker.example\r\nBcc: x@y.z", "")),
            attachments=(MailAttachment(evil + ".pdf", "text/html\r\nBcc: x", b"data"),),
        )
    )
    raw = bytes(message)
    assert b"\r\nBcc:" not in raw and "Bcc" not in message
    assert [a.addr_spec for a in message["Cc"].addresses] == ["chef@kunde.example"]
    [part] = list(message.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    assert "\n" not in (part.get_filename() or "")
    assert "Auto-Submitted" not in message
