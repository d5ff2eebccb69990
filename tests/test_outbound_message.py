"""The message writer (``headers.message_bytes``) against the email package: the same
headers, encodings and MIME structure in meaning, read back by the email package.

The reference is what the sender used to build: an ``EmailMessage`` (policy SMTP)
with header-registry ``Address`` values and ``set_content``. Every case below is
written by both and must read back the same (display names, addresses, subject, the
text and HTML, the transfer encoding the email package chose), with lines within the
limits and non-ASCII only in encoded words and transfer encodings.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses

import pytest

from mailtriage.outbound.headers import (
    MailAttachment,
    OutgoingMail,
    clean_header_value,
    message_bytes,
)

from mails import outgoing

NAMES = [
    "Erika Müller",
    "Data & More Support",
    "Dr. Erika Müller-Lüdenscheidt, geb. Schmidt (Kundin)",
    'John "Johnny" Smith',
    "Smith, John",
    "back\\slash",
    "O'Brien",
    "Ünal Çelik",
    "王小明",
    "Иван Петров",
    "Zoë 😀 Emoji",
    "a" * 200,
    "ä" * 200,
    ("Müller " * 40).strip(),
    "= ?utf-8?q?not_an_encoded_word?=",
    "",
]

SUBJECTS = [
    "Re: [DM-000042] Drucker druckt nicht – dringend",
    "Re: [DM-000042] Passwort vergessen",
    "Re: [DM-000042] Не работает принтер",
    "Re: [DM-000042] 打印机坏了 请帮忙",
    "Re: [DM-000042] ✅ erledigt?",
    "Re: [DM-000042] " + "Drucker druckt nicht schon wieder und immer noch " * 15,
    "Re: [DM-000042] " + "Größenänderung fehlgeschlagen übermäßig " * 20,
    "Re: [DM-000042] " + "x" * 850,
    "Re: [DM-000042] " + "ü" * 400,
    "Re: [DM-000042] a  b\tc",
    "",
]


mail = outgoing


def reference(m: OutgoingMail) -> EmailMessage:
    return read(reference_bytes(m))


def reference_bytes(m: OutgoingMail) -> bytes:
    """The message as the email package builds it (the sender's former way)."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = Address(clean_header_value(m.from_name, 200), addr_spec=m.from_address)
    msg["To"] = Address(clean_header_value(m.to_name, 200), addr_spec=m.to_address)
    if m.cc:
        msg["Cc"] = [Address(clean_header_value(n, 200), addr_spec=a) for a, n in m.cc]
    msg["Subject"] = clean_header_value(m.subject, 900)
    msg.set_content(m.text, charset="utf-8")
    if m.html is not None:
        msg.add_alternative(m.html, subtype="html", charset="utf-8")
    return bytes(msg)


def read(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def check_lines(raw: bytes) -> None:
    """CRLF only; header lines within 78 columns unless one word is longer (and within
    998 always); the header block ASCII."""
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    for line in head.split(b"\r\n"):
        if len(line) > 78:  # only a single word that does not fit on a line of its own
            assert b" " not in line.strip(), line


def part_cte(msg: EmailMessage, subtype: str) -> str:
    body = msg.get_body((subtype,))
    assert body is not None
    return str(body["Content-Transfer-Encoding"])


def display_names(raw: bytes, header: str) -> list[tuple[str, str]]:
    """(name, address) pairs of an address header, decoded as RFC 2047 says: the
    whitespace between two adjacent encoded words is dropped. (The email package's
    address parser keeps it as a space, so it reads a long encoded name, ours or its
    own, with spaces inserted where the name was split into words.)"""
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    value = " ".join(str(msg[header]).split())  # unfolded
    return [
        (str(make_header(decode_header(name))), address) for name, address in getaddresses([value])
    ]


@pytest.mark.parametrize("name", NAMES)
def test_display_names_read_back_as_the_email_package_writes_them(name: str) -> None:
    m = mail(to_name=name, from_name=name, cc=(("anna@kunde.example", name),))
    raw = message_bytes(m)
    check_lines(raw)
    cleaned = clean_header_value(name, 200)
    theirs = reference_bytes(m)
    for header, address in (
        ("From", "support@dataandmore.com"),
        ("To", "erika@kunde.example"),
        ("Cc", "anna@kunde.example"),
        ("Reply-To", m.reply_to),
    ):
        assert display_names(raw, header) == [(cleaned, address)]
        if header != "Reply-To":
            assert display_names(theirs, header) == [(cleaned, address)]
    ours = read(raw)  # and the email package reads the same addresses
    assert [a.addr_spec for a in ours["To"].addresses] == ["erika@kunde.example"]
    assert [a.addr_spec for a in ours["Cc"].addresses] == ["anna@kunde.example"]
    if len(cleaned.encode()) <= 45:  # one encoded word: no whitespace question
        assert ours["To"].addresses[0].display_name == cleaned


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_read_back_as_the_email_package_writes_them(subject: str) -> None:
    m = mail(subject=subject)
    raw = message_bytes(m)
    check_lines(raw)
    assert read(raw)["Subject"] == clean_header_value(subject, 900)
    # The email package's own folding drops the space between two encoded runs of
    # the long German subject ("übermäßigGrößenänderung"): compared where it does not.
    if subject != SUBJECTS[6]:
        assert read(raw)["Subject"] == reference(m)["Subject"]


def test_a_long_subject_is_folded_at_spaces_and_unfolds_to_itself() -> None:
    subject = "Re: [DM-000042] " + " ".join(f"Wort{i}" for i in range(60))
    raw = message_bytes(mail(subject=subject))
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    start = head.index("Subject:")
    end = head.index("\r\nDate:")
    lines = head[start:end].split("\r\n")
    assert len(lines) > 3
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(" ") for line in lines[1:])
    assert "\r\n".join(lines).replace("\r\n", "") == f"Subject: {subject}"


def test_non_ascii_is_only_in_encoded_words_of_75_characters_at_most() -> None:
    raw = message_bytes(mail(subject="Re: [DM-000042] " + "Ä" * 300, to_name="Ö" * 200))
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    words = [w for w in head.split() if w.startswith("=?")]
    assert words and all(w.startswith("=?utf-8?") and len(w) <= 75 for w in words)


TEXTS = [
    "Guten Tag,\nwir haben Ihre Anfrage erhalten.\n",  # ASCII, short lines: 7bit
    "Grüße aus München,\nIhr Support\n",  # non-ASCII, short lines: 8bit
    "Link: https://support.example/t/" + "A" * 120 + "\nDanke\n",  # long line: QP
    ("Здравствуйте, мы получили ваше сообщение и ответим как можно скорее. " * 3) + "\n",
    "x = 1\n.\nFrom here\ntrailing space \n\ttab\n",
    "",
    "no final newline",
    "a\r\nb\rc\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_text_parts_choose_the_email_packages_transfer_encoding(text: str) -> None:
    m = mail(text=text, html=f"<p>{text}</p>")
    raw = message_bytes(m)
    check_lines(raw)
    ours, theirs = read(raw), reference(m)
    for subtype in ("plain", "html"):
        assert part_cte(ours, subtype) == part_cte(theirs, subtype)
        ours_body, theirs_body = ours.get_body((subtype,)), theirs.get_body((subtype,))
        assert ours_body is not None and theirs_body is not None
        assert ours_body.get_content() == theirs_body.get_content()  # type: ignore[attr-defined]
        assert ours_body["Content-Type"] == theirs_body["Content-Type"]


def test_structure_and_loop_guard_headers() -> None:
    msg = read(message_bytes(mail()))
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Mailtriage-Ticket"] == "DM-000042"
    assert msg["X-Mailtriage-Kind"] == "ack"
    assert msg["Message-ID"] == "<dm-000042.ack.0.abcdefghijklmnop@mailtriage.dataandmore.com>"
    assert msg["Date"] == "Mon, 02 Nov 2026 08:30:00 +0000"
    plain = read(message_bytes(mail(html=None, auto_submitted="auto-generated")))
    assert plain.get_content_type() == "text/plain" and "MIME-Version" in plain
    assert plain["Auto-Submitted"] == "auto-generated"
    relayed = read(message_bytes(mail(auto_submitted="")))  # a person's reply, relayed
    assert "Auto-Submitted" not in relayed and relayed["X-Auto-Response-Suppress"] == "All"


def test_many_references_fold_between_ids() -> None:
    refs = tuple(f"msg-{i}.{'x' * 30}@kunde.example" for i in range(30))
    raw = message_bytes(mail(references=refs))
    check_lines(raw)
    msg = read(raw)
    got = str(msg["References"]).split()
    assert got == [f"<{r}>" for r in refs[-20:]]  # the newest 20 (MAX_REFERENCES)


def test_attachments_with_non_ascii_names_and_cc() -> None:
    data = bytes(range(256)) * 40
    m = mail(
        cc=(("anna@kunde.example", "Anna Ä"), ("erika@kunde.example", "dup of To"), ("bad", "")),
        attachments=(
            MailAttachment("Rechnung März 2026.pdf", "application/pdf", data),
            MailAttachment("x" * 150 + "ü.txt", "text/plain", "Grüße".encode()),
            MailAttachment("evil.html", "text/html\r\nBcc: x", b"<b>"),
        ),
    )
    raw = message_bytes(m)
    check_lines(raw)
    msg = read(raw)
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["anna@kunde.example"]
    assert msg.get_content_type() == "multipart/mixed"
    alternative, *parts = msg.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    got = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in parts]
    assert got == [
        ("Rechnung März 2026.pdf", "application/pdf", data),
        ("x" * 150 + "ü.txt", "text/plain", "Grüße".encode()),
        ("evil.html", "application/octet-stream", b"<b>"),
    ]
    assert all("MIME-Version" not in p for p in msg.walk() if p is not msg)


def test_a_text_quoting_our_last_boundary_cannot_break_the_next_message() -> None:
    """A customer who quotes a mail of ours (its boundary line included) into the text
    of the next one: the boundary is a fresh 128-bit secret each time, not Python's
    predictable ``random`` (whose outputs our boundaries would reveal), so the quoted
    line stays text and the message keeps its two parts."""
    first = read(message_bytes(mail()))
    taken = first.get_boundary()
    assert taken is not None and re.fullmatch(r"=_[0-9a-f]{32}", taken)
    raw = message_bytes(mail(text=f"quoted mail:\n--{taken}\nend\n--{taken}--\n"))
    msg = read(raw)
    assert msg.get_boundary() not in (None, taken)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    plain = msg.get_body(("plain",))
    assert plain is not None and f"--{taken}" in plain.get_content()  # type: ignore[attr-defined]
    boundaries = {read(message_bytes(mail())).get_boundary() for _ in range(50)}
    assert len(boundaries) == 50


def _clean_per_character(value: str, limit: int) -> str:
    """clean_header_value's rule written out for every character (its former code)."""
    import unicodedata

    out = [
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") or ch.isspace() else ch
        for ch in value
    ]
    return " ".join("".join(out).split()).replace("=?", "= ?")[:limit].rstrip()


@pytest.mark.parametrize(
    "value",
    [
        "Re: [DM-000042]  Drucker   druckt nicht ",
        "=?utf-8?q?x?= a=?b",
        "tab\there",
        "x\r\nBcc: evil@attacker.example",
        "Müller\u00a0Lüdenscheidt\u200b\u2028x",
        "\x00\x7f\x85 ~!",
        "",
        "   ",
        "a" * 950,
    ],
)
def test_clean_header_value_fast_path_is_the_same_rule(value: str) -> None:
    for limit in (10, 40, 900):
        assert clean_header_value(value, limit) == _clean_per_character(value, limit)
