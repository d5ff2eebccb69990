"""Raw RFC 5322 bytes -> ParsedMessage, a frozen value with everything later stages need.

Header decoding (RFC 2047, address lists, dates) is mail-parser's; the MIME walk for
bodies and attachments is ours so that attachment bytes stay bytes (mail-parser
base64-encodes them into strings, which doubles memory on large mails) and charset
repair, nested ``message/rfc822`` and TNEF are handled in one place.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.feedparser
import email.header
import email.message
import email.parser
import email.utils
import hashlib
import io
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from email.policy import compat32
from pathlib import Path
from typing import Any

import charset_normalizer
import mailparser
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from PIL import Image, UnidentifiedImageError

_HTML_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=False)
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
_WS_RE = re.compile(r"[ \t]+\n")
_OBS_COLON_RE = re.compile(rb"(?m)^([!-9;-~]+)[ \t]+:")
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")


class ParseError(Exception):
    """The bytes are not a message we can work with (permanent: quarantine)."""


class MessageTooLarge(ParseError):
    """A message or one of its attachments is over a configured size cap."""


@dataclass(frozen=True)
class ParseLimits:
    max_message_bytes: int = 64 * 1024 * 1024
    max_attachment_bytes: int = 32 * 1024 * 1024
    # An image smaller than this in either dimension, or with fewer pixels than
    # min_screenshot_pixels, is a logo, icon or tracking pixel, not a screenshot.
    min_screenshot_side: int = 120
    min_screenshot_pixels: int = 200 * 150
    max_nesting: int = 20


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    size: int
    sha256: str
    # The bytes; empty once they are in the blob store (see without_data()), so a
    # parse result crossing a process boundary does not carry megabytes.
    data: bytes | bytearray = field(repr=False, default=b"")
    is_inline: bool = False
    content_id: str | None = None
    is_screenshot: bool = False
    width: int | None = None
    height: int | None = None

    def without_data(self) -> ParsedAttachment:
        return replace(self, data=b"")


@dataclass(frozen=True)
class ParsedMessage:
    subject: str
    sender: str  # lower-cased address, "" when there is none
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    date: datetime | None
    message_id: str | None  # normalised: without angle brackets
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # plain text body; HTML converted when there is no plain part
    html: str | None
    attachments: tuple[ParsedAttachment, ...]
    defects: tuple[str, ...]
    content_key: str  # sha256 over what a transport does not change (see content_key())
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]


def normalise_message_id(value: str | None) -> str | None:
    """``<abc@x>`` -> ``abc@x``; junk or empty -> None."""
    if not value:
        return None
    value = str(value).strip()
    found = _MSGID_RE.search(value)
    ident = found.group(1) if found else value.strip("<> \t\r\n")
    if not ident or any(ch.isspace() for ch in ident):
        return None
    return ident[:900]


def message_ids(value: str | None) -> tuple[str, ...]:
    """All Message-IDs in a References/In-Reply-To header, in order, deduplicated."""
    if not value:
        return ()
    found = _MSGID_RE.findall(str(value))
    if not found:
        one = normalise_message_id(value)
        found = [one] if one else []
    seen: dict[str, None] = {}
    for ident in found:
        seen.setdefault(ident[:900], None)
    return tuple(seen)


RawInput = bytes | Path

# Base64 bodies at least this large are not fed through the stdlib's line-by-line
# feed parser; they are decoded straight from the raw bytes (see _parse).
DEFER_BASE64_BYTES = 64 * 1024
_DEFERRED = "x-mailtriage-deferred-base64:"
_B64_CTE_RE = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?$")
_B64_BODY_RE = re.compile(rb"[A-Za-z0-9+/=\r\n]*")
_MESSAGE_TYPE_RE = re.compile(rb"(?im)^content-type:[ \t]*message/")


@dataclass
class _Loaded:
    msg: Message
    raw: bytes
    # placeholder payload -> (start, end) of the base64 text in raw
    deferred: dict[str, tuple[int, int]]


def content_key(raw: bytes) -> str:
    """Hash of what identifies a message's content across transports.

    The same mail fetched over IMAP and received over SMTP differs in its trace
    headers (Received, Return-Path, Delivered-To) and sometimes in line endings;
    From, Subject, Date and the body bytes do not.
    """
    raw = _strip_leading_blank(raw)
    match = _HEAD_END_RE.search(raw)
    head = email.parser.BytesHeaderParser(policy=compat32).parsebytes(
        raw[: match.end()] if match else raw
    )
    return _content_key(head, raw)


def _content_key(msg: Message, raw: bytes) -> str:
    digest = hashlib.sha256()
    for name in ("from", "subject", "date", "content-type"):
        digest.update(_header_str(msg.get(name, "")).strip().encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    match = _HEAD_END_RE.search(raw)
    if not match:
        return digest.hexdigest()
    body = memoryview(raw)[match.end() :]
    pending = b""  # trailing white space, hashed only if more text follows
    carry_cr = False
    step = 1 << 20
    for offset in range(0, len(body), step):
        chunk = bytes(body[offset : offset + step])
        if carry_cr:
            chunk = b"\r" + chunk
        carry_cr = chunk.endswith(b"\r")
        if carry_cr:
            chunk = chunk[:-1]
        norm = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        text = norm.rstrip()
        if text:
            digest.update(pending + text)
            pending = norm[len(text) :]
        else:
            pending += norm
    return digest.hexdigest()


def _strip_leading_blank(raw: bytes) -> bytes:
    """Some files start with blank lines, which would end the header block at once."""
    return raw.lstrip(b" \t\r\n") if raw[:1] in (b" ", b"\t", b"\r", b"\n") else raw


def _read(raw: RawInput, limits: ParseLimits) -> bytes:
    size = len(raw) if isinstance(raw, bytes) else raw.stat().st_size
    if size > limits.max_message_bytes:
        raise MessageTooLarge(
            f"message is {size} bytes, over the cap of {limits.max_message_bytes} bytes"
        )
    data = _strip_leading_blank(raw if isinstance(raw, bytes) else raw.read_bytes())
    if not data:
        raise ParseError("empty message")
    return data


def _load(raw_input: RawInput, limits: ParseLimits) -> _Loaded:
    raw = _read(raw_input, limits)
    msg, deferred = _parse(raw)
    if not msg.keys():
        # RFC 5322 obsolete syntax allows white space before the colon.
        head, body = _split_head(raw)
        raw = _OBS_COLON_RE.sub(rb"\1:", head) + b"\n\n" + body
        msg, deferred = _parse(raw)
    if not msg.keys():
        raise ParseError("no headers found: not an RFC 5322 message")
    return _Loaded(msg, raw, deferred)


def _parse(raw: bytes) -> tuple[Message, dict[str, tuple[int, int]]]:
    """The stdlib's feed parser, except for large base64 bodies.

    The feed parser handles a body line by line in Python: a 50 MB attachment is
    700,000 lines, which costs far more time (and a str object per line) than the
    MIME structure around it. A body that a Content-Transfer-Encoding: base64 header
    block introduces, that runs to the next boundary line and holds nothing but
    base64, is replaced by a placeholder for the parser and decoded later straight
    from the raw bytes (_Walker._decode). Everything else is parsed as usual.
    """
    parser = email.feedparser.BytesFeedParser(policy=compat32)
    deferred: dict[str, tuple[int, int]] = {}
    pos = scan = 0
    while cte := _B64_CTE_RE.search(raw, scan):
        head_end = _HEAD_END_RE.search(raw, cte.end())
        if head_end is None:
            break
        start = scan = head_end.end()
        end = raw.find(b"\n--", start)  # bytes.find: memchr speed, unlike a regex
        if end < 0:
            end = len(raw)
        elif raw[end - 1 : end] == b"\r":
            end -= 1
        if end - start < DEFER_BASE64_BYTES or not _looks_base64(raw, start, end):
            continue
        block_start = max(raw.rfind(b"\n\n", 0, cte.start()), raw.rfind(b"\n--", 0, cte.start()))
        if _MESSAGE_TYPE_RE.search(raw, max(block_start, 0), start):
            continue  # an encoded message/rfc822 is parsed as a message, see _attachment
        key = f"{_DEFERRED}{len(deferred)}"
        parser.feed(raw[pos:start])
        parser.feed(key.encode("ascii"))
        deferred[key] = (start, end)
        pos = scan = end
    parser.feed(raw[pos:] if pos else raw)
    return parser.close(), deferred


def _looks_base64(raw: bytes, start: int, end: int) -> bool:
    """Head and tail of the body are base64 text (a CTE line quoted in a text body
    is followed by prose). The middle is not scanned: like the stdlib, the decoder
    skips stray characters there."""
    return bool(
        _B64_BODY_RE.fullmatch(raw, start, min(end, start + 4096))
        and _B64_BODY_RE.fullmatch(raw, max(start, end - 4096), end)
    )


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    match = _HEAD_END_RE.search(raw)
    if not match:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def parse_message(raw: RawInput, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse raw bytes. Raises ParseError (or MessageTooLarge) for permanent failures."""
    return parse_loaded(raw, limits or ParseLimits())[1]


def parse_loaded(raw: RawInput, limits: ParseLimits) -> tuple[Message, ParsedMessage]:
    """The stdlib Message (for the loop guard, which reads headers and small parts)
    and the ParsedMessage."""
    loaded = _load(raw, limits)
    key = _content_key(loaded.msg, loaded.raw)
    header_info = _parse_headers(loaded.msg)
    walker = _Walker(limits, loaded)
    walker.walk(loaded.msg, depth=0, inside_attachment=False)
    text = "\n\n".join(t for t in walker.plain if t.strip())
    html = "\n".join(walker.html) if walker.html else None
    if not text.strip() and html:
        text = html_to_text(html)
    text = _WS_RE.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    defects = tuple(header_info.pop("defects")) + tuple(walker.defects)
    parsed = ParsedMessage(
        text=text,
        html=html,
        attachments=tuple(walker.attachments),
        defects=defects,
        content_key=key,
        **header_info,
    )
    return loaded.msg, parsed


def html_to_text(html: str) -> str:
    """Readable text from HTML (layout-aware: tables, lists, line breaks)."""
    try:
        return str(get_text(html, _HTML_CONFIG))
    except Exception:  # inscriptis is robust, but lxml can reject pathological input
        from lxml import html as lxml_html  # inscriptis depends on lxml

        return str(lxml_html.fromstring(html).text_content()) if html.strip() else ""


def _parse_headers(msg: Message) -> dict[str, Any]:
    # mail-parser decodes the headers; it gets them without the body (and without
    # the MIME headers that would make it walk one), since the body is ours.
    head = email.message.Message()
    for name, value in msg.raw_items():
        if name.lower() in _HEADERS_FOR_MAILPARSER:
            head[name] = decode_8bit_header(str(value))  # SMTPUTF8 / RFC 6532 headers
    head.set_payload("")
    parser = mailparser.MailParser(message=head)  # parses in __init__
    from_ = _raw_addresses(msg, "from")
    sender_name, sender = from_[0] if from_ else ("", "")
    defects = [
        f"header: {d}" for d in (*parser.address_header_defects, *parser.date_header_defects)
    ]
    date = parser.date
    if isinstance(date, datetime) and date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    return {
        "subject": " ".join(str(parser.subject or "").split()),
        "sender": sender.strip().lower(),
        "sender_name": sender_name.strip(),
        "to": tuple(a for _, a in _raw_addresses(msg, "to")),
        "cc": tuple(a for _, a in _raw_addresses(msg, "cc")),
        "reply_to": tuple(a for _, a in _raw_addresses(msg, "reply-to")),
        "date": date if isinstance(date, datetime) else None,
        "message_id": normalise_message_id(_header_str(msg.get("message-id"))),
        "in_reply_to": message_ids(_header_str(msg.get("in-reply-to"))),
        "references": message_ids(_header_str(msg.get("references"))),
        "headers": tuple((k, _header_str(v)) for k, v in msg.items()),
        "defects": defects,
    }


# The headers whose decoding we take from mail-parser (it also parses every Received
# line, which is slow and which we do not need).
_HEADERS_FOR_MAILPARSER = frozenset({"from", "to", "cc", "reply-to", "subject", "date"})
# (Addresses themselves are read from the raw headers, see _raw_addresses.)


def _raw_addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of an address header.

    The addresses come from the header as sent: an address is never an encoded word,
    and decoding first (as mail-parser does) lets a display name such as
    ``=?utf-8?q?boss=40bank.example?=`` pose as the address. Only the display
    names are decoded.
    """
    result = []
    for key, value in msg.raw_items():
        if key.lower() != name:
            continue
        text = decode_8bit_header(str(value))
        pairs = email.utils.getaddresses([text])
        # "alice@example.com <bob@example.com>": the address is the one in <>, the
        # other is an unquoted display name.
        posing = set(_POSING_NAME_RE.findall(text)) - set(_ANGLE_ADDR_RE.findall(text))
        pairs = [(d, a) for d, a in pairs if a not in posing]
        known = {a.lower() for _, a in pairs}
        pairs += [("", a) for a in _ANGLE_ADDR_RE.findall(text) if a.lower() not in known]
        for display, addr in pairs:
            cleaned = _clean_address(addr)
            if cleaned:
                result.append((_decode_words(display), cleaned))
    return result


_ANGLE_ADDR_RE = re.compile(r"<([^<>@\s]+@[^<>\s]+)>")
_POSING_NAME_RE = re.compile(r"([^\s<>,\"]+@[^\s<>,\"]+)\s*<")


def _clean_address(addr: str) -> str:
    """A usable lower-cased address, or "" (no local part, no domain)."""
    addr = addr.strip().strip(".").lower()
    if not addr.startswith('"') and any(ch.isspace() for ch in addr):
        addr = addr.split()[-1]  # "big bug bb@bug.com": unquoted words before it
    local, _, domain = addr.rpartition("@")
    if not local or not domain:
        return ""
    return addr


def decode_8bit_header(value: str) -> str:
    """8-bit header bytes (RFC 6532 UTF-8, or a legacy charset) as text."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _decode_words(value: str) -> str:
    try:
        return " ".join(str(email.header.make_header(email.header.decode_header(value))).split())
    except (ValueError, LookupError, UnicodeError):
        return value


def _header_str(value: Any) -> str:
    """A header value as text; compat32 yields Header objects for 8-bit values."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # email.header.Header.__str__ fails on some broken encodings
        chunks = getattr(value, "_chunks", [])
        return "".join(str(c[0]) for c in chunks)


def decode_text_part(part: Message, payload: bytes | bytearray) -> tuple[str, str | None]:
    """Decode a text part's bytes; returns (text, defect or None).

    Trusts the declared charset when the bytes decode cleanly with it; otherwise
    (missing, unknown or wrong charset) charset-normalizer picks the encoding.
    """
    if not payload:
        return "", None
    declared = part.get_content_charset()
    if declared:
        try:
            return payload.decode(declared), None
        except (LookupError, UnicodeDecodeError):
            pass
    else:
        try:
            return payload.decode("ascii"), None
        except UnicodeDecodeError:
            pass
    best = charset_normalizer.from_bytes(payload).best()
    if best is not None:
        return str(best), f"charset: declared {declared!r} did not decode; used {best.encoding}"
    return payload.decode("utf-8", "replace"), f"charset: undecodable text (declared {declared!r})"


class _Walker:
    """Collects body text and attachments from a MIME tree in one pass."""

    def __init__(self, limits: ParseLimits, loaded: _Loaded) -> None:
        self.limits = limits
        self.loaded = loaded
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.defects: list[str] = []

    def walk(self, part: Message, depth: int, inside_attachment: bool) -> None:
        for defect in getattr(part, "defects", ()) or ():
            self.defects.append(f"mime: {type(defect).__name__}")
        if depth > self.limits.max_nesting:
            self.defects.append("mime: nesting too deep; inner parts kept only in the raw message")
            return
        ctype = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = _filename(part)
        if ctype in ("message/rfc822", "message/global"):
            self._attachment(part, ctype, disposition, filename, depth)
            return
        if part.is_multipart():
            payload = part.get_payload()
            children = payload if isinstance(payload, list) else []
            if ctype == "multipart/alternative" and not inside_attachment:
                self._walk_alternative(children, depth)
                return
            for child in children:
                if isinstance(child, Message):
                    self.walk(child, depth + 1, inside_attachment)
            return
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text, defect = decode_text_part(part, self._decode(part))
            if defect:
                self.defects.append(defect)
            (self.plain if ctype == "text/plain" else self.html).append(text)
            return
        self._attachment(part, ctype, disposition, filename, depth)

    def _walk_alternative(self, children: list[Any], depth: int) -> None:
        """Prefer text/plain; keep HTML for display; walk nested alternatives."""
        before_plain = len(self.plain)
        for child in children:
            if isinstance(child, Message):
                self.walk(child, depth + 1, inside_attachment=False)
        if len(self.plain) > before_plain:
            return
        # no plain alternative: the HTML we collected becomes the text later

    def _attachment(
        self, part: Message, ctype: str, disposition: str, filename: str, depth: int
    ) -> None:
        if ctype == "message/rfc822" or ctype == "message/global":
            # A forwarded mail: keep it whole as an .eml and walk its parts.
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else None
            cte = _header_str(part.get("content-transfer-encoding")).strip().lower()
            if cte in ("base64", "quoted-printable") and isinstance(inner_msg, Message):
                # Encoded message/rfc822 is invalid (RFC 2046 5.2.1) but clients send it.
                inner_msg = _decode_encoded_rfc822(inner_msg, cte)
            if isinstance(inner_msg, Message):
                serialised = self._serialise(inner_msg)
                name = filename or _eml_name(inner_msg)
                self._add(
                    _make_attachment(
                        name, "message/rfc822", serialised, False, None, self.limits, sniff=False
                    )
                )
                self.walk(inner_msg, depth + 1, inside_attachment=True)
            return
        data = self._decode(part)
        content_id = normalise_message_id(_header_str(part.get("content-id")))
        is_inline = disposition == "inline" or (disposition != "attachment" and bool(content_id))
        name = filename or _default_name(ctype, content_id)
        if ctype == "application/ms-tnef" or name.lower() == "winmail.dat":
            unpacked = list(_tnef_files(data, self.limits))
            if unpacked:
                for att in unpacked:
                    self._add(att)
                return
            self.defects.append("tnef: winmail.dat could not be unpacked; kept as is")
        self._add(_make_attachment(name, ctype, data, is_inline, content_id, self.limits))

    def _deferred_span(self, part: Message) -> tuple[int, int] | None:
        payload = part.get_payload()
        if isinstance(payload, str) and payload.startswith(_DEFERRED):
            return self.loaded.deferred.get(payload.strip())
        return None

    def _decode(self, part: Message) -> bytes | bytearray:
        """A leaf part's bytes; deferred base64 bodies straight from the raw bytes."""
        span = self._deferred_span(part)
        if span is not None:
            try:
                return _b64decode_span(self.loaded.raw, *span)
            except (ValueError, binascii.Error):
                self.defects.append("base64: invalid body; kept undecoded")
                return self.loaded.raw[span[0] : span[1]]
        data = part.get_payload(decode=True)
        return data if isinstance(data, bytes) else b""

    def _serialise(self, msg: Message) -> bytes:
        """A nested message as .eml bytes, with deferred base64 bodies put back."""
        for part in msg.walk():
            span = self._deferred_span(part)
            if span is not None:
                part.set_payload(self.loaded.raw[span[0] : span[1]].decode("ascii"))
        try:
            return msg.as_bytes(policy=compat32)
        except Exception:  # the generator fails on some broken trees: keep the parts
            self.defects.append("mime: nested message could not be serialised")
            return b""

    def _add(self, att: ParsedAttachment) -> None:
        if att.size > self.limits.max_attachment_bytes:
            raise MessageTooLarge(
                f"attachment {att.filename!r} is {att.size} bytes, over the cap of "
                f"{self.limits.max_attachment_bytes} bytes"
            )
        self.attachments.append(att)


def _b64decode_span(raw: bytes, start: int, end: int, step: int = 1 << 20) -> bytearray:
    """Decode base64 text raw[start:end] slice by slice (line breaks carry no data).

    A bytearray grown in place, so a large attachment exists once, not as a list of
    slices plus their join.
    """
    view = memoryview(raw)
    out = bytearray()
    rest = b""
    for offset in range(start, end, step):
        chunk = rest + bytes(view[offset : min(offset + step, end)]).translate(None, b"\r\n")
        cut = len(chunk) - len(chunk) % 4
        out += binascii.a2b_base64(chunk[:cut])
        rest = chunk[cut:]
    if rest.strip(b"="):
        out += binascii.a2b_base64(rest + b"=" * (-len(rest) % 4))
    return out


def _decode_encoded_rfc822(parsed_as_text: Message, cte: str) -> Message:
    encoded = parsed_as_text.as_bytes(policy=compat32)
    try:
        data = base64.b64decode(encoded) if cte == "base64" else quopri.decodestring(encoded)
    except (ValueError, binascii.Error):
        return parsed_as_text
    return email.message_from_bytes(data, policy=compat32)


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        return ""
    decoded = mailparser.utils.decode_header_part(name) if hasattr(mailparser, "utils") else name
    return " ".join(str(decoded).replace("/", "_").replace("\\", "_").split())[:255]


def _eml_name(msg: Message) -> str:
    subject = " ".join(_header_str(msg.get("subject")).split())[:80]
    return f"{subject or 'forwarded message'}.eml"


_EXT = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/html": "html",
    "text/calendar": "ics",
    "message/delivery-status": "txt",
    "text/rfc822-headers": "txt",
}


def _default_name(ctype: str, content_id: str | None) -> str:
    stem = (content_id or "part").split("@")[0][:60] or "part"
    return f"{stem}.{_EXT.get(ctype, 'bin')}"


def _make_attachment(
    name: str,
    ctype: str,
    data: bytes | bytearray,
    is_inline: bool,
    content_id: str | None,
    limits: ParseLimits,
    *,
    sniff: bool = True,
) -> ParsedAttachment:
    width, height, real_type = image_size(data) if sniff else (None, None, None)
    if real_type:
        ctype = real_type
    is_screenshot = (
        width is not None
        and height is not None
        and min(width, height) >= limits.min_screenshot_side
        and width * height >= limits.min_screenshot_pixels
    )
    return ParsedAttachment(
        filename=name,
        content_type=ctype,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        is_inline=is_inline,
        content_id=content_id,
        is_screenshot=is_screenshot,
        width=width,
        height=height,
    )


_IMAGE_MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
}


_IMAGE_HEADER_BYTES = 256 * 1024


def image_size(data: bytes | bytearray) -> tuple[int | None, int | None, str | None]:
    """(width, height, mime type) when the bytes are an image, by content not name.

    Pillow reads only the header here (``Image.open`` is lazy), so this is cheap
    even for a large screenshot.
    """
    if len(data) < 16:
        return None, None, None
    try:
        # The size is in the first bytes of every format we accept; reading only
        # those keeps a 40 MB attachment from being copied for a look at its header.
        head = bytes(memoryview(data)[:_IMAGE_HEADER_BYTES])
        with Image.open(io.BytesIO(head), formats=tuple(_IMAGE_MIME)) as img:
            mime = _IMAGE_MIME.get(img.format or "")
            if mime is None:
                return None, None, None
            return int(img.width), int(img.height), mime
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None, None, None


def _tnef_files(data: bytes | bytearray, limits: ParseLimits) -> Iterator[ParsedAttachment]:
    try:
        from tnefparse import TNEF

        tnef = TNEF(data)
    except Exception:  # tnefparse raises plain ValueError/struct.error on junk
        return
    for item in tnef.attachments:
        raw = item.data if isinstance(item.data, bytes) else bytes(item.data or b"")
        name = item.long_filename() or item.name or "winmail-part.bin"
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        yield _make_attachment(str(name), "application/octet-stream", raw, False, None, limits)
