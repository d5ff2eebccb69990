"""The mail-loop guard: which inbound mail is automated, and what it tells us."""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from mailtriage.pipeline.loops import LoopVerdict, detect_loop
from mailtriage.pipeline.parse import ParsedMessage, ParseError, parse_message

CORPUS = Path(__file__).parent / "corpus"
KINDS = {"human", "auto_reply", "out_of_office", "bounce", "list", "own"}


def parse(text: str) -> ParsedMessage:
    """A message as the pipeline sees it: CRLF bytes through the parser."""
    return parse_message(text.replace("\n", "\r\n").encode("utf-8"))


def verdict(
    text: str, *, own_domains: tuple[str, ...] = (), envelope_sender: str | None = None
) -> LoopVerdict:
    return detect_loop(parse(text), own_domains=own_domains, envelope_sender=envelope_sender)


PERSON = (
    "From: Anna Berger <anna.berger@kunde.example>\n"
    "To: Support <support@dataandmore.com>\n"
    "Date: Mon, 06 Jul 2026 09:12:00 +0200\n"
    "Message-ID: <20260706091200.4711@kunde.example>\n"
)
DAEMON = (
    "Return-Path: <>\n"
    "From: Mail Delivery System <MAILER-DAEMON@mx.kunde.example>\n"
    "To: support@dataandmore.com\n"
    "Message-ID: <bounce-1@mx.kunde.example>\n"
)
OUR_MAIL = (
    "From: Support <support@dataandmore.com>\n"
    "To: anna.berger@kunde.example\n"
    "Subject: [DM-1042] Your request has been received\n"
    "Message-ID: <ticket-1042.1@dataandmore.com>\n"
    "X-Mailtriage-Ticket: DM-1042\n"
    "\n"
    "We have received your request.\n"
)


def dsn(*recipients: tuple[str, str, str], returned: str = "message/rfc822") -> str:
    """A multipart/report delivery-status bounce of OUR_MAIL."""
    blocks = "\n".join(
        f"Final-Recipient: rfc822; {addr}\nAction: {action}\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; 550 {status} rejected\n"
        for addr, action, status in recipients
    )
    original = OUR_MAIL if returned == "message/rfc822" else OUR_MAIL.split("\n\n")[0] + "\n"
    return (
        DAEMON + "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\n'
        "\n--b1\nContent-Type: text/plain\n\nThis is the mail system at host mx.\n"
        "\n--b1\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.kunde.example\n\n" + blocks + "\n--b1\n"
        f"Content-Type: {returned}\n\n{original}\n--b1--\n"
    )


def forwarded(subject: str, inner: str, note: str = "Can you look at this?") -> str:
    """A person forwarding ``inner`` as an attachment (multipart/mixed)."""
    return (
        PERSON + f"Subject: {subject}\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="fw"\n'
        f"\n--fw\nContent-Type: text/plain; charset=utf-8\n\n{note}\n"
        f"\n--fw\nContent-Type: message/rfc822\n\n{inner}\n--fw--\n"
    )


# --------------------------------------------------------------------------- signals

SIGNAL_CASES: list[tuple[str, str, str, str | None]] = [
    # (id, message, expected kind, a reason that must be among the reasons)
    ("plain human", PERSON + "Subject: Login geht nicht\n\nHallo, seit heute...\n", "human", None),
    (
        "auto-submitted auto-replied",
        PERSON + "Subject: Re: Ihre Anfrage\nAuto-Submitted: auto-replied\n\nDanke.\n",
        "auto_reply",
        "header:Auto-Submitted=auto-replied",
    ),
    (
        "auto-submitted auto-generated",
        PERSON + "Subject: Incident INC1 assigned\nAuto-Submitted: auto-generated\n\nx\n",
        "auto_reply",
        "header:Auto-Submitted=auto-generated",
    ),
    (
        "gmail vacation",
        PERSON + "Subject: Im Urlaub\nAuto-Submitted: auto-replied\nX-Autoreply: yes\n\n"
        "Ich bin bis 20.7. im Urlaub.\n",
        "out_of_office",
        "header:X-Autoreply",
    ),
    (
        "zimbra vacation",
        PERSON + "Subject: Re: Angebot\nAuto-Submitted: auto-replied (zimbra; vacation)\n\nx\n",
        "out_of_office",
        "header:vacation",
    ),
    (
        "x-autorespond",
        PERSON + "Subject: Thanks\nX-Autorespond: true\n\nWe got it.\n",
        "auto_reply",
        "header:X-Autorespond",
    ),
    (
        "x-autoresponder",
        PERSON + "Subject: Thanks\nX-Autoresponder: yes\n\nWe got it.\n",
        "auto_reply",
        "header:X-Autoresponder",
    ),
    ("x-autoreply no", PERSON + "Subject: Hallo\nX-Autoreply: no\n\nFrage\n", "human", None),
    (
        "precedence auto_reply",
        PERSON + "Subject: Auto reply\nPrecedence: auto_reply\n\nx\n",
        "auto_reply",
        "header:Precedence=auto_reply",
    ),
    (
        "precedence junk",
        PERSON + "Subject: Hinweis\nPrecedence: junk\n\nx\n",
        "auto_reply",
        "header:Precedence=junk",
    ),
    ("precedence bulk", PERSON + "Subject: News\nPrecedence: bulk\n\nx\n", "list", None),
    ("precedence list", PERSON + "Subject: News\nPrecedence: list\n\nx\n", "list", None),
    (
        "list-id",
        PERSON + "Subject: [users] release\nList-Id: Users <users.lists.example.org>\n\nx\n",
        "list",
        "header:List-Id",
    ),
    (
        "list-unsubscribe",
        PERSON + "Subject: Newsletter\nList-Unsubscribe: <mailto:u@news.example>\n\nx\n",
        "list",
        "header:List-Unsubscribe",
    ),
    (
        "list-post",
        PERSON + "Subject: hi\nList-Post: <mailto:users@lists.example.org>\n\nx\n",
        "list",
        "header:List-Post",
    ),
    (
        "auto-generated list mail is list",
        PERSON + "Subject: Digest\nAuto-Submitted: auto-generated\nList-Id: <d.example.org>\n\nx\n",
        "list",
        "header:List-Id",
    ),
    (
        "vacation reply to a list is an auto-reply",
        PERSON + "Subject: Abwesenheitsnotiz: [users] x\nAuto-Submitted: auto-replied\n"
        "List-Id: <users.example.org>\n\nx\n",
        "out_of_office",
        None,
    ),
    (
        "null return path",
        "Return-Path: <>\n" + PERSON + "Subject: Thank you for your e-mail\n\nThanks!\n",
        "auto_reply",
        "header:Return-Path=<>",
    ),
    (
        "return path MAILER-DAEMON",
        "Return-Path: <MAILER-DAEMON>\n" + PERSON + "Subject: Notice\n\nx\n",
        "auto_reply",
        "header:Return-Path=MAILER-DAEMON",
    ),
    (
        "mailer-daemon sender",
        DAEMON + "Subject: failure notice\n\nHi. This is the qmail-send program at mx.\n"
        "<gone@kunde.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
        "bounce",
        "sender:mailer-daemon",
    ),
    (
        "postmaster with bounce subject",
        PERSON.replace("Anna Berger <anna.berger", "Postmaster <postmaster")
        + "Subject: Undeliverable Mail\n\nUser mailbox exceeds allowed size: x@kunde.example\n",
        "bounce",
        "sender:postmaster",
    ),
    (
        "exim x-failed-recipients",
        PERSON + "Subject: Mail delivery failed: returning message to sender\n"
        "X-Failed-Recipients: gone@kunde.example\n\nx\n",
        "bounce",
        "header:X-Failed-Recipients",
    ),
    (
        "bounce subject confirmed by an MTA template",
        PERSON.replace("Anna Berger <anna.berger", "Gateway <gw")
        + "Subject: Delivery has failed\n\nYour message did not reach some or all of the "
        "intended recipients.\n",
        "bounce",
        "subject:bounce",
    ),
    (
        "body opens with a bounce template under a Re: subject",
        PERSON + "Subject: RE: Your message : non remis\n\n"
        "Your message could not be delivered to\nuserx@example.com\n",
        "bounce",
        "body:bounce-opening",
    ),
    (
        "german exchange ndr without report part",
        "Return-Path: <>\nFrom: Microsoft Outlook <postmaster@kunde.example>\n"
        "Subject: Unzustellbar: Rechnung 4711\n\n"
        "Ihre Nachricht konnte nicht an rechnung@kunde.example zugestellt werden.\n",
        "bounce",
        None,
    ),
    (
        "read receipt",
        PERSON + "Subject: Gelesen: Angebot\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="r"\n'
        "\n--r\nContent-Type: text/plain\n\nIhre Nachricht wurde gelesen.\n"
        "\n--r\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; anna.berger@kunde.example\n"
        "Original-Message-ID: <ticket-1042.1@dataandmore.com>\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\n\n--r--\n",
        "auto_reply",
        "report:disposition-notification",
    ),
    (
        "sieve reject is a bounce",
        "Return-Path: <>\nFrom: Mail Delivery Subsystem <admin@kunde.example>\n"
        "Subject: Automatically rejected mail\nAuto-Submitted: auto-replied (rejected)\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=disposition-notification;"
        ' boundary="r"\n'
        "\n--r\nContent-Type: text/plain\n\nYour message was automatically rejected: quota\n"
        "\n--r\nContent-Type: message/disposition-notification\n\n"
        "Final-Recipient: rfc822; full@kunde.example\n"
        "Original-Message-ID: <ticket-1042.1@dataandmore.com>\n"
        "Disposition: automatic-action/MDN-sent-automatically; deleted\n\n--r--\n",
        "bounce",
        "mdn:automatic-rejection",
    ),
    (
        "arf feedback report",
        "From: abuse@isp.example\nSubject: Abuse report\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="f"\n'
        "\n--f\nContent-Type: text/plain\n\nA complaint.\n"
        "\n--f\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
        "Original-Rcpt-To: <anna.berger@kunde.example>\n\n"
        "\n--f\nContent-Type: message/rfc822\n\n" + OUR_MAIL + "\n--f--\n",
        "bounce",
        "report:feedback-report",
    ),
    (
        "exchange out-of-office",
        PERSON + "Subject: Automatic reply: [DM-1042] Your request has been received\n"
        "Thread-Topic: [DM-1042] Your request has been received\n"
        "X-Auto-Response-Suppress: All\n\nI am out of the office until Monday.\n",
        "out_of_office",
        "subject:auto-reply",
    ),
    (
        "old exchange out-of-office (subject and Thread-Topic only)",
        PERSON + "Subject: Abwesenheitsnotiz: Ihre Anfrage\nThread-Topic: Ihre Anfrage\n\n"
        "Vielen Dank für Ihre Nachricht.\n",
        "out_of_office",
        "header:Thread-Topic",
    ),
    (
        "lotus notes out-of-office",
        PERSON + "Subject: AUTO: Anna Berger is out of the office (returning 20.07.2026)\n\n"
        "I am out of the office until 20.07.2026.\n\n"
        "Note: This is an automated response to your message sent on 06.07.2026.\n",
        "out_of_office",
        "subject:auto-reply",
    ),
    (
        "lotus notes $AutoReply item",
        PERSON + "Subject: Abwesend\nX-Notes-Item: 1; name=$AutoReply\n\nx\n",
        "out_of_office",
        "header:$AutoReply",
    ),
    (
        "apple icloud vacation",
        PERSON + "Subject: Auto reply: Nyaan\nX-Apple-Action: VACATION\n\nI'm only sleeping.\n",
        "out_of_office",
        "header:X-Apple-Action=vacation",
    ),
    (
        "polish auto-reply with Precedence: junk",
        PERSON + "Subject: [Automatyczna odpowiedź] test\nPrecedence: junk\n\nNie ma mnie.\n",
        "out_of_office",
        None,
    ),
    (
        "otrs acknowledgement",
        PERSON + "Subject: [Ticket#2026070610000011] Ihre Anfrage ist eingegangen\n"
        "X-OTRS-Loop: yes\nPrecedence: bulk\n\nVielen Dank, wir haben Ihre Anfrage erhalten.\n",
        "auto_reply",
        "subject:acknowledgement",
    ),
    (
        "zammad acknowledgement",
        PERSON + "Subject: Your request has been received [Ticket#88]\nX-Zammad-Loop: yes\n\nx\n",
        "auto_reply",
        "header:X-Zammad-Loop",
    ),
    (
        "rt autoreply",
        PERSON + "Subject: [rt.example #123] AutoReply: Printer\nRT-Ticket: rt.example #123\n"
        "X-RT-Loop-Prevention: rt.example\nPrecedence: bulk\n\n"
        "This message has been automatically generated in response to the creation of a "
        "trouble ticket regarding Printer.\n",
        "auto_reply",
        None,
    ),
    (
        "rt agent reply is human (Precedence: bulk from a ticket system)",
        PERSON + "Subject: [rt.example #123] Re: Printer\nRT-Ticket: rt.example #123\n"
        "X-RT-Loop-Prevention: rt.example\nPrecedence: bulk\n\nPlease restart the spooler.\n",
        "human",
        None,
    ),
    (
        "challenge/response",
        PERSON + "Subject: RE: Angebot\n\nYour message was received at 12:15:\n\n"
        "This account is protected by Bluebottle. Please click on the following link to "
        "have your address added to the recipient's allowed list.\n",
        "auto_reply",
        "body:challenge-response",
    ),
    (
        "amazon ses notification",
        "From: SES <no-reply@sns.example>\nSubject: AWS Notification Message\n\n"
        '{"notificationType":"Bounce","mail":{"messageId":"x"}}\n',
        "bounce",
        "body:esp-notification",
    ),
    (
        "list manager rejection",
        "From: users-owner@lists.example.org\nSubject: You are not member (users ML)\n\n"
        "You are not a member of this mailing list.\n",
        "bounce",
        "sender:list-manager",
    ),
    (
        "mailman archive copy without list headers",
        PERSON.replace("support@dataandmore.com", "users@lists.example.org")
        + "Subject: [users] Release 1.2\n\nx\n",
        "list",
        "subject:list-tag",
    ),
]


@pytest.mark.parametrize(
    ("text", "kind", "reason"),
    [pytest.param(t, k, r, id=i) for i, t, k, r in SIGNAL_CASES],
)
def test_signals(text: str, kind: str, reason: str | None) -> None:
    result = verdict(text)
    assert result.kind == kind, result.reasons
    assert result.automated == (kind != "human")
    if reason is not None:
        assert reason in result.reasons
    if result.automated:
        assert result.reasons


# ------------------------------------------------------- a human is never ignored

BOUNCE_FOR_FORWARD = dsn(("gone@kunde.example", "failed", "5.1.1"))

HUMAN_CASES: list[tuple[str, str]] = [
    (
        "asks about out-of-office",
        PERSON + "Subject: How do I set up my out-of-office reply?\n\n"
        "Hi, how do I set up my out-of-office reply? I will be out of the office next week.\n",
    ),
    (
        "out-of-office prefix but a question",
        PERSON + "Subject: Out of Office: funktioniert nicht\n\n"
        "Hallo, meine Abwesenheitsnotiz wird nicht verschickt. Ich bin ab Montag im Urlaub.\n",
    ),
    (
        "abwesenheitsnotiz problem statement",
        PERSON + "Subject: Abwesenheitsnotiz: Einrichtung\n\n"
        "Ich bin ab Montag im Urlaub und die Abwesenheitsnotiz geht nicht.\n",
    ),
    (
        "HR software absence question",
        PERSON + "Subject: Abwesenheit: Fehler beim Speichern\n\n"
        "Beim Speichern einer Abwesenheit erscheint eine Fehlermeldung.\n",
    ),
    ("German 'Auto' means car", PERSON + "Subject: Auto: Kennzeichen ändern\n\nWie geht das?\n"),
    (
        "forwarded bounce as attachment",
        forwarded("Fwd: Undelivered Mail Returned to Sender", BOUNCE_FOR_FORWARD),
    ),
    (
        "WG: Unzustellbar forwarded as attachment",
        forwarded("WG: Unzustellbar: Rechnung 4711", BOUNCE_FOR_FORWARD, "Bitte prüfen."),
    ),
    (
        "bounce forwarded as attachment under an own subject",
        forwarded("Mails an Kunde X kommen zurück", BOUNCE_FOR_FORWARD, "Siehe Anhang."),
    ),
    (
        "inline-forwarded bounce",
        PERSON + "Subject: WG: Unzustellbar: Rechnung 4711\n\nBitte prüfen.\n\n"
        "-----Ursprüngliche Nachricht-----\nVon: Microsoft Outlook <postmaster@kunde.example>\n"
        "Gesendet: Montag, 6. Juli 2026 09:00\nAn: Anna Berger\nBetreff: Unzustellbar\n\n"
        "Ihre Nachricht konnte nicht an x@kunde.example zugestellt werden.\n"
        "Your message did not reach some or all of the intended recipients.\n",
    ),
    (
        "Fwd: of a Gmail bounce, inline",
        PERSON + "Subject: Fwd: Delivery Status Notification (Failure)\n\n"
        "---------- Forwarded message ---------\n"
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n\n"
        "Delivery to the following recipient failed permanently:\n\n  gone@kunde.example\n",
    ),
    (
        "asks about a bounce in a fresh mail",
        PERSON + "Subject: Mail delivery failed\n\nHi, since yesterday my mails to X bounce with "
        "'Mail delivery failed: returning message to sender'. Can you check?\n",
    ),
    (
        "pastes a bounce after own words",
        PERSON + "Subject: Undelivered Mail Returned to Sender\n\n"
        "Since yesterday all my mails come back: This is the mail system at host mx. "
        "I'm sorry to have to inform you that your message could not be delivered.\n",
    ),
    (
        "reply to a bounce",
        PERSON + "Subject: Re: Undelivered Mail Returned to Sender\n\n"
        "The address is correct, please check your server.\n",
    ),
    (
        "outlook sets X-Auto-Response-Suppress on a normal mail",
        PERSON + "Subject: Login geht nicht\nX-Auto-Response-Suppress: All\n\nHallo, ...\n",
    ),
    (
        "X-Auto-Response-Suppress with a thank-you subject",
        PERSON + "Subject: Thank you for your email\nX-Auto-Response-Suppress: All\n\n"
        "Thanks, that fixed it.\n",
    ),
    (
        "X-Auto-Response-Suppress with a weak away subject",
        PERSON + "Subject: Urlaub: Vertretung\nX-Auto-Response-Suppress: OOF, AutoReply\n\n"
        "Ich bin ab 1.8. im Urlaub, bitte wenden Sie sich an Frau X.\n",
    ),
    (
        "copies our acknowledgement subject into a new mail",
        PERSON + "Subject: [DM-1042] Your request has been received\n\n"
        "Hello, any news on this? Ticket number 1042\n",
    ),
    (
        "replies to our acknowledgement, quoting it",
        PERSON + "Subject: AW: [DM-1042] Your request has been received\n\n"
        "Danke, hier noch der Screenshot.\n\n> We have received your request.\n"
        "> This is an automated message.\n",
    ),
    (
        "contact form sent by a no-reply address",
        "From: Website <noreply@dataandmore.example>\nReply-To: anna.berger@kunde.example\n"
        "Subject: New contact form submission\n\nName: Anna\n"
        "Message: my mails are undeliverable since the update, please help\n",
    ),
    (
        "a postmaster who writes in person",
        "From: Postmaster <postmaster@kunde.example>\nTo: support@dataandmore.com\n"
        "Subject: Mail delivery failure from your server\n\nHallo, eure Mails an uns sind "
        "undeliverable, seit ihr das SPF geändert habt. Könnt ihr das prüfen?\n",
    ),
    (
        "an administrator with a bounce subject who asks",
        "From: Max (System Administrator) <max@kunde.example>\n"
        "Subject: Undeliverable mails\n\nHi, all mails to you are undeliverable "
        "(user unknown). Can you check?\n",
    ),
    (
        "agent of a ticket system answering",
        PERSON + "Subject: [Ticket#2026070610000011] Re: Drucker\nX-OTRS-Loop: no\n"
        "X-Mailer: OTRS Mail Service\n\nBitte starten Sie den Spooler neu.\n",
    ),
]


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t in HUMAN_CASES])
def test_a_human_is_never_ignored(text: str) -> None:
    result = verdict(text)
    assert result.kind == "human", result.reasons
    assert not result.automated


def test_the_forwarded_bounce_itself_is_a_bounce() -> None:
    # the message inside the forwards above is detected when it arrives on its own
    assert verdict(BOUNCE_FOR_FORWARD).kind == "bounce"


# ------------------------------------------------------- Auto-Submitted: no


@pytest.mark.parametrize(
    "extra",
    [
        "Precedence: bulk\n",
        "X-Auto-Response-Suppress: All\n",
        "X-Loop: helpdesk@kunde.example\nPrecedence: junk\n",
    ],
)
def test_auto_submitted_no_outweighs_weak_signals(extra: str) -> None:
    text = PERSON + "Subject: Automatic reply: not sent\nAuto-Submitted: no\n" + extra
    without = verdict(text.replace("Auto-Submitted: no\n", "") + "\nI am away.\n")
    assert without.automated  # the same signals without the header are automated
    result = verdict(text + "\nI am out of the office.\n")
    assert result.kind == "human"
    assert result.reasons == ("header:Auto-Submitted=no",)


def test_auto_submitted_no_does_not_hide_a_dsn() -> None:
    text = dsn(("gone@kunde.example", "failed", "5.1.1")).replace(
        "Subject:", "Auto-Submitted: no\nSubject:"
    )
    assert verdict(text).kind == "bounce"


# ------------------------------------------------------- DSN details


def test_dsn_permanent_failure() -> None:
    result = verdict(dsn(("gone@kunde.example", "failed", "5.1.1")))
    assert result.kind == "bounce"
    assert result.bounce_status == "5.1.1"
    assert result.permanent is True
    assert result.failed_recipients == ("gone@kunde.example",)
    assert result.original_message_id == "ticket-1042.1@dataandmore.com"
    assert "dsn:status=5.1.1" in result.reasons


def test_dsn_delay_is_a_bounce_that_is_not_permanent() -> None:
    result = verdict(dsn(("slow@kunde.example", "delayed", "4.4.7")))
    assert result.kind == "bounce"
    assert result.bounce_status == "4.4.7"
    assert result.permanent is False
    assert result.failed_recipients == ("slow@kunde.example",)


def test_dsn_failed_after_retries_with_4xx_status_is_permanent() -> None:
    result = verdict(dsn(("slow@kunde.example", "failed", "4.4.7")))
    assert (result.bounce_status, result.permanent) == ("4.4.7", True)


def test_dsn_first_failed_recipient_decides() -> None:
    result = verdict(
        dsn(
            ("ok@kunde.example", "delivered", "2.0.0"),
            ("late@kunde.example", "delayed", "4.2.2"),
            ("gone@kunde.example", "failed", "5.1.1"),
            ("full@kunde.example", "failed", "5.2.2"),
        )
    )
    assert result.bounce_status == "5.1.1"
    assert result.permanent is True
    assert result.failed_recipients == ("gone@kunde.example", "full@kunde.example")


def test_dsn_reporting_success_only() -> None:
    result = verdict(dsn(("ok@kunde.example", "delivered", "2.0.0")))
    assert result.kind == "bounce"
    assert (result.bounce_status, result.permanent, result.failed_recipients) == (None, None, ())
    assert "dsn:no-failure" in result.reasons


def test_dsn_with_returned_headers_only() -> None:
    result = verdict(dsn(("gone@kunde.example", "failed", "5.1.1"), returned="text/rfc822-headers"))
    assert result.original_message_id == "ticket-1042.1@dataandmore.com"


def test_bounce_to_a_list_address_is_a_bounce() -> None:
    text = dsn(("gone@kunde.example", "failed", "5.1.1")).replace(
        "Subject:", "List-Id: Users <users.lists.example.org>\nPrecedence: bulk\nSubject:"
    )
    assert verdict(text).kind == "bounce"


def test_non_dsn_bounce_details() -> None:
    result = verdict(
        DAEMON + "Subject: failure notice\n\nHi. This is the qmail-send program at mx.\n\n"
        "<gone@kunde.example>:\n"
        "remote said: 550 5.1.1 <gone@kunde.example>: Recipient address rejected\n\n"
        "--- Below this line is a copy of the message.\n\n"
        "Message-ID: <ticket-1042.1@dataandmore.com>\nSubject: x\n"
    )
    assert result.kind == "bounce"
    assert result.bounce_status == "5.1.1"
    assert result.permanent is True
    assert result.failed_recipients == ("gone@kunde.example",)
    assert result.original_message_id == "ticket-1042.1@dataandmore.com"


def test_non_dsn_delay_warning() -> None:
    result = verdict(
        DAEMON + "Subject: Warning: message 1Abc-0001 delayed 24 hours\n\n"
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent has not yet been delivered to one or more of its "
        "recipients after more than 24 hours on the queue.\n"
    )
    assert (result.kind, result.permanent) == ("bounce", False)


def test_original_message_id_of_an_auto_reply() -> None:
    result = verdict(
        PERSON + "Subject: Automatic reply: x\nAuto-Submitted: auto-replied\n"
        "In-Reply-To: <ticket-1042.1@dataandmore.com>\n"
        "References: <a@b> <ticket-1042.1@dataandmore.com>\n\nI am on leave.\n"
    )
    assert result.kind == "out_of_office"
    assert result.original_message_id == "ticket-1042.1@dataandmore.com"
    only_references = verdict(
        PERSON + "Subject: Auto reply\nAuto-Submitted: auto-replied\n"
        "References: <a@b> <ticket-1042.2@dataandmore.com>\n\nx\n"
    )
    assert only_references.original_message_id == "ticket-1042.2@dataandmore.com"


def test_human_verdict_carries_no_bounce_data() -> None:
    result = verdict(PERSON + "Subject: Frage\nIn-Reply-To: <x@y>\n\nHallo\n")
    assert result == LoopVerdict(kind="human", reasons=())


# ------------------------------------------------------- own mail


def test_own_marker_header() -> None:
    result = verdict(OUR_MAIL)
    assert result.kind == "own"
    assert result.reasons == ("own:header=X-Mailtriage-Ticket",)


def test_own_message_id_domain() -> None:
    text = OUR_MAIL.replace("X-Mailtriage-Ticket: DM-1042\n", "")
    assert verdict(text).kind != "own"
    result = verdict(text, own_domains=("DataAndMore.com",))
    assert result.kind == "own"
    assert result.reasons == ("own:message-id=dataandmore.com",)
    # exact domain only: a subdomain of a customer's host is not ours
    other = text.replace("@dataandmore.com>", "@mail.dataandmore.com.example>")
    assert verdict(other, own_domains=("dataandmore.com",)).kind != "own"


def test_bounce_of_our_mail_is_a_bounce_not_own() -> None:
    result = verdict(
        dsn(("gone@kunde.example", "failed", "5.1.1")), own_domains=("dataandmore.com",)
    )
    assert result.kind == "bounce"
    assert result.original_message_id == "ticket-1042.1@dataandmore.com"


def test_list_tag_rule_skips_mail_written_to_us() -> None:
    text = (
        PERSON.replace("To: Support <support@dataandmore.com>\n", "To: it@kunde.example\n")
        + "Cc: support@dataandmore.com\nSubject: [it] VPN bricht ab\n\nHallo\n"
    )
    assert verdict(text).kind == "list"  # without knowing our domains it looks like a list
    assert verdict(text, own_domains=("dataandmore.com",)).kind == "human"


def test_our_own_group_alias_is_not_a_list() -> None:
    text = PERSON + "Subject: Login\nList-Id: <support.dataandmore.com>\n\nHallo\n"
    assert verdict(text).kind == "list"
    assert verdict(text, own_domains=("dataandmore.com",)).kind == "human"


# ------------------------------------------------------- envelope sender


def test_envelope_sender() -> None:
    text = PERSON + "Subject: Your message\n\nThanks for your message.\n"
    assert verdict(text).kind == "human"
    assert verdict(text, envelope_sender="anna.berger@kunde.example").kind == "human"
    result = verdict(text, envelope_sender="")
    assert result.automated
    assert "envelope:null" in result.reasons
    bounce = verdict(
        PERSON + "Subject: Undeliverable: x\n\nYour message could not be delivered.\n",
        envelope_sender="",
    )
    assert bounce.kind == "bounce"


# ------------------------------------------------------- TNEF reports


def _tnef(message_class: str) -> str:
    def attribute(level: int, ident: int, data: bytes) -> bytes:
        checksum = sum(data) & 0xFFFF
        return struct.pack("<BII", level, ident, len(data)) + data + struct.pack("<H", checksum)

    blob = struct.pack("<IH", 0x223E9F78, 0x1234)
    blob += attribute(1, 0x00089006, struct.pack("<I", 0x00010000))
    blob += attribute(1, 0x00078008, message_class.encode() + b"\0")
    body = base64.encodebytes(blob).decode()
    return (
        PERSON + "Subject: Read: Angebot\nMIME-Version: 1.0\n"
        'Content-Type: application/ms-tnef; name="winmail.dat"\n'
        "Content-Transfer-Encoding: base64\n\n" + body
    )


@pytest.mark.parametrize(
    ("message_class", "kind"),
    [
        ("REPORT.IPM.Note.IPNRN", "auto_reply"),
        ("REPORT.IPM.Note.NDR", "bounce"),
        ("IPM.Note.Rules.OofTemplate.Microsoft", "out_of_office"),
        ("IPM.Note", "human"),
    ],
)
def test_tnef_message_class(message_class: str, kind: str) -> None:
    assert verdict(_tnef(message_class)).kind == kind


# ------------------------------------------------------- robustness


def _robustness_messages() -> list[bytes]:
    """Odd and broken messages, as bytes (the guard only ever sees parsed values)."""
    out: list[bytes] = [
        b"Subject: x\r\n\r\n",
        b"Subject: =?utf-8?q?Unzustellbar:_Rechnung?=\r\n"
        b"From: MAILER-DAEMON <mailer-daemon@x.example>\r\n\r\nbody\r\n",
        b"Subject: qp\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbytes =41 =\r\n",
        b"Subject: b64\r\nContent-Transfer-Encoding: base64\r\n\r\n\xff\xfe\x00\r\n",
        b'Subject: cs\r\nContent-Type: text/plain; charset="base64"\r\n\r\naGVsbG8=\r\n',
        b"Subject: cs\r\nContent-Type: text/plain; charset*=utf-8''%E2%82%AC\r\n\r\n\xff\r\n",
        b"Subject: r\r\nContent-Type: multipart/report; report-type=delivery-status\r\n\r\n"
        b"not a list\r\n",
        b"Subject: d\r\nContent-Type: message/delivery-status\r\n\r\njunk\r\n\r\n\r\n",
        b"From: =?x-unknown?b?!!!?= <>\r\nSubject: =?utf-8?b?####?= =?utf-8?q?=FF?=\r\n"
        b"Return-Path: <>\r\nIn-Reply-To: <<<>>>\r\n\r\n",
        b"Subject: t\r\nContent-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n" + base64.b64encode(struct.pack("<IH", 0x223E9F78, 1) + b"\x01\xff\xff"),
        b"From: \xff\xfe <a@b>\r\nSubject: \xe4\xf6\xfc =?utf-8?q?x?=\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\nQWN0aW9uOiBmYWlsZWQ=\r\n--x",
        b"Subject: \x00nul\r\nFrom: a\x00@b.example\r\n\r\nI am out of office\x00\r\n",
    ]
    return out


@pytest.mark.parametrize("raw", _robustness_messages())
def test_weird_input_never_raises(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
    except ParseError:
        return
    result = detect_loop(parsed, own_domains=("x.example", ""), envelope_sender="<>")
    assert result.kind in KINDS


def test_a_parsed_message_without_parts_is_human() -> None:
    # a ParsedMessage built by hand (no recorded parts) is read as an empty message
    parsed = replace(parse("Subject: hello\n\nHello"), parts=())
    assert detect_loop(parsed).kind == "human"


# ------------------------------------------------------- corpus

EXPECTATIONS = [
    json.loads(line)
    for line in (CORPUS / "expectations.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
ACCEPTED = {
    "bounce": {"bounce"},
    "list": {"list"},
    "auto_reply": {"auto_reply", "out_of_office"},
    "human": {"human"},
}
# Labels we do not follow, each with the kind we assert instead and why.
DEVIATIONS: dict[str, tuple[str, str, str]] = {
    # file: (label, kind asserted instead, why)
    "cpython/msg_16.eml": (
        "list",
        "bounce",
        "a DSN (message/delivery-status) sent to a Mailman -admin address",
    ),
    "flufl-bounce/bounce_01.eml": (
        "list",
        "bounce",
        "a Jetmail bounce (From: <>, 'Your mail cannot be delivered') to a Mailman -admin address",
    ),
    "flufl-bounce/dumbass_01.eml": (
        "list",
        "bounce",
        "an InterScan bounce ('Mail could not be delivered' + returned message) to a list admin",
    ),
    "notmuch/default/cur/53_2_.eml": (
        "list",
        "human",
        "a draft one person sent to himself: no list header, no list address, no list tag",
    ),
    "perl-bounceparser/spam-bogus-email-in-report.eml": (
        "bounce",
        "human",
        "spam, not a bounce: the source test documents it as 'a non-bounce spam message'",
    ),
    "perl-bounceparser/spam-lots-of-bogus-addresses.eml": (
        "bounce",
        "human",
        "spam, not a bounce: the source test documents it as 'a non-bounce spam message'",
    ),
    "perl-bounceparser/spam-with-image.eml": (
        "bounce",
        "human",
        "spam, not a bounce: the source test only checks that it yields no reports",
    ),
    "zbateson-mmp/m0024.eml": (
        "human",
        "list",
        "written by a person but delivered through an ezmlm list (Mailing-List header)",
    ),
}
LABELLED = [e for e in EXPECTATIONS if e["kind"] != "malformed"]


def _load(relative: str) -> ParsedMessage:
    return parse_message((CORPUS / relative).read_bytes())


def test_deviations_match_the_labels() -> None:
    labels = {e["file"]: e["kind"] for e in EXPECTATIONS}
    for relative, (label, _, _) in DEVIATIONS.items():
        assert labels[relative] == label


@pytest.mark.parametrize("entry", [pytest.param(e, id=e["file"]) for e in LABELLED])
def test_corpus_expectation(entry: dict[str, str]) -> None:
    result = detect_loop(_load(entry["file"]))
    if entry["file"] in DEVIATIONS:
        expected = {DEVIATIONS[entry["file"]][1]}
    else:
        expected = ACCEPTED[entry["kind"]]
    assert result.kind in expected, result.reasons


def test_every_corpus_file_is_classified_without_an_exception() -> None:
    files = sorted(CORPUS.rglob("*.eml"))
    assert len(files) == 1408
    failures: list[str] = []
    for path in files:
        try:
            parsed = parse_message(path.read_bytes())
        except ParseError:
            continue
        try:
            result = detect_loop(parsed, own_domains=("example.com",), envelope_sender=None)
        except Exception as exc:  # the point of the test: nothing may escape
            failures.append(f"{path.relative_to(CORPUS)}: {type(exc).__name__}: {exc}")
            continue
        if result.kind not in KINDS or (result.automated and not result.reasons):
            failures.append(f"{path.relative_to(CORPUS)}: bad verdict {result}")
    assert failures == []


@pytest.mark.parametrize("spelling", ["Büro", "Buero", "Buro"])
def test_umlauts_match_in_every_spelling(spelling: str) -> None:
    # mime.fold spells umlauts out ("ü" -> "ue"); the patterns accept both spellings
    result = verdict(
        PERSON + "Subject: Re: Rechnung\nAuto-Submitted: auto-replied\n\n"
        f"Ich bin bis 10.07. nicht im {spelling}.\n"
    )
    assert result.kind == "out_of_office"
    assert "body:out-of-office" in result.reasons


def test_only_the_listed_characters_fold_to_a_brace():
    """non_dsn_bounce skips folding the body for the JSON notification check when the
    text has none of FOLDS_TO_BRACE: no other code point folds to text with a "{" (and
    composition makes no new one: no character decomposes canonically to "{")."""
    from mailtriage.pipeline.loops.reports import FOLDS_TO_BRACE
    from mailtriage.pipeline.mime import fold

    folding = [chr(c) for c in range(0x110000) if "{" in fold(chr(c))]
    assert folding == ["{", "\ufe37", "\ufe5b", "\uff5b"]
    assert all(FOLDS_TO_BRACE.fullmatch(c) for c in folding)
    note = '\ufe5b"notificationType":"Bounce","bounce":{}}'
    mail = (
        b"From: no-reply@sns.example\r\nTo: support@dataandmore.com\r\n"
        b"Subject: AWS Notification Message\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
    ) + note.encode()
    verdict = detect_loop(parse_message(mail))
    assert verdict.kind == "bounce" and "body:esp-notification" in verdict.reasons
