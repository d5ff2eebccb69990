"""SMTP intake: the real aiosmtpd listener on a loopback port, driven by smtplib and swaks."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from mailtriage.app import App
from mailtriage.config import ConfigError, Settings
from mailtriage.inbox import Accepted, Stored
from mailtriage.intake.smtp import RecipientPolicy, SmtpListener, read_data
from mailtriage.service import Service, run_service
from mailtriage.store.models import Inbound, Ticket

from conftest import make_settings, stored_raw
from mails import mail
from servers import require_binary, swaks, wait_for

SUPPORT = "support@dataandmore.com"


class Intake:
    """An App plus a running SmtpListener on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.app = App.from_settings(settings)
        self.app.prepare_database()
        self.listener = SmtpListener(self.app.inbox, settings)
        self.host, self.port = self.listener.start()

    def client(self, **kwargs: Any) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, timeout=30, **kwargs)

    def rows(self) -> list[Inbound]:
        with self.app.factory() as session:
            return list(session.scalars(select(Inbound).order_by(Inbound.id)))

    def close(self) -> None:
        self.listener.stop(5)
        self.app.close()


@pytest.fixture
def make_intake(tmp_path: Path) -> Iterator[Callable[..., Intake]]:
    made: list[Intake] = []

    def factory(database_url: str | None = None, **sections: Any) -> Intake:
        smtp = {"port": 0, **sections.pop("smtp", {})}
        intake = Intake(make_settings(tmp_path, database_url, smtp=smtp, **sections))
        made.append(intake)
        return intake

    yield factory
    for intake in made:
        intake.close()


@pytest.fixture
def intake(make_intake: Callable[..., Intake]) -> Intake:
    return make_intake(storage={"max_message_mb": 0.1})


def send(
    intake: Intake,
    raw: bytes,
    rcpts: list[str] | None = None,
    sender: str = "kunde@example.org",
    **options: Any,
) -> tuple[int, bytes]:
    """MAIL/RCPT/DATA by hand; returns the reply to DATA."""
    with intake.client() as client:
        client.ehlo("client.example.org")
        code, msg = client.mail(sender, options.get("mail_options", []))
        assert code == 250, msg
        for rcpt in rcpts or [SUPPORT]:
            client.rcpt(rcpt)
        return client.data(raw)


# -- recipients (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("support@dataandmore.com", True),
        ("Support@DataAndMore.com", True),
        ("support+drucker@dataandmore.com", True),
        ("support+a+b@dataandmore.com", True),
        ("anyone@help.example", True),  # "@help.example" takes the whole domain
        ("sales@dataandmore.com", False),
        ("support@dataandmore.com.evil.example", False),
        ("support@evil.example", False),
        ("supportx@dataandmore.com", False),
        ("@relay.example:support@dataandmore.com", False),  # source route
        ("support%evil.example@dataandmore.com", False),
        ("support", False),
        ("", False),
        # RFC 5321 4.5.1: postmaster of every domain we take mail for, and bare
        ("postmaster@dataandmore.com", True),
        ("PostMaster@DataAndMore.com", True),
        ("postmaster@help.example", True),
        ("Postmaster", True),
        ("postmaster@elsewhere.example", False),
        ("postmaster@sub.dataandmore.com", False),
        ("postmaster+x@elsewhere.example", False),
        ("@relay.example:postmaster@elsewhere.example", False),
    ],
)
def test_recipient_policy(address: str, allowed: bool) -> None:
    policy = RecipientPolicy.from_config(["support@dataandmore.com", "@help.example"])
    assert policy.allows(address) is allowed


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["support"], r"smtp.recipients\[0\]: expected an address or @domain"),
        (["a@b.example", "x@"], r"smtp.recipients\[1\]: expected an address or @domain"),
        ([], r"smtp.recipients: no recipients"),
    ],
)
def test_recipient_config_errors_name_the_key(entries: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RecipientPolicy.from_config(entries)


# -- DATA reading (pure parts, byte literals) -------------------------------------------


def _read(
    data: bytes, limit: int | None = None, reader_limit: int = 2**16
) -> tuple[bytes | None, bytes]:
    """Feed ``data`` to read_data; returns (message, what is left for the next command)."""

    async def go() -> tuple[bytes | None, bytes]:
        reader = asyncio.StreamReader(limit=reader_limit)
        reader.feed_data(data)
        reader.feed_eof()
        message = await read_data(reader, limit)
        return message, await reader.read()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b".\r\n", b""),  # empty message
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"Ende.\r\nmehr.\r\n.\r\n", b"Ende.\r\nmehr.\r\n"),  # dots ending lines
        (b"..\r\n.\r\n", b".\r\n"),  # a line of one dot, stuffed
        (b"..x\r\ny\r\n...\r\n.\r\n", b".x\r\ny\r\n..\r\n"),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
        (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),  # bare LF is no line end
        (b"x\r\n.\r\nQUIT\r\n", b"x\r\n"),  # pipelined: the rest stays unread
    ],
)
def test_read_data_finds_the_lone_dot_and_unstuffs(wire: bytes, message: bytes) -> None:
    got, rest = _read(wire)
    assert got == message
    assert rest == wire.split(b"\r\n.\r\n", 1)[-1] if b"QUIT" in wire else rest == b""


def test_read_data_in_pieces_and_over_the_limit() -> None:
    body = b"".join(b"Zeile %d ohne Punkt am Ende\r\n" % i for i in range(5000))
    # much longer than the reader's buffer limit: read in pieces, the CRLF.CRLF split
    got, rest = _read(body + b".\r\nNOOP\r\n", reader_limit=64)
    assert got == body and rest == b"NOOP\r\n"
    # over the size limit: read to the end (the session goes on), but not kept
    got, rest = _read(body + b".\r\nNOOP\r\n", limit=len(body) - 1, reader_limit=64)
    assert got is None and rest == b"NOOP\r\n"
    assert _read(b"x\r\n.\r\n", limit=6)[0] == b"x\r\n"  # 6 bytes on the wire: fits
    assert _read(b"xy\r\n.\r\n", limit=6)[0] is None


def test_group_commit_puts_concurrent_messages_in_one_transaction(
    make_intake: Callable[..., Intake], monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = make_intake()
    batches: list[int] = []
    record = intake.app.inbox.record

    def counting(items: list[Any]) -> list[Accepted]:
        batches.append(len(items))
        return record(items)

    monkeypatch.setattr(intake.app.inbox, "record", counting)
    committer = intake.listener.committer
    for _ in range(3):
        committer.announce()
    same = mail(subject="twice")
    # The blobs are written (fsync) first, so the three submits follow each other within
    # the committer's short wait even on a loaded machine.
    stored = [_stored(intake, raw) for raw in (mail(), same, same)]
    futures = [committer.submit(item) for item in stored]
    results = [f.result(10) for f in futures]
    assert batches == [3]  # it waited for the announced ones
    assert results[1].id == results[2].id and not results[2].created
    assert len({r.id for r in results}) == 2
    # nothing announced: a lone message is committed at once
    started = time.monotonic()
    committer.submit(_stored(intake, mail(subject="alone"))).result(10)
    assert batches[-1] == 1 and time.monotonic() - started < 1


def _stored(intake: Intake, raw: bytes) -> Stored:
    return Stored(intake.app.blobs.put(raw), len(raw), "test")


# -- smtplib --------------------------------------------------------------------------


def test_queued_only_after_the_durable_accept(intake: Intake) -> None:
    raw = mail(subject="Drucker").replace(b"\n", b"\r\n") + b".leading dot\r\n"
    code, reply = send(intake, raw, ["support+drucker@dataandmore.com"])
    assert code == 250
    text = reply.decode()
    assert text.startswith("2.0.0 queued as ")
    queued = int(text.rsplit(" ", 1)[1])
    (row,) = intake.rows()
    assert row.id == queued and row.status == "received" and row.source == "smtp:127.0.0.1"
    assert stored_raw(intake.app, row.id) == raw  # byte for byte, dot unstuffed
    env = row.envelope or {}
    assert env["mail_from"] == "kunde@example.org"
    assert env["rcpt_tos"] == ["support+drucker@dataandmore.com"]
    assert env["helo"] == "client.example.org" and env["client_address"] == "127.0.0.1"
    assert env["protocol"] == "esmtp" and env["tls"] is False
    # the same bytes again (a sender's retry after a lost 250): the same id, no new row
    assert send(intake, raw)[1] == reply
    assert len(intake.rows()) == 1


def test_null_sender_is_stored_as_empty_mail_from(intake: Intake) -> None:
    code, _ = send(intake, mail(subject="Undeliverable"), sender="")
    assert code == 250
    assert (intake.rows()[0].envelope or {})["mail_from"] == ""


def test_unknown_recipients_get_550_and_never_relay(intake: Intake) -> None:
    with intake.client() as client:
        client.ehlo("x")
        client.mail("spam@example.net")
        assert client.rcpt("someone@elsewhere.example") == (
            550,
            b"5.1.1 <someone@elsewhere.example>: Recipient address rejected: not accepted here",
        )
        assert client.rcpt("sales@dataandmore.com")[0] == 550
        assert client.docmd("DATA")[0] == 503  # no recipient: no DATA
    # a mix: only the accepted recipient is kept
    with intake.client() as client:
        refused = client.sendmail("kunde@example.org", [SUPPORT, "ceo@elsewhere.example"], mail())
    assert refused == {
        "ceo@elsewhere.example": (
            550,
            b"5.1.1 <ceo@elsewhere.example>: Recipient address rejected: not accepted here",
        )
    }
    assert [r.envelope["rcpt_tos"] for r in intake.rows() if r.envelope] == [[SUPPORT]]


def test_size_is_advertised_and_enforced(intake: Intake) -> None:
    limit = int(0.1 * 1024 * 1024)
    with intake.client() as client:
        client.ehlo("x")
        assert client.esmtp_features["size"] == str(limit)
        assert "pipelining" in client.esmtp_features and "8bitmime" in client.esmtp_features
        assert "auth" not in client.esmtp_features
        big = mail(body="x" * (limit + 10))
        # declared up front (MAIL FROM ... SIZE=n): refused before any data moves
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            client.sendmail("kunde@example.org", [SUPPORT], big)
        assert err.value.smtp_code == 552 and err.value.smtp_error.startswith(b"5.3.4")
        client.rset()
        # not declared: the data is read and then refused
        client.mail("kunde@example.org")
        client.rcpt(SUPPORT)
        assert client.data(big) == (552, b"5.3.4 Message too big for system")
        # the session goes on
        assert client.sendmail("kunde@example.org", [SUPPORT], mail()) == {}
    assert len(intake.rows()) == 1


def test_smtputf8_and_8bit_are_stored_byte_exact(intake: Intake) -> None:
    raw = (
        "From: Jürgen Müller <jürgen@bäckerei.example>\r\nTo: support@dataandmore.com\r\n"
        "Subject: Grüße aus Köln – Störung\r\nMessage-ID: <utf8.1@bäckerei.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\nDer Drucker im Büro druckt nur noch Kästchen.\r\n"
    ).encode()
    with intake.client() as client:
        client.ehlo("x")
        assert "smtputf8" in client.esmtp_features
        refused = client.sendmail(
            "jürgen@bäckerei.example", [SUPPORT], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"]
        )
    assert refused == {}
    (row,) = intake.rows()
    assert stored_raw(intake.app, row.id) == raw
    env = row.envelope or {}
    assert env["mail_from"] == "jürgen@bäckerei.example" and env["smtputf8"] is True
    # The worker turns it into a ticket. (How the parser decodes RFC 6532 raw UTF-8
    # headers is the parser's business; its tests cover it.)
    assert intake.app.worker().drain()["created"] == 1


def test_bad_commands_get_protocol_errors(intake: Intake) -> None:
    with socket.create_connection((intake.host, intake.port), timeout=10) as sock:
        f = sock.makefile("rwb")

        def cmd(line: bytes) -> bytes:
            f.write(line + b"\r\n")
            f.flush()
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            return reply

        assert f.readline().startswith(b"220 ")
        assert cmd(b"MAIL FROM:<a@b.example>").startswith(b"503")  # no HELO yet
        assert cmd(b"HELO").startswith(b"501")
        assert cmd(b"EHLO client.example").startswith(b"250 ")
        assert cmd(b"RCPT TO:<support@dataandmore.com>").startswith(b"503")  # no MAIL
        assert cmd(b"DATA").startswith(b"503")
        assert cmd(b"MAIL FROM:").startswith(b"501")
        assert cmd(b"MAIL FROM:<a@@b>").startswith(b"553")
        assert cmd(b"MAIL FROM:<a@b.example> FROBNICATE=1").startswith(b"555")
        assert cmd(b"X" * 2000).startswith(b"500")
        assert cmd(b"\xff\xfe").startswith(b"500")
        assert cmd(b"NOOP").startswith(b"250")
    # the listener is still fine
    assert send(intake, mail())[0] == 250


def test_lines_longer_than_rfc5321_are_kept_not_refused(intake: Intake) -> None:
    raw = b"Subject: long\r\n\r\n" + b"<td>" * 5000 + b"\r\n"
    assert send(intake, raw)[0] == 250
    assert stored_raw(intake.app, intake.rows()[0].id) == raw


def test_many_concurrent_clients(make_intake: Callable[..., Intake]) -> None:
    intake = make_intake(smtp={"accept_threads": 4})

    def client(n: int) -> list[int]:
        ids = []
        with intake.client() as c:
            for i in range(5):
                c.ehlo(f"c{n}")
                c.mail("kunde@example.org")
                c.rcpt(SUPPORT)
                code, reply = c.data(mail(subject=f"c{n} m{i}"))
                assert code == 250, reply
                ids.append(int(reply.rsplit(b" ", 1)[1]))
        return ids

    with ThreadPoolExecutor(40) as pool:
        ids = [i for batch in pool.map(client, range(40)) for i in batch]
    assert len(ids) == len(set(ids)) == 200
    assert sorted(r.id for r in intake.rows()) == sorted(ids)


def test_connection_limit_answers_421(make_intake: Callable[..., Intake]) -> None:
    intake = make_intake(smtp={"max_connections": 2})
    first, second = intake.client(), intake.client()
    try:
        with pytest.raises(smtplib.SMTPConnectError) as err:
            intake.client()
        assert err.value.smtp_code == 421
        first.quit()
        # a freed slot is usable again (the server notices the close asynchronously)
        third = wait_for(lambda: _try_connect(intake), what="a free connection slot")
        third.quit()
    finally:
        second.close()


def _try_connect(intake: Intake) -> smtplib.SMTP | None:
    try:
        return intake.client()
    except smtplib.SMTPConnectError:
        return None


def test_disk_trouble_answers_451_then_recovers(make_intake: Callable[..., Intake]) -> None:
    # every message a blob file (storage.inline_max_kb = 0; by default a small one goes
    # into its row, and only the database can fail it: test below)
    intake = make_intake(storage={"inline_max_kb": 0})
    blobs = intake.app.blobs.root
    blobs.mkdir(parents=True, exist_ok=True)
    blobs.rename(blobs.with_name("blobs.away"))
    blobs.write_text("not a directory")  # every blob write now fails
    raw = mail(subject="retry me")
    code, reply = send(intake, raw)
    assert (code, reply[:5]) == (451, b"4.3.0")
    assert intake.rows() == []
    blobs.unlink()
    blobs.with_name("blobs.away").rename(blobs)
    assert send(intake, raw)[0] == 250  # the sender's retry
    assert len(intake.rows()) == 1


def test_database_down_answers_451_then_recovers(
    pg_url: str, make_intake: Callable[..., Intake]
) -> None:
    intake = make_intake(pg_url)
    name = make_url(pg_url).database
    admin = sa.create_engine(
        make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:  # no new connections, and the pooled ones die
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
        raw = mail(subject="database down")
        code, reply = send(intake, raw)
        assert (code, reply[:5]) == (451, b"4.3.0")
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        assert send(intake, raw)[0] == 250
        (row,) = intake.rows()
        assert row.status == "received"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_starttls(make_intake: Callable[..., Intake], tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            require_binary("openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    intake = make_intake(
        smtp={"tls_cert_file": str(cert), "tls_key_file": str(key), "require_starttls": True}
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with intake.client() as client:
        client.ehlo("x")
        assert "starttls" in client.esmtp_features
        assert client.mail("kunde@example.org")[0] == 530  # must STARTTLS first
        client.starttls(context=context)
        client.ehlo("x")
        assert client.sendmail("kunde@example.org", [SUPPORT], mail()) == {}
    assert (intake.rows()[0].envelope or {})["tls"] is True


def test_lmtp_answers_once_per_recipient(make_intake: Callable[..., Intake]) -> None:
    intake = make_intake(smtp={"lmtp": True, "recipients": ["@dataandmore.com"]})
    with socket.create_connection((intake.host, intake.port), timeout=10) as sock:
        f = sock.makefile("rwb")

        def cmd(line: bytes) -> list[bytes]:
            f.write(line + b"\r\n")
            f.flush()
            lines = [f.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(f.readline())
            return lines

        assert f.readline().startswith(b"220 ")
        assert cmd(b"EHLO x")[0].startswith(b"500")  # LMTP speaks LHLO
        assert cmd(b"LHLO postfix.example")[-1].startswith(b"250 ")
        assert cmd(b"MAIL FROM:<kunde@example.org>")[0].startswith(b"250")
        assert cmd(b"RCPT TO:<support@dataandmore.com>")[0].startswith(b"250")
        assert cmd(b"RCPT TO:<sales@dataandmore.com>")[0].startswith(b"250")
        assert cmd(b"DATA")[0].startswith(b"354")
        f.write(mail().replace(b"\n", b"\r\n") + b".\r\n")
        f.flush()
        replies = [f.readline(), f.readline()]
    assert [r[:24] for r in replies] == [b"250 2.0.0 queued as 1\r\n"[:24]] * 2
    assert (intake.rows()[0].envelope or {})["protocol"] == "lmtp"


def test_stop_waits_for_a_message_being_stored(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while a message is in DATA: it is stored and answered 250, idle
    sessions get 421, and no new connection is taken."""
    entered, release = threading.Event(), threading.Event()
    record = intake.app.inbox.record

    def slow_accept(*args: Any, **kwargs: Any) -> list[Accepted]:
        entered.set()
        assert release.wait(10)
        return record(*args, **kwargs)

    monkeypatch.setattr(intake.app.inbox, "record", slow_accept)
    idle = intake.client()
    idle.ehlo("idle")
    result: dict[str, Any] = {}

    def sender_body() -> None:
        client = intake.client()
        try:
            client.ehlo("busy")
            client.mail("kunde@example.org")
            client.rcpt(SUPPORT)
            result["reply"] = client.data(mail())
            result["after"] = client.docmd("NOOP")  # we are stopping: 421, then closed
        finally:
            client.close()

    sender = threading.Thread(target=sender_body)
    sender.start()
    assert entered.wait(10)
    stopper = threading.Thread(target=lambda: result.update(clean=intake.listener.stop(10)))
    stopper.start()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        wait_for(lambda: idle.noop() and False, what="the idle session to be closed")
    with pytest.raises(OSError):
        socket.create_connection((intake.host, intake.port), timeout=2)
    release.set()
    sender.join(10)
    stopper.join(15)
    assert result["reply"][0] == 250 and result["clean"] is True
    assert result["after"][0] == 421
    assert len(intake.rows()) == 1


def test_stop_gives_up_after_the_grace_period(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    record = intake.app.inbox.record

    def stuck_accept(*args: Any, **kwargs: Any) -> list[Accepted]:
        entered.set()
        release.wait(10)
        return record(*args, **kwargs)

    monkeypatch.setattr(intake.app.inbox, "record", stuck_accept)
    result: dict[str, Any] = {}

    def sender() -> None:
        try:
            result["reply"] = send(intake, mail())
        except smtplib.SMTPException as exc:
            result["error"] = exc

    thread = threading.Thread(target=sender)
    thread.start()
    assert entered.wait(10)
    started = time.monotonic()
    assert intake.listener.stop(0.5) is False
    assert time.monotonic() - started < 3
    thread.join(10)
    assert "reply" not in result  # no 250: the sending server keeps it and retries
    release.set()


# -- swaks ----------------------------------------------------------------------------


def test_swaks_plain_pipelined_and_refused(intake: Intake) -> None:
    done = swaks(
        intake.port,
        "--from",
        "kunde@example.org",
        "--to",
        SUPPORT,
        "--header",
        "Subject: Drucker druckt nicht",
        "--body",
        "Hallo, der Drucker im 2. OG druckt nicht.",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "<-  250 2.0.0 queued as 1" in done.stdout

    done = swaks(
        intake.port,
        "--pipeline",
        "--from",
        "kunde@example.org",
        "--to",
        SUPPORT,
        "--header",
        "Subject: pipelined",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 queued as 2" in done.stdout and "PIPELINING" in done.stdout

    done = swaks(intake.port, "--from", "kunde@example.org", "--to", "info@elsewhere.example")
    assert done.returncode == 24  # every recipient refused
    assert "550 5.1.1" in done.stdout
    assert len(intake.rows()) == 2


def test_swaks_postmaster_is_accepted_and_becomes_a_ticket(intake: Intake) -> None:
    """RFC 5321 4.5.1: postmaster@ our domain (and <Postmaster>) must be accepted. The
    mail is stored like any other and processed: a person's mail is a ticket."""
    for rcpt in ("postmaster@dataandmore.com", "Postmaster"):
        done = swaks(
            intake.port,
            "--from",
            "admin@example.org",
            "--to",
            rcpt,
            "--header",
            f"Subject: Your server rejects our mail ({rcpt})",
            "--body",
            "Hello, mail from our domain to you is refused since Monday.",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "250 2.0.0 queued as" in done.stdout
    done = swaks(intake.port, "--from", "a@example.org", "--to", "postmaster@elsewhere.example")
    assert done.returncode == 24 and "550 5.1.1" in done.stdout  # not an open relay
    rows = intake.rows()
    assert [r.envelope["rcpt_tos"] for r in rows if r.envelope] == [
        ["postmaster@dataandmore.com"],
        ["Postmaster"],
    ]
    intake.app.worker().drain()
    with intake.app.factory() as session:
        subjects = sorted(session.scalars(select(Ticket.subject)))
    assert subjects == [
        "Your server rejects our mail (Postmaster)",
        "Your server rejects our mail (postmaster@dataandmore.com)",
    ]


def test_swaks_oversized_and_8bit(intake: Intake, tmp_path: Path) -> None:
    big = tmp_path / "big.eml"
    big.write_bytes(mail(subject="groß", body="Zeile mit Text\n" * 20_000))
    done = swaks(intake.port, "--from", "kunde@example.org", "--to", SUPPORT, "--data", f"@{big}")
    assert done.returncode != 0
    assert "552 5.3.4" in done.stdout
    eight = tmp_path / "8bit.eml"
    eight.write_bytes(
        "From: kunde@example.org\r\nTo: support@dataandmore.com\r\n"
        "Subject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nÜbermorgen geht's.\r\n".encode()
    )
    done = swaks(intake.port, "--from", "kunde@example.org", "--to", SUPPORT, "--data", f"@{eight}")
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = intake.rows()
    stored = stored_raw(intake.app, row.id)
    assert stored.startswith(eight.read_bytes())  # swaks may add a final CRLF


# -- end to end: listener + worker in one service ---------------------------------------


def test_swaks_to_ticket_through_the_service(database_url: str, tmp_path: Path) -> None:
    """swaks -> listener -> worker process -> ticket. The worker's poll interval is
    longer than the test waits: only the wake-up that each accept sends brings it."""
    settings = make_settings(
        tmp_path,
        database_url,
        smtp={"port": 0},
        worker={"poll_interval_seconds": 60},
        service={"shutdown_grace_seconds": 5},
    )
    ready: dict[str, Service] = {}
    got_ready = threading.Event()
    stop = threading.Event()

    def on_ready(service: Service) -> None:
        ready["service"] = service
        got_ready.set()

    result: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: result.update(code=run_service(settings, stop, on_ready=on_ready))
    )
    thread.start()
    try:
        assert got_ready.wait(30)
        smtp = ready["service"].smtp
        assert smtp is not None
        port = smtp.address[1]
        app = ready["service"].app

        def tickets() -> list[str]:
            with app.factory() as session:
                return sorted(session.scalars(select(Ticket.subject)))

        def swaks_send(subject: str) -> None:
            done = swaks(port, "--from", "erika@kunde.example", "--to", SUPPORT,
                         "--header", f"Subject: {subject}",
                         "--body", "Hallo, seit heute verbindet das VPN nicht mehr.")  # fmt: skip
            assert done.returncode == 0, done.stdout

        swaks_send("VPN verbindet nicht")
        assert wait_for(tickets, timeout=30, what="the first ticket") == ["VPN verbindet nicht"]
        # The worker now sleeps for its poll interval (60 s): only a wake-up can bring
        # the next message in within the 20 s we wait.
        swaks_send("Drucker druckt nicht")
        wait_for(lambda: len(tickets()) == 2, timeout=20, what="the second ticket")
        with app.factory() as session:
            assert (
                session.scalar(
                    select(func.count()).select_from(Inbound).where(Inbound.status == "done")
                )
                == 2
            )
    finally:
        stop.set()
        thread.join(15)
    assert result == {"code": 0}


ADDRESSES = [
    "<a@b.c>",
    "a@b.c",
    "<>",
    '<"a> b"@c.d>',
    "<a\\> b@c>",
    "<bad",
    "<@x,@y:a@b.c>",
    "<" + "x" * 70 + "@b.c>",
    "<a b@c>",
    " <a@b.c>",
    "<a@b.c>>",
    "<<a@b.c>",
    "<a@[1.2.3.4]>",
    "<ü@ö.de>",
    "<a@b.c >",
    "< a@b.c>",
]
PARAMETERS = ["", " SIZE=1", "  SIZE=1 BODY=8BITMIME", " x", " ", "\tSIZE=3"]


@pytest.mark.parametrize("limit", [0, 64])
def test_the_remembered_address_parse_answers_as_aiosmtpd_does(limit: int) -> None:
    """MAIL FROM / RCPT TO arguments: our cached parse gives aiosmtpd's own answer,
    malformed and quoted addresses included, on the first and on a repeated call."""
    from aiosmtpd.smtp import SMTP

    from mailtriage.intake.smtp import IntakeSMTP

    loop = asyncio.new_event_loop()
    try:
        ours, theirs = IntakeSMTP(object(), loop=loop), SMTP(object(), loop=loop)
        ours.local_part_limit = theirs.local_part_limit = limit
        for address in ADDRESSES:
            for params in PARAMETERS:
                arg = address + params
                expected = theirs._getaddr(arg)
                assert ours._getaddr(arg) == expected, arg
                assert ours._getaddr(arg) == expected, arg
    finally:
        loop.close()
