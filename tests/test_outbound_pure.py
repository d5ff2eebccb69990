"""The pure parts of outbound mail: headers (and injection attempts), Message-IDs, the
acknowledgement plan, knowledge-base matching, the send guard, backoff, SMTP errors."""

from __future__ import annotations

import email
import smtplib
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailtriage.outbound.ack import Customer, OutboundPolicy, choose_language, plan_ack
from mailtriage.outbound.headers import (
    AUTO_GENERATED,
    OutgoingMail,
    UnsendableAddress,
    clean_header_value,
    make_message_id,
    message_bytes,
    plus_address,
    safe_address,
    safe_message_id,
)
from mailtriage.outbound.kb import KbArticle, KbError, KbIndex, load_index, match_articles
from mailtriage.outbound.mailer import MaildirMailer, classify_smtp_error
from mailtriage.outbound.outbox import GuardFacts
from mailtriage.outbound.sender import RateLimits, guard, next_attempt

from mails import OUTGOING_DATE, outgoing, read_mail

ROOT = Path(__file__).parent.parent
NOW = OUTGOING_DATE


def mail(**changes: object) -> OutgoingMail:
    defaults: dict[str, object] = {
        "reply_to": "support+dm-000042@dataandmore.com",
        "subject": "Re: [DM-000042] Drucker druckt nicht – dringend",
        "message_id": "dm-000042.ack.0.abc@mailtriage.dataandmore.com",
        "html": "<p>Guten Tag</p>",
    }
    return outgoing(**(defaults | changes))


def reparse(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


EXPECTED_HEADERS = {
    "from",
    "to",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    "x-auto-response-suppress",
    "content-language",
    "x-mailtriage-ticket",
    "x-mailtriage-kind",
    "mime-version",
    "content-type",
}


def test_headers_of_an_acknowledgement() -> None:
    raw = message_bytes(mail())
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.isascii()  # non-ASCII only as encoded words and transfer encodings
    msg = reparse(read_mail(mail()))
    assert {k.lower() for k in msg} == EXPECTED_HEADERS
    assert msg["From"] == "Data & More Support <support@dataandmore.com>"
    assert msg["To"] == "Erika Müller <erika@kunde.example>"
    assert msg["Reply-To"] == "Data & More Support <support+dm-000042@dataandmore.com>"
    assert msg["Subject"] == "Re: [DM-000042] Drucker druckt nicht – dringend"
    assert msg["Message-ID"] == "<dm-000042.ack.0.abc@mailtriage.dataandmore.com>"
    assert msg["In-Reply-To"] == "<cust-1@kunde.example>"
    assert msg["References"] == "<older@kunde.example> <cust-1@kunde.example>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all("MIME-Version" not in p for p in msg.iter_parts())
    plain = msg.get_body(("plain",))
    assert plain is not None and "Anfrage erhalten" in plain.get_content()  # type: ignore[attr-defined]


def test_notices_are_auto_generated_and_threading_is_optional() -> None:
    msg = reparse(read_mail(mail(auto_submitted=AUTO_GENERATED, in_reply_to=None, references=())))
    assert msg["Auto-Submitted"] == "auto-generated"
    assert "In-Reply-To" not in msg and "References" not in msg


INJECTIONS = [
    "x\r\nBcc: evil@attacker.example",
    "x\nBcc: evil@attacker.example",
    "x\rBcc: evil@attacker.example",
    "x\r\n\r\n<html>body</html>",
    "x\x00Bcc: evil@attacker.example",
    "x\x85Bcc: evil@attacker.example",  # NEL
    "x\u2028Bcc: evil@attacker.example",  # LINE SEPARATOR
    "x\u2029Bcc: evil@attacker.example",
    "x\x0bBcc: evil@attacker.example\x0c",
    "=?utf-8?q?x=0D=0ABcc:_evil@attacker.example?=",  # stays literal text
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_customer_values_cannot_inject_headers(value: str) -> None:
    msg = read_mail(
        mail(
            subject=f"Re: [DM-000042] {value}",
            to_name=value,
            from_name=value,
            in_reply_to=value,
            references=(value, "ok@kunde.example"),
            language=value,
        )
    )
    raw = bytes(msg)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\rBcc:" not in head
    parsed = reparse(msg)
    assert "Bcc" not in parsed
    assert {k.lower() for k in parsed} <= EXPECTED_HEADERS
    assert parsed["To"].addresses[0].addr_spec == "erika@kunde.example"  # type: ignore[attr-defined]
    assert len(parsed["To"].addresses) == 1  # type: ignore[attr-defined]
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])
    assert parsed["References"] == "<ok@kunde.example>"
    assert "In-Reply-To" not in parsed


@pytest.mark.parametrize(
    "address",
    [
        "erika@kunde.example\r\nBcc: evil@attacker.example",
        "erika@kunde.example, evil@attacker.example",
        "Erika <erika@kunde.example>",
        "erika@kunde.example>\r\nX: y",
        "erika",
        "@kunde.example",
        "erika@",
        '"erika muster"@kunde.example',
        "erika@kunde..example",
        "erika@-kunde.example",
        "=?utf-8?q?x=0D=0ABcc:_evil?=@attacker.example",
    ],
)
def test_a_recipient_address_must_be_plain(address: str) -> None:
    assert safe_address(address) is None
    with pytest.raises(UnsendableAddress):
        read_mail(mail(to_address=address))


def test_safe_address_and_message_id() -> None:
    assert safe_address("Erika.Muster+x@Kunde.Example") == "Erika.Muster+x@kunde.example"
    assert safe_address("max@müller.example") == "max@xn--mller-kva.example"
    assert safe_message_id("<abc.def@host.example>") == "abc.def@host.example"
    assert safe_message_id("abc@host\r\nBcc: x") is None
    assert safe_message_id("no-at-sign") is None
    assert safe_message_id("a<b@c") is None
    assert safe_message_id("=?utf-8?q?x=0D=0ABcc:_e?=@attacker.example") is None


def test_clean_header_value() -> None:
    assert clean_header_value("  a\r\n\tb  c\x00d\u2028e ") == "a b c d e"
    assert clean_header_value("x" * 600, 10) == "x" * 10


def test_message_id_derives_from_the_key() -> None:
    one = make_message_id("DM-000042", "ack", 0, "2026-11-02T08:30:00+00:00", "mt.example")
    assert one == make_message_id("DM-000042", "ack", 0, "2026-11-02T08:30:00+00:00", "mt.example")
    assert one.startswith("dm-000042.ack.0.") and one.endswith("@mt.example")
    others = {
        make_message_id("DM-000042", "ack", 1, "2026-11-02T08:30:00+00:00", "mt.example"),
        make_message_id("DM-000043", "ack", 0, "2026-11-02T08:30:00+00:00", "mt.example"),
        make_message_id("DM-000042", "ack", 0, "2026-11-02T08:31:00+00:00", "mt.example"),
    }
    assert one not in others and len(others) == 3
    assert safe_message_id(one) == one


def test_plus_address() -> None:
    assert plus_address("support@dataandmore.com", "DM-000042") == (
        "support+dm-000042@dataandmore.com"
    )


# -- the acknowledgement plan ---------------------------------------------------------

POLICY = OutboundPolicy(message_domain="mailtriage.dataandmore.com")
CUSTOMER = Customer(
    address="erika@kunde.example",
    name="Erika Muster",
    subject="AW: [DM-000007] Re: Passwort vergessen",
    text="Ich habe mein Passwort vergessen.",
    message_id="m2@kunde.example",
    references=("m1@kunde.example",),
    date_header="Mon, 02 Nov 2026 09:30:00 +0100",
)


def test_plan_ack() -> None:
    plan, why = plan_ack(
        POLICY,
        ticket_id=42,
        created_at=NOW,
        customer=CUSTOMER,
        category="account_access",
        language="en",
    )
    assert plan is not None and why == ""
    ctx = plan.context
    assert (plan.kind, plan.step, plan.recipient, plan.language) == (
        "ack",
        0,
        CUSTOMER.address,
        "en",
    )
    assert plan.message_id.endswith("@mailtriage.dataandmore.com")
    assert ctx.reference == "DM-000042"
    assert ctx.subject == "Passwort vergessen"  # prefixes and our old tag stripped
    assert ctx.in_reply_to == "m2@kunde.example"
    assert ctx.references == ("m1@kunde.example", "m2@kunde.example")
    assert ctx.timezone == "Europe/Berlin"  # +0100 in November is Berlin's offset
    assert ctx.due_at == "2026-11-03T08:30:00+00:00"
    assert plan.deadline == NOW + timedelta(hours=24)
    again, _ = plan_ack(
        POLICY, ticket_id=42, created_at=NOW, customer=CUSTOMER, category=None, language="en"
    )
    assert again is not None and again.message_id == plan.message_id


@pytest.mark.parametrize(
    ("ticket_language", "default", "expected"),
    [("de", "de", "de"), ("en", "de", "en"), ("other", "de", "de"), (None, "en", "en"),
     ("fr", "en", "en"), ("fr", "it", "de")],
)  # fmt: skip
def test_language_falls_back_to_the_configured_default(
    ticket_language: str | None, default: str, expected: str
) -> None:
    policy = OutboundPolicy(default_language=default, languages=("de", "en"))
    assert choose_language(ticket_language, policy) == expected


@pytest.mark.parametrize(
    ("address", "policy", "why"),
    [
        ("", POLICY, "no plain sender address"),
        ("erika@kunde.example\r\nBcc: x@y.example", POLICY, "no plain sender address"),
        ("support@dataandmore.com", POLICY, "our own support address"),
        ("erika@kunde.example", OutboundPolicy(acknowledge=False), "acknowledge = false"),
    ],
)
def test_no_ack_and_why(address: str, policy: OutboundPolicy, why: str) -> None:
    customer = Customer(address=address)
    plan, reason = plan_ack(
        policy, ticket_id=1, created_at=NOW, customer=customer, category=None, language=None
    )
    assert plan is None and why in reason


# -- knowledge base -------------------------------------------------------------------

EXAMPLE = load_index(ROOT / "kb" / "index.example.toml")


def test_the_example_index_loads() -> None:
    assert len(EXAMPLE.articles) >= 10
    assert {a.language for a in EXAMPLE.articles} == {"de", "en"}


def test_kb_picks_matching_articles_in_the_ticket_language_with_reasons() -> None:
    found = match_articles(
        EXAMPLE,
        subject="Passwort vergessen",
        text="Seit heute bin ich gesperrt und kann mich nicht anmelden.",
        category="account_access",
        language="de",
    )
    assert found[0].article.id == "passwort-zuruecksetzen"
    assert all(m.article.language == "de" for m in found)
    best = found[0]
    assert best.score >= 3
    assert "keyword 'passwort' in subject (+3)" in best.reasons
    assert "category account_access (+2)" in best.reasons
    assert len(found) <= 3
    english = match_articles(
        EXAMPLE,
        subject="SSO broken for all users - SAML signature invalid",
        text="Since this morning nobody can sign in through Azure AD.",
        category="integration",
        language="en",
    )
    assert english[0].article.id == "sso-saml-certificate"


def test_kb_suggests_nothing_when_nothing_matches_well() -> None:
    assert (
        match_articles(
            EXAMPLE,
            subject="Rechnung für Oktober",
            text="Können Sie uns die Rechnung noch einmal schicken? Danke!",
            category="other",
            language="de",
        )
        == ()
    )
    # one keyword in the body alone is below the threshold
    assert (
        match_articles(
            EXAMPLE, subject="Frage", text="Wo finde ich den Export?", category=None, language="de"
        )
        == ()
    )
    # the right words in the wrong language
    assert (
        match_articles(EXAMPLE, subject="Passwort vergessen", text="", category=None, language="en")
        == ()
    )


def test_kb_limit_and_order() -> None:
    index = KbIndex(
        tuple(
            KbArticle(f"a{i}", "en", f"Article {i}", f"https://kb.example/{i}", ("vpn",))
            for i in range(5)
        )
    )
    found = match_articles(index, subject="VPN down", text="", category=None, language="en")
    assert [m.article.id for m in found] == ["a0", "a1", "a2"]
    assert (
        match_articles(index, subject="VPN down", text="", category=None, language="en", limit=0)
        == ()
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[articles]]\nid = 'a'\nlanguage = 'de'\ntitle = 't'\n", "articles\\[0\\].url"),
        (
            "[[articles]]\nid='a'\nlanguage='de'\ntitle='t'\nurl='javascript:alert(1)'\n",
            r"expected an http\(s\) URL",
        ),
        (
            "[[articles]]\nid='a'\nlanguage='de'\ntitle='t'\nurl='https://x'\nkeywords='x'\n",
            "keywords: expected a list",
        ),
        ("[[articles]]\nid='a'\nlanguage='de'\ntitle='t'\nurl='https://x'\nfoo=1\n", "foo"),
        ("articles = 3\n", "array of tables"),
        ("[[articles]\n", "invalid TOML"),
    ],
)
def test_kb_index_errors_name_the_field(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "kb.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(KbError, match=message):
        load_index(path)
    with pytest.raises(KbError, match="not found"):
        load_index(tmp_path / "missing.toml")


# -- sending --------------------------------------------------------------------------

LIMITS = RateLimits(ticket_limit=2, address_limit=3)


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        (GuardFacts(None, "", 0, 0), None),
        (GuardFacts(None, "", 1, 2), None),
        (GuardFacts(None, "", 2, 0), "mails to this ticket"),
        (GuardFacts(None, "", 0, 3), "mails to this address"),
        (GuardFacts(NOW + timedelta(days=1), "bounce 5.1.1", 0, 0), "suppressed until"),
        (GuardFacts(NOW - timedelta(seconds=1), "bounce 5.1.1", 0, 0), None),
    ],
)
def test_guard(facts: GuardFacts, why: str | None) -> None:
    result = guard(facts, LIMITS, NOW)
    assert (result is None) if why is None else (result is not None and why in result)


def test_backoff_doubles_caps_and_stops_at_the_deadline() -> None:
    deadline = NOW + timedelta(hours=1)
    delays = [(next_attempt(n, NOW, deadline, 30, 600) or NOW) - NOW for n in range(1, 7)]
    assert [d.total_seconds() for d in delays] == [30, 60, 120, 240, 480, 600]
    assert next_attempt(1, NOW, NOW + timedelta(seconds=10), 30, 600) == NOW + timedelta(seconds=10)
    assert next_attempt(1, deadline, deadline, 30, 600) is None
    assert next_attempt(2, NOW, deadline, 30, 600, jitter=1.2) == NOW + timedelta(seconds=72)


@pytest.mark.parametrize(
    ("exc", "permanent", "code"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 try again later"), False, 451),
        (smtplib.SMTPDataError(554, b"5.7.1 rejected as spam"), True, 554),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"5.1.1 user unknown")}), True, 550),
        (smtplib.SMTPRecipientsRefused({"a@b.c": (452, b"4.2.2 mailbox full")}), False, 452),
        (smtplib.SMTPSenderRefused(553, b"5.7.1 not allowed", "s@x"), True, 553),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), False, 535),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), False, None),
        (ConnectionRefusedError(111, "Connection refused"), False, None),
        (TimeoutError("timed out"), False, None),
    ],
)
def test_smtp_errors_temporary_or_permanent(
    exc: Exception, permanent: bool, code: int | None
) -> None:
    err = classify_smtp_error(exc)
    assert (err.permanent, err.code) == (permanent, code)


def test_maildir_delivery_is_exactly_once_per_message_id(tmp_path: Path) -> None:
    box = MaildirMailer(tmp_path / "md")
    raw = message_bytes(mail())
    box.deliver("support@dataandmore.com", "erika@kunde.example", raw, "id-1@x")
    box.deliver("support@dataandmore.com", "erika@kunde.example", raw, "id-1@x")
    files = list((tmp_path / "md" / "new").iterdir())
    assert len(files) == 1 and not list((tmp_path / "md" / "tmp").iterdir())
    data = files[0].read_bytes()
    assert data.startswith(b"Return-Path: <support@dataandmore.com>\n") and b"\r\n" not in data
    # a mail client read it (moved to cur/ with flags): still not written again
    files[0].rename(tmp_path / "md" / "cur" / f"{files[0].name}:2,S")
    box.deliver("support@dataandmore.com", "erika@kunde.example", raw, "id-1@x")
    assert not list((tmp_path / "md" / "new").iterdir())
    box.deliver("support@dataandmore.com", "erika@kunde.example", raw, "id-2@x")
    assert len(list((tmp_path / "md" / "new").iterdir())) == 1


@pytest.mark.parametrize(
    ("requester", "expected"),
    [
        ("erika@kunde.example", "erika@kunde.example"),
        ("support@dataandmore.com", None),
        ("Support+DM-000001@DataAndMore.com", None),  # our plus address
        ("kollege@dataandmore.de", None),  # a domain of mail.own_domains
        ("not an address", None),
    ],
)
def test_mail_for_the_requester_alone_never_goes_to_one_of_our_addresses(
    requester: str, expected: str | None, tmp_path: Path
) -> None:
    """The feedback request and the SLA mails to the customer (escalation note,
    reminder, auto-close) go to the requester only: never to our own addresses, which
    would make us write to ourselves."""
    from mailtriage.config import load_settings
    from mailtriage.outbound.ack import outbound_policy
    from mailtriage.outbound.conversation_mail import requester_address
    from mailtriage.store.models import Contact, Ticket

    config = tmp_path / "c.toml"
    config.write_text('[mail]\nown_domains = ["dataandmore.de"]\n', encoding="utf-8")
    policy = outbound_policy(load_settings(config))
    ticket = Ticket(requester=Contact(email=requester, name="Erika"))
    assert requester_address(ticket, policy) == expected
