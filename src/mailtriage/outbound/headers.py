"""Headers and MIME structure of the mail we send (pure).

Every value that comes from a customer (their name, address, subject, Message-IDs) is
cleaned here before it reaches a header: control characters, CR and LF become spaces,
so no value can start a new header line, and the email package encodes what is not
ASCII (RFC 2047 encoded words) and folds long lines. Addresses and Message-IDs must
match a strict pattern or they are dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
import sys
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.charset import Charset
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime

__all__ = [
    "MailAttachment",
    "OutgoingMail",
    "build_message",
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


def build_message(mail: OutgoingMail) -> EmailMessage:
    """The complete message as the email package reads it back (``outbox show``, the
    portal's mail, tests); the sender sends ``message_bytes(mail)`` itself."""
    message = message_from_bytes(message_bytes(mail), policy=policy.SMTP)
    assert isinstance(message, EmailMessage)
    return message


def message_bytes(mail: OutgoingMail) -> bytes:
    """The complete message as it is sent: CRLF line ends, headers folded at 78
    columns, non-ASCII only in RFC 2047 encoded words and transfer encodings.

    Written directly rather than through ``EmailMessage``: its header registry parses
    back every value we set (and folds it again on each ``bytes()``), which made this
    the largest CPU cost of an acknowledgement. Every value here is generated by us
    or cleaned above (one line, no encoded words, addresses and Message-IDs strictly
    checked), so there is nothing to parse. The MIME structure and the transfer
    encodings are what ``EmailMessage.set_content`` chooses (``_text_part``);
    attachments are still written by the email package (RFC 2231 file names)."""
    to_address = safe_address(mail.to_address)
    from_address = safe_address(mail.from_address)
    reply_to = safe_address(mail.reply_to)
    if to_address is None:
        raise UnsendableAddress(f"recipient {mail.to_address!r} is not a plain address")
    if from_address is None or reply_to is None:
        raise UnsendableAddress(f"our own address {mail.from_address!r} is not valid")
    head = [
        _fold("From", _mailbox(mail.from_name, from_address)),
        _fold("To", _mailbox(mail.to_name, to_address)),
    ]
    cc: list[str] = []
    for address, name in mail.cc:
        safe = safe_address(address)
        if safe and safe != to_address:
            if cc:
                cc[-1] += ","
            cc.extend(_mailbox(name, safe))
    if cc:
        head.append(_fold("Cc", cc))
    head.append(_fold("Reply-To", _mailbox(mail.from_name, reply_to)))
    head.append(_fold("Subject", _unstructured(clean_header_value(mail.subject, 900))))
    head.append(f"Date: {format_datetime(mail.date)}")
    head.append(_fold("Message-ID", [f"<{mail.message_id}>"]))
    parent = safe_message_id(mail.in_reply_to)
    if parent:
        head.append(_fold("In-Reply-To", [f"<{parent}>"]))
    references = [r for r in (safe_message_id(x) for x in mail.references) if r]
    references = list(dict.fromkeys(references))[-MAX_REFERENCES:]
    if references:
        head.append(_fold("References", [f"<{r}>" for r in references]))
    if mail.auto_submitted:
        head.append(_fold("Auto-Submitted", [clean_header_value(mail.auto_submitted, 40)]))
    head.append("X-Auto-Response-Suppress: All")
    if mail.ticket_reference:
        # Our marker: the loop guard calls any mail with an X-Mailtriage-* header "own".
        value = clean_header_value(mail.ticket_reference, 40)
        head.append(_fold("X-Mailtriage-Ticket", _unstructured(value)))
    if mail.kind:
        head.append(_fold("X-Mailtriage-Kind", _unstructured(clean_header_value(mail.kind, 40))))
    head.append("MIME-Version: 1.0")
    parts = [_text_part(mail.text, "plain")]
    if mail.html is not None:
        parts = [_multipart("alternative", [parts[0], _text_part(mail.html, "html")])]
    if mail.attachments:
        parts = [_multipart("mixed", [parts[0], *map(_attachment_part, mail.attachments)])]
    part_head, body = parts[0]
    head.extend(part_head)
    language = clean_header_value(mail.language, 20)
    if re.fullmatch(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*", language):
        head.append(f"Content-Language: {language}")
    raw = "\r\n".join(head).encode("ascii") + b"\r\n\r\n" + body
    check_head(raw)
    return raw


# -- the writer behind message_bytes ----------------------------------------------

_MAX_LINE = 78  # RFC 5322's recommended line length (policy.SMTP's max_line_length)
_UTF8 = Charset("utf-8")
# The most UTF-8 bytes in one encoded word: base64 of 45 bytes is 60 characters,
# which with "=?utf-8?b?" and "?=" is 72, within RFC 2047's 75 (and the Q encoding
# is only chosen when shorter).
_WORD_BYTES = 45
# RFC 5322 atext: a display name made of these (and spaces) needs no quoting.
_ATOM_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")


def _fold(name: str, tokens: list[str]) -> str:
    """``Name: token token ...`` folded before a token where a line would pass 78
    columns, also right after the colon (as the email package does); a single longer
    token keeps a line of its own (at most 998 with our limits)."""
    lines = [f"{name}:"]
    for token in tokens:
        if lines[-1] and len(lines[-1]) + 1 + len(token) > _MAX_LINE:
            lines.append("")
        lines[-1] += f" {token}"
    return "\r\n".join(lines)


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 encoded words (UTF-8, Q or B, whichever is shorter), split
    between characters so each word stays within 75 characters."""
    words = []
    chunk = ""
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > _WORD_BYTES:
            words.append(_UTF8.header_encode(chunk))
            chunk, size = "", 0
        chunk += ch
        size += n
    if chunk:
        words.append(_UTF8.header_encode(chunk))
    return words


def _unstructured(value: str) -> list[str]:
    """The words of a cleaned one-line value (Subject): ASCII words as they are, each
    run of non-ASCII words (with the spaces inside the run, which a reader drops
    between adjacent encoded words) as encoded words."""
    if value.isascii():
        return value.split(" ") if value else []
    tokens: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        if word.isascii():
            if run:
                tokens.extend(_encoded_words(" ".join(run)))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens.extend(_encoded_words(" ".join(run)))
    return tokens


def _mailbox(name: str, addr_spec: str) -> list[str]:
    """``Name <addr>`` as tokens: a name of atoms as it is, other ASCII names as a
    quoted string, a non-ASCII name as encoded words; no name: the bare address."""
    name = clean_header_value(name, 200)
    if not name:
        return [addr_spec]
    if not name.isascii():
        tokens = _encoded_words(name)
    elif all(_ATOM_RE.fullmatch(word) for word in name.split(" ")):
        tokens = name.split(" ")
    else:
        tokens = ['"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"']
    return [*tokens, f"<{addr_spec}>"]


def _text_part(text: str, subtype: str) -> tuple[list[str], bytes]:
    """Headers and body of a UTF-8 text part, with the transfer encoding the email
    package's ``set_content`` picks: 7bit or 8bit when every line fits in 78 bytes,
    else quoted-printable unless base64 is shorter (judged on the first ten lines)."""
    lines = text.encode("utf-8").splitlines()
    if max((len(line) for line in lines), default=0) <= _MAX_LINE:
        cte = "7bit" if text.isascii() else "8bit"
        body = b"\r\n".join(lines) + b"\r\n"
    else:
        sniff = b"\n".join(lines[:10]) + b"\n"
        if len(binascii.b2a_qp(sniff, istext=True)) > len(binascii.b2a_base64(sniff)):
            cte = "base64"
            body = base64.encodebytes(b"\r\n".join(lines) + b"\r\n")
        else:
            cte = "quoted-printable"
            body = binascii.b2a_qp(b"\n".join(lines) + b"\n", istext=True)
        body = body.replace(b"\n", b"\r\n")
    head = [f'Content-Type: text/{subtype}; charset="utf-8"', f"Content-Transfer-Encoding: {cte}"]
    return head, body


def _attachment_part(attachment: MailAttachment) -> tuple[list[str], bytes]:
    """An attachment, written by the email package (RFC 2231 file names, base64)."""
    maintype, subtype = _content_type(attachment.content_type)
    part = MIMEPart(policy=policy.SMTP)
    part.set_content(
        attachment.data,
        maintype=maintype,
        subtype=subtype,
        disposition="attachment",
        filename=clean_header_value(attachment.filename, 200) or "attachment",
    )
    raw = part.as_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    return [head.decode("ascii")], body


def _multipart(subtype: str, parts: list[tuple[list[str], bytes]]) -> tuple[list[str], bytes]:
    """A multipart of ``parts``, with a boundary (the email package's form) that no
    part's line starts with."""
    while True:
        boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in body or marker in "\r\n".join(h).encode() for h, body in parts):
            break
    # Each part's body ends with CRLF; the delimiter is another CRLF "--" boundary.
    out = b""
    for head, body in parts:
        out += marker + b"\r\n" + "\r\n".join(head).encode("ascii") + b"\r\n\r\n" + body
        out += b"\r\n"
    out += marker + b"--\r\n"
    return [f"Content-Type: multipart/{subtype};", f' boundary="{boundary}"'], out


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
