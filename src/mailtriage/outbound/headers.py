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
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.contentmanager import raw_data_manager
from email.encoders import encode_base64
from email.header import Header
from email.message import Message, MIMEPart
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.utils import format_datetime, formataddr

__all__ = [
    "MailAttachment",
    "OutgoingMail",
    "clean_header_value",
    "make_message_id",
    "message_bytes",
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
    if not (value.isascii() and value.isprintable()):  # printable ASCII: nothing to map
        value = "".join(
            " " if ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch
            for ch in value
        )
    text = " ".join(value.split()).replace("=?", "= ?")
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


def message_bytes(mail: OutgoingMail) -> bytes:
    """The complete message as it is sent: CRLF line ends, headers folded at 78
    columns, non-ASCII only in RFC 2047 encoded words and transfer encodings.

    Built with the email package's classic (compat32) classes: ``EmailMessage``'s
    header registry parses back every value we set and folds it again on each
    ``bytes()``, which made it the largest CPU cost of an acknowledgement; every value
    here is generated by us or cleaned above (one line, no encoded words, addresses and
    Message-IDs strictly checked), so there is nothing to parse. The text parts get the
    transfer encoding ``set_content`` would choose (the content manager's own choice)."""
    to_address = safe_address(mail.to_address)
    from_address = safe_address(mail.from_address)
    reply_to = safe_address(mail.reply_to)
    if to_address is None:
        raise UnsendableAddress(f"recipient {mail.to_address!r} is not a plain address")
    if from_address is None or reply_to is None:
        raise UnsendableAddress(f"our own address {mail.from_address!r} is not valid")
    body: Message = _text_part(mail.text, "plain")
    if mail.html is not None:
        body = _multipart("alternative", [body, _text_part(mail.html, "html")])
    if mail.attachments:
        body = _multipart("mixed", [body, *map(_attachment_part, mail.attachments)])
    msg = Message(policy=_COMPAT)
    msg["From"] = _mailbox(mail.from_name, from_address, "From")
    msg["To"] = _mailbox(mail.to_name, to_address, "To")
    cc = [
        _mailbox(name, safe, "Cc")
        for address, name in mail.cc
        if (safe := safe_address(address)) and safe != to_address
    ]
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Reply-To"] = _mailbox(mail.from_name, reply_to, "Reply-To")
    msg["Subject"] = _unstructured(clean_header_value(mail.subject, 900), "Subject")
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
        msg["X-Mailtriage-Ticket"] = _unstructured(
            clean_header_value(mail.ticket_reference, 40), "X-Mailtriage-Ticket"
        )
    if mail.kind:
        msg["X-Mailtriage-Kind"] = _unstructured(
            clean_header_value(mail.kind, 40), "X-Mailtriage-Kind"
        )
    msg["MIME-Version"] = "1.0"
    for name, value in body.items():
        msg[name] = value
    language = clean_header_value(mail.language, 20)
    if re.fullmatch(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*", language):
        msg["Content-Language"] = language
    msg.set_payload(body.get_payload())
    raw = msg.as_bytes(policy=_COMPAT)  # (the generator writes every line end as CRLF)
    check_head(raw)
    return raw


# the classic API's policy (no header registry: values are set, not parsed), with the
# CRLF line ends of mail on the wire (also inside base64-encoded text)
_COMPAT = policy.compat32.clone(linesep="\r\n")
_UTF8 = "utf-8"
_WORD_LINE = 75


def _unstructured(value: str, header: str) -> str:
    """A one-line value (Subject): ASCII as it is, else RFC 2047 encoded words."""
    return value if value.isascii() else _encoded_words(value, header)


def _encoded_words(value: str, header: str) -> str:
    """``value`` as UTF-8 encoded words, each within RFC 2047's 75 characters (the
    email package's Header makes lines of up to ``maxlinelen``; a word of a line of
    its own, after the folding space, ends up one longer than asked for). The first
    word is short enough to follow ``header``'s name on its line: a line break right
    after the colon would read back as a leading space."""
    return Header(value, _UTF8, header_name=header).encode(maxlinelen=_WORD_LINE, linesep=" ")


def _mailbox(name: str, addr_spec: str, header: str) -> str:
    """``Name <addr>``: an ASCII name quoted where it must be (``formataddr``), a
    non-ASCII one as encoded words of at most 75 characters (``Header``); no name: the
    bare address."""
    name = clean_header_value(name, 200)
    if name.isascii():
        return formataddr((name, addr_spec))
    return f"{_encoded_words(name, header)} <{addr_spec}>"


def _text_part(text: str, subtype: str) -> Message:
    """A UTF-8 text part with the transfer encoding ``set_content`` picks (7bit/8bit
    when every line fits, else quoted-printable unless base64 is shorter)."""
    part = MIMEPart(policy=_COMPAT)
    raw_data_manager.set_content(part, text, subtype, charset=_UTF8)
    return part


def _attachment_part(attachment: MailAttachment) -> Message:
    """An attachment: base64, its file name RFC 2231-encoded when not ASCII."""
    maintype, subtype = _content_type(attachment.content_type)
    part = MIMEBase(maintype, subtype, policy=_COMPAT)
    del part["MIME-Version"]
    part.set_payload(attachment.data)
    encode_base64(part)
    name = clean_header_value(attachment.filename, 200) or "attachment"
    part.add_header(
        "Content-Disposition",
        "attachment",
        filename=name if name.isascii() else (_UTF8, "", name),
    )
    return part


def _multipart(subtype: str, parts: list[Message]) -> Message:
    """A multipart of ``parts``. Its boundary is a fresh 128-bit secret: a text cannot
    carry it by chance, nor by guessing (the email package's comes from ``random``,
    and its check that no line of the parts repeats it misses CRLF lines)."""
    multipart = MIMEMultipart(subtype, boundary=f"=_{secrets.token_hex(16)}", policy=_COMPAT)
    del multipart["MIME-Version"]
    for part in parts:
        multipart.attach(part)
    return multipart


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
