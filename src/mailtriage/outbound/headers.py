"""Headers and MIME structure of the mail we send (pure).

Every value that comes from a customer (their name, address, subject, Message-IDs) is
cleaned here before it reaches a header: control characters, CR and LF become spaces,
so no value can start a new header line, and the email package encodes what is not
ASCII (RFC 2047 encoded words) and folds long lines. Addresses and Message-IDs must
match a strict pattern or they are dropped.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = [
    "MailAttachment",
    "OutgoingMail",
    "build_message",
    "clean_header_value",
    "make_message_id",
    "plus_address",
    "safe_address",
    "safe_message_id",
]

# RFC 5322 dot-atom local part (ASCII) and a DNS domain (IDNs are sent as A-labels).
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
# A Message-ID without its angle brackets: visible ASCII except "<", ">" and "\".
_MSGID_RE = re.compile(r"[!-;=?-\[\]-~]{1,250}@[!-;=?-\[\]-~]{1,250}")
MAX_REFERENCES = 20

AUTO_REPLIED = "auto-replied"  # RFC 3834: an answer to a message (acknowledgements)
AUTO_GENERATED = "auto-generated"  # RFC 3834: not caused by a message (notices)


def clean_header_value(value: str, limit: int = 500) -> str:
    """One line of text: control and format characters (CR, LF, NUL, U+2028...) become
    spaces, runs of whitespace one space, at most ``limit`` characters.

    ``=?`` becomes ``= ?``: the values we get are decoded already, so an encoded word
    left in one is an attack. The email package decodes encoded words in a display
    name it is given and writes the result back as a quoted string, CR LF included:
    ``=?utf-8?q?x=0D=0ABcc:_a@b?=`` would become a ``Bcc:`` line.
    """
    out = []
    for ch in value:
        cat = unicodedata.category(ch)
        out.append(" " if cat in ("Cc", "Cf", "Zl", "Zp") or ch.isspace() else ch)
    text = " ".join("".join(out).split()).replace("=?", "= ?")
    return text[:limit].rstrip()


def safe_address(value: str | None) -> str | None:
    """``local@domain`` when it is a plain, sendable address; None otherwise."""
    if not value or len(value) > 320 or "=?" in value:  # no encoded words (see above)
        return None
    local, at, domain = value.strip().rpartition("@")
    if not at or not _LOCAL_RE.fullmatch(local) or len(local) > 64:
        return None
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if not _DOMAIN_RE.fullmatch(domain):
        return None
    return f"{local}@{domain.lower()}"


def safe_message_id(value: str | None) -> str | None:
    """A Message-ID (without ``<>``) that can be written back into a header, or None."""
    if not value:
        return None
    value = value.strip().strip("<>")
    # "=?": the email package would decode an encoded word in it, CR LF included.
    return value if _MSGID_RE.fullmatch(value) and "=?" not in value else None


def make_message_id(reference: str, kind: str, step: int, salt: str, domain: str) -> str:
    """The Message-ID of outbox entry (ticket, kind, step): the same every time it is
    rendered, so a resend after a crash carries the same ID (and threads, and can be
    recognised as a duplicate). ``salt`` (the ticket's creation time) keeps two
    databases that both have a ticket 42 from making the same ID."""
    digest = hashlib.sha256(f"{reference}\0{kind}\0{step}\0{salt}".encode()).hexdigest()[:12]
    return f"{reference.lower()}.{kind}.{step}.{digest}@{domain.lower()}"


def plus_address(address: str, tag: str) -> str:
    """``support@x`` + ``DM-000123`` -> ``support+dm-000123@x``."""
    local, _, domain = address.rpartition("@")
    tag = re.sub(r"[^a-z0-9-]", "", tag.lower())
    return f"{local}+{tag}@{domain}" if local and tag else address


@dataclass(frozen=True)
class OutgoingMail:
    from_name: str
    from_address: str
    to_name: str
    to_address: str
    reply_to: str
    subject: str
    message_id: str
    date: datetime
    text: str
    html: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    # "": no Auto-Submitted header (a person's reply relayed by us, RFC 3834)
    auto_submitted: str = AUTO_REPLIED
    language: str = ""
    ticket_reference: str = ""
    kind: str = ""
    cc: tuple[tuple[str, str], ...] = ()  # (address, name); unsafe addresses are dropped
    attachments: tuple[MailAttachment, ...] = ()


@dataclass(frozen=True)
class MailAttachment:
    filename: str
    content_type: str
    data: bytes


class UnsendableAddress(ValueError):
    """A recipient or sender address (or another value) that cannot go into a header
    safely."""


def build_message(mail: OutgoingMail) -> EmailMessage:
    """The complete message; serialise it with ``bytes(msg)`` (CRLF, folded, encoded)."""
    to_address = safe_address(mail.to_address)
    from_address = safe_address(mail.from_address)
    reply_to = safe_address(mail.reply_to)
    if to_address is None:
        raise UnsendableAddress(f"recipient {mail.to_address!r} is not a plain address")
    if from_address is None or reply_to is None:
        raise UnsendableAddress(f"our own address {mail.from_address!r} is not valid")
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(mail.from_name, from_address)
    msg["To"] = _address(mail.to_name, to_address)
    cc = [
        _address(name, safe)
        for address, name in mail.cc
        if (safe := safe_address(address)) and safe != to_address
    ]
    if cc:
        msg["Cc"] = cc
    msg["Reply-To"] = _address(mail.from_name, reply_to)
    msg["Subject"] = clean_header_value(mail.subject, 900)
    msg["Date"] = format_datetime(mail.date)
    msg["Message-ID"] = f"<{mail.message_id}>"
    parent = safe_message_id(mail.in_reply_to)
    if parent:
        msg["In-Reply-To"] = f"<{parent}>"
    references = [r for r in (safe_message_id(x) for x in mail.references) if r]
    references = list(dict.fromkeys(references))[-MAX_REFERENCES:]
    if references:
        msg["References"] = " ".join(f"<{r}>" for r in references)
    if mail.auto_submitted:
        msg["Auto-Submitted"] = clean_header_value(mail.auto_submitted, 40)
    msg["X-Auto-Response-Suppress"] = "All"
    if mail.ticket_reference:
        # Our marker: the loop guard calls any mail with an X-Mailtriage-* header "own".
        msg["X-Mailtriage-Ticket"] = clean_header_value(mail.ticket_reference, 40)
    if mail.kind:
        msg["X-Mailtriage-Kind"] = clean_header_value(mail.kind, 40)
    msg.set_content(mail.text, charset="utf-8")
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html", charset="utf-8")
    for attachment in mail.attachments:
        maintype, subtype = _content_type(attachment.content_type)
        msg.add_attachment(
            attachment.data,
            maintype=maintype,
            subtype=subtype,
            filename=clean_header_value(attachment.filename, 200) or "attachment",
        )
    for part in msg.walk():  # the email package repeats it in each part
        if part is not msg:
            del part["MIME-Version"]
    language = clean_header_value(mail.language, 20)
    if re.fullmatch(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*", language):
        msg["Content-Language"] = language  # after set_content, which drops Content-*
    check_head(bytes(msg))
    return msg


_CONTENT_TYPE_RE = re.compile(r"([a-z0-9][a-z0-9.+-]{0,63})/([a-z0-9][a-z0-9.+-]{0,126})")


def _content_type(value: str) -> tuple[str, str]:
    """A plain ``type/subtype`` from a stored value, else application/octet-stream."""
    match = _CONTENT_TYPE_RE.fullmatch((value or "").strip().lower())
    if not match or match.group(1) in ("multipart", "message"):
        return "application", "octet-stream"
    return match.group(1), match.group(2)


_HEADER_LINE_RE = re.compile(rb"([A-Za-z0-9-]+):")


def check_head(raw: bytes) -> None:
    """Raise if the header block has a line that is neither one of the headers we write
    nor a continuation: the last line of defence against header injection."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        match = _HEADER_LINE_RE.match(line)
        if not match or match.group(1).decode().lower() not in _OUR_HEADERS:
            raise UnsendableAddress(f"unexpected header line {line[:60]!r}")
        if b"\r" in line or b"\n" in line:  # pragma: no cover - split removed them
            raise UnsendableAddress("bare CR or LF in a header")


_OUR_HEADERS = frozenset(
    {
        "from", "to", "cc", "reply-to", "subject", "date", "message-id", "in-reply-to",
        "references", "auto-submitted", "x-auto-response-suppress", "content-language",
        "x-mailtriage-ticket", "x-mailtriage-kind", "mime-version", "content-type",
        "content-transfer-encoding",
    }
)  # fmt: skip


def _address(name: str, addr_spec: str) -> Address:
    return Address(display_name=clean_header_value(name, 200), addr_spec=addr_spec)
