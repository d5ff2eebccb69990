"""Builders for test messages (written here, not copied from anywhere)."""

from __future__ import annotations

import email
import io
import struct
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from PIL import Image, ImageDraw

from mailtriage.outbound.headers import OutgoingMail, message_bytes


def png(width: int, height: int, color: tuple[int, int, int] = (30, 90, 160)) -> bytes:
    """A real PNG of the given size (a screenshot-like picture when large)."""
    img = Image.new("RGB", (width, height), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, max(1, height // 10)], fill=color)
    draw.text((10, height // 2), "Error 0x80070005", fill=(0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def tnef(files: list[tuple[str, bytes]]) -> bytes:
    """A minimal TNEF stream (winmail.dat) carrying ``files``."""

    def obj(level: int, name: int, typ: int, data: bytes) -> bytes:
        checksum = sum(data) & 0xFFFF
        return (
            struct.pack("<BHHI", level, name, typ, len(data)) + data + struct.pack("<H", checksum)
        )

    out = struct.pack("<IH", 0x223E9F78, 0x0101)
    out += obj(1, 0x9006, 0x0008, struct.pack("<I", 0x00010000))  # TNEF version
    out += obj(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))  # OEM code page
    for name, data in files:
        out += obj(2, 0x9002, 0x0006, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 8)  # rend data
        out += obj(2, 0x8010, 0x0001, name.encode("cp1252") + b"\x00")  # title
        out += obj(2, 0x800F, 0x0006, data)  # data
    return out


def mail(
    subject: str = "Drucker druckt nicht",
    body: str = "Hallo, unser Drucker druckt seit heute nicht mehr.",
    sender: str = "Erika Muster <erika@kunde.example>",
    to: str = "support@dataandmore.com",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    inline_images: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
    date: datetime | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2026, 11, 2, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="kunde.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
        if inline_images:
            html_part = msg.get_payload()[1]
            for cid, data in inline_images:
                html_part.add_related(data, "image", "png", cid=f"<{cid}>")
    for filename, ctype, data in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


OUTGOING_DATE = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)


def outgoing(**changes: object) -> OutgoingMail:
    """An acknowledgement as the sender hands it to the message writer (``changes``
    replace fields)."""
    base = OutgoingMail(
        from_name="Data & More Support",
        from_address="support@dataandmore.com",
        to_name="Erika Müller",
        to_address="erika@kunde.example",
        reply_to="support+dm-000042.abcdefghijklmnop@dataandmore.com",
        subject="Re: [DM-000042] Drucker druckt nicht",
        message_id="dm-000042.ack.0.abcdefghijklmnop@mailtriage.dataandmore.com",
        date=OUTGOING_DATE,
        text="Guten Tag,\nwir haben Ihre Anfrage erhalten.\n",
        html="<p>Guten Tag</p>\n",
        in_reply_to="cust-1@kunde.example",
        references=("older@kunde.example", "cust-1@kunde.example"),
        language="de",
        ticket_reference="DM-000042",
        kind="ack",
    )
    return OutgoingMail(**(base.__dict__ | changes))  # type: ignore[arg-type]


def read_mail(mail: OutgoingMail) -> EmailMessage:
    """The message the writer makes of ``mail``, as the email package reads it back."""
    message = email.message_from_bytes(message_bytes(mail), policy=policy.SMTP)
    assert isinstance(message, EmailMessage)
    return message
