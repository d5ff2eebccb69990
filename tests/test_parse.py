from __future__ import annotations

from email.message import EmailMessage

import pytest

from mailtriage.pipeline.parse import (
    MessageTooLarge,
    ParseError,
    ParseLimits,
    content_key,
    message_ids,
    normalise_message_id,
    parse_message,
)

from mails import mail, png, tnef


def test_headers_are_decoded() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Kunde.Example>\r\n"
        b"To: support@dataandmore.com, Other <other@kunde.example>\r\n"
        b"Cc: chef@kunde.example\r\n"
        b"Reply-To: helpdesk@kunde.example\r\n"
        b"Subject: =?iso-8859-1?q?Dringend:_Login_f=E4llt_aus?=\r\n"
        b"Date: Mon, 02 Nov 2026 10:15:00 +0100\r\n"
        b"Message-ID: <abc.123@kunde.example>\r\n"
        b"In-Reply-To: <x1@dataandmore.com>\r\n"
        b"References: <x0@dataandmore.com>\r\n <x1@dataandmore.com>\r\n"
        b"\r\n"
        b"Hallo\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.sender == "juergen@kunde.example"
    assert parsed.sender_name == "Jürgen Müller"
    assert parsed.subject == "Dringend: Login fällt aus"
    assert parsed.to == ("support@dataandmore.com", "other@kunde.example")
    assert parsed.cc == ("chef@kunde.example",)
    assert parsed.reply_to == ("helpdesk@kunde.example",)
    assert parsed.message_id == "abc.123@kunde.example"
    assert parsed.in_reply_to == ("x1@dataandmore.com",)
    assert parsed.references == ("x0@dataandmore.com", "x1@dataandmore.com")
    assert parsed.date is not None and parsed.date.isoformat() == "2026-11-02T09:15:00+00:00"
    assert parsed.text == "Hallo"
    assert parsed.sender_domain == "kunde.example"


def test_html_only_becomes_readable_text() -> None:
    msg = EmailMessage()
    msg["From"] = "a@b.example"
    msg["Subject"] = "html"
    msg.set_content(
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
        "<p>Guten Tag,</p><p>die <b>Anmeldung</b> schlägt fehl.</p>"
        "<table><tr><td>Fehler</td><td>0x80070005</td></tr></table></body></html>",
        subtype="html",
    )
    parsed = parse_message(msg.as_bytes())
    assert "Guten Tag," in parsed.text
    assert "die Anmeldung schlägt fehl." in parsed.text
    assert "0x80070005" in parsed.text
    assert "alert" not in parsed.text and "color" not in parsed.text
    assert parsed.html is not None


def test_plain_alternative_is_preferred_over_html() -> None:
    parsed = parse_message(mail(body="plain words", html="<p>html words</p>"))
    assert parsed.text == "plain words"


def test_wrong_declared_charset_is_repaired_and_recorded() -> None:
    body = "Grüße aus Köln, die Größe der Datei ist falsch.".encode("cp1252")
    raw = (
        b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    parsed = parse_message(raw)
    assert "Grüße aus Köln" in parsed.text
    assert any(d.startswith("charset:") for d in parsed.defects)


def test_screenshots_are_told_apart_from_logos_by_their_bytes() -> None:
    raw = mail(
        html='<p>see</p><img src="cid:logo1"><img src="cid:shot1">',
        inline_images=[("logo1", png(40, 20)), ("shot1", png(800, 600))],
        attachments=[
            ("bild.dat", "application/octet-stream", png(1024, 768)),  # image by bytes
            ("pixel.gif", "image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
            ("notes.txt", "text/plain", b"just text"),
        ],
    )
    parsed = parse_message(raw)
    by_name = {a.filename: a for a in parsed.attachments}
    assert by_name["shot1.png"].is_inline and by_name["shot1.png"].is_screenshot
    assert by_name["shot1.png"].content_id == "shot1"
    assert by_name["logo1.png"].is_inline and not by_name["logo1.png"].is_screenshot
    assert by_name["bild.dat"].is_screenshot and by_name["bild.dat"].content_type == "image/png"
    assert not by_name["bild.dat"].is_inline
    assert not by_name["pixel.gif"].is_screenshot
    assert not by_name["notes.txt"].is_screenshot
    assert by_name["notes.txt"].data == b"just text"


def test_forwarded_message_keeps_its_parts() -> None:
    inner = mail(
        subject="Original problem",
        body="The end user's words",
        attachments=[("shot.png", "image/png", png(640, 480))],
    )
    outer = EmailMessage()
    outer["From"] = "helpdesk@kunde.example"
    outer["Subject"] = "Fwd: Original problem"
    outer.set_content("Please see the forwarded mail.")
    outer.add_attachment(inner, maintype="message", subtype="rfc822")
    parsed = parse_message(outer.as_bytes())
    names = [a.filename for a in parsed.attachments]
    assert "Original problem.eml" in names
    assert "shot.png" in names
    assert "The end user's words" in parsed.text


def test_tnef_winmail_dat_is_unpacked() -> None:
    data = tnef([("Bericht.pdf", b"%PDF-1.4 report"), ("log.txt", b"error line")])
    parsed = parse_message(mail(attachments=[("winmail.dat", "application/ms-tnef", data)]))
    files = {a.filename: a.data for a in parsed.attachments}
    assert files == {"Bericht.pdf": b"%PDF-1.4 report", "log.txt": b"error line"}


def test_broken_tnef_is_kept_with_a_defect() -> None:
    parsed = parse_message(
        mail(attachments=[("winmail.dat", "application/ms-tnef", b"not tnef at all")])
    )
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert any(d.startswith("tnef:") for d in parsed.defects)


def test_size_caps() -> None:
    raw = mail(attachments=[("big.bin", "application/octet-stream", b"x" * 50_000)])
    with pytest.raises(MessageTooLarge, match=r"over the cap"):
        parse_message(raw, ParseLimits(max_message_bytes=10_000))
    with pytest.raises(MessageTooLarge, match=r"big\.bin"):
        parse_message(raw, ParseLimits(max_attachment_bytes=20_000))


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n", b"\x00\x01\x02 garbage without headers"])
def test_not_a_message(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(raw)


def test_defects_are_recorded_not_fatal() -> None:
    raw = (
        b"From: a@b.example\r\nSubject: broken\r\n"
        b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
        b"--YY\r\nno such boundary\r\n"
    )
    parsed = parse_message(raw)
    assert any("Boundary" in d for d in parsed.defects)


def test_obsolete_header_syntax_is_read() -> None:
    parsed = parse_message(b"Subject  : Hello\r\nFrom  : a@b.example\r\n\r\nbody\r\n")
    assert parsed.subject == "Hello"
    assert parsed.sender == "a@b.example"


def test_content_key_ignores_transport_headers_and_line_endings() -> None:
    raw = mail(message_id="<m1@kunde.example>")
    relayed = b"Received: from mx by us; Mon, 2 Nov 2026\r\nReturn-Path: <x@y>\r\n" + raw
    lf = raw.replace(b"\r\n", b"\n")
    assert content_key(raw) == content_key(relayed) == content_key(lf)
    assert content_key(raw) != content_key(mail(message_id="<m1@kunde.example>", body="other"))


def test_message_id_helpers() -> None:
    assert normalise_message_id(" <a@b> ") == "a@b"
    assert normalise_message_id("a@b") == "a@b"
    assert normalise_message_id("") is None
    assert normalise_message_id("<>") is None
    assert message_ids("<a@b> <c@d>\r\n <a@b>") == ("a@b", "c@d")


def test_encoded_display_name_cannot_pose_as_the_address() -> None:
    raw = (
        b"From: =?utf-8?q?ceo=40bank.example?= <mallory@attacker.example>\r\n"
        b"To: =?utf-8?q?J=C3=BCrgen?= <support@dataandmore.com>, bad address\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.sender == "mallory@attacker.example"
    assert parsed.sender_name == "ceo@bank.example"
    assert parsed.to == ("support@dataandmore.com",)


def test_raw_utf8_headers_are_read_as_utf8() -> None:
    raw = (
        "From: Jürgen <jürgen@kunde.example>\r\nSubject: Grüße, Anmeldung klappt nicht\r\n"
        "\r\nbody\r\n"
    ).encode()
    parsed = parse_message(raw)
    assert parsed.subject == "Grüße, Anmeldung klappt nicht"
    assert parsed.sender == "jürgen@kunde.example"
    assert parsed.sender_name == "Jürgen"


def test_the_walk_records_the_own_tree_for_the_loop_guard() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        b"Final-Recipient: rfc822; a@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <orig@dataandmore.com>\r\n"
        b"Content-Type: text/plain\r\n\r\nthe returned text\r\n--b--\r\n"
    )
    parsed = parse_message(raw)
    types = [p.content_type for p in parsed.parts]
    # the attached message's own parts are not the report's parts
    assert types == [
        "multipart/report",
        "text/plain",
        "message/delivery-status",
        "message/rfc822",
    ]
    top, text, status, returned = parsed.parts
    assert ("subject", "Undelivered") in top.headers
    assert text.text.strip() == "This is the mail system."
    assert ("status", "5.1.1") in status.fields[1]
    assert returned.returned_message_id == "orig@dataandmore.com"
    assert "the returned text" in parsed.text  # the stored text still has it


def test_an_unreadable_date_is_a_defect() -> None:
    parsed = parse_message(b"Subject: x\r\nDate: yesterday-ish\r\n\r\nhi\r\n")
    assert parsed.date is None
    assert any(d.startswith("header: unreadable Date") for d in parsed.defects)


def test_a_parser_failure_on_the_bytes_is_a_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailtriage.pipeline.parse as parse_module

    def broken(raw: bytes) -> None:
        raise ValueError("embedded null character")

    monkeypatch.setattr(parse_module, "feed_parse", broken)
    with pytest.raises(ParseError, match="embedded null character"):
        parse_message(b"Subject: x\r\n\r\nhi\r\n")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (b"Content-Type: text/plain; charset=utf-8\r\n", "Zeile mit Umlauten: äöü\r\n".encode()),
        (
            b"Content-Type: text/plain; charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n",
            "Grüße aus Köln\r\n".encode("latin-1"),
        ),
        (
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
            b"quoted-printable\r\n",
            b"Gr=C3=BC=C3=9Fe, eine sehr lange Zeile =\r\nweiter\r\n",
        ),
        (b"Content-Type: text/html; charset=utf-8\r\n", b"<p>Hallo <b>Welt</b></p>\r\n"),
        (b"Content-Type: application/octet-stream\r\n", b"\x00\x01binary\r\n"),
    ],
)
def test_a_large_single_part_body_is_read_from_the_raw_bytes(
    headers: bytes, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mailtriage.pipeline.rawmail as rawmail

    body = body * (rawmail.DEFER_BODY_BYTES // len(body) + 1)
    raw = b"From: a@b.example\r\nSubject: big\r\n" + headers + b"\r\n" + body
    assert len(raw) > rawmail.DEFER_BODY_BYTES
    deferred = parse_message(raw)
    monkeypatch.setattr(rawmail, "DEFER_BODY_BYTES", 1 << 40)
    fed = parse_message(raw)  # the same message through the stdlib's feed parser
    assert deferred == fed
