"""Raw RFC 5322 bytes -> ParsedMessage, a frozen value with everything later stages need.

One parse, one walk: the stdlib's compat32 parser splits the message (large base64
bodies are decoded straight from the raw bytes), our walk collects body text,
attachments and the facts the loop guard reads (:class:`facts.PartInfo`), and the
header words, charsets and HTML are decoded by :mod:`mailtriage.pipeline.mime`.
mail-parser is not called: we read seven headers, and its full header pass (every
Received line, address parsing) was a third of our parse time.

The parser is total: whatever the bytes, it returns a ParsedMessage (with what it
could not read in ``defects``) or raises ParseError, which the worker quarantines.
No text it returns holds NUL or other control characters.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.errors
import email.feedparser
import email.parser
import email.utils
import quopri
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.policy import compat32
from typing import Any

from mailtriage.pipeline import facts
from mailtriage.pipeline.attachments import (
    ParsedAttachment,
    default_name,
    image_size,
    make_attachment,
    tnef_files,
)
from mailtriage.pipeline.facts import PartInfo
from mailtriage.pipeline.mime import (
    clean,
    decode_8bit_header,
    decode_text,
    decode_words,
    header_text,
    html_to_text,
    message_ids,
    normalise_message_id,
)
from mailtriage.pipeline.rawmail import (
    DEFERRED,
    DEFERRED_BODY,
    b64decode_span,
    content_key,
    content_key_of,
    feed_parse,
    split_head,
    strip_leading_blank,
)

__all__ = [
    "MessageTooLarge",
    "ParseError",
    "ParseLimits",
    "ParsedAttachment",
    "ParsedMessage",
    "PartInfo",
    "content_key",
    "decode_8bit_header",
    "html_to_text",
    "image_size",
    "message_ids",
    "normalise_message_id",
    "parse_message",
]

_WS_RE = re.compile(r"[ \t]+\n")
_OBS_COLON_RE = re.compile(rb"(?m)^([!-9;-~]+)[ \t]+:")


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
    # (name, value) of the top-level header lines, 8-bit decoded, control characters removed
    headers: tuple[tuple[str, str], ...] = ()
    # the message's own MIME tree as the loop guard reads it; parts[0] is the message
    parts: tuple[PartInfo, ...] = field(default=(), repr=False)

    @property
    def sender_domain(self) -> str:
        return self.sender.rpartition("@")[2]


@dataclass
class _Loaded:
    msg: Message
    raw: bytes
    # placeholder payload -> (start, end) of the base64 text in raw
    deferred: dict[str, tuple[int, int]]


def _checked(raw: bytes, limits: ParseLimits) -> bytes:
    if len(raw) > limits.max_message_bytes:
        raise MessageTooLarge(
            f"message is {len(raw)} bytes, over the cap of {limits.max_message_bytes} bytes"
        )
    data = strip_leading_blank(raw)
    if not data:
        raise ParseError("empty message")
    return data


def _load(raw_input: bytes, limits: ParseLimits) -> _Loaded:
    raw = _checked(raw_input, limits)
    msg, deferred = feed_parse(raw)
    if not msg.keys():
        # RFC 5322 obsolete syntax allows white space before the colon.
        head, body = split_head(raw)
        raw = _OBS_COLON_RE.sub(rb"\1:", head) + b"\n\n" + body
        msg, deferred = feed_parse(raw)
    if not msg.keys():
        raise ParseError("no headers found: not an RFC 5322 message")
    return _Loaded(msg, raw, deferred)


def parse_message(raw: bytes, limits: ParseLimits | None = None) -> ParsedMessage:
    """Parse raw bytes. Raises ParseError (or MessageTooLarge) for permanent failures,
    and nothing else: a deterministic failure of the stdlib's parser or of a decoder
    on these bytes is permanent too, so it must not look like a transient error."""
    try:
        return _parse_message(raw, limits or ParseLimits())
    except ParseError:
        raise
    except _DETERMINISTIC as exc:
        raise ParseError(f"unreadable message: {type(exc).__name__}: {exc}") from exc


# HTML converted to text for a message without a plain part (inscriptis does about
# 3 MB/s; the HTML itself is kept whole).
MAX_HTML_TO_TEXT = 4 * 1024 * 1024

# What the stdlib's parser and the decoders raise on bad bytes (HeaderParseError,
# CharsetError, "embedded null character", binascii.Error, struct.error, a tree too
# deep to recurse). Not TypeError or AttributeError: those are our bugs, and the
# worker's retry-then-quarantine is the right answer to a bug.
_DETERMINISTIC = (
    email.errors.MessageError,
    ValueError,
    LookupError,
    struct.error,
    RecursionError,
)


def _parse_message(raw: bytes, limits: ParseLimits) -> ParsedMessage:
    loaded = _load(raw, limits)
    key = content_key_of(loaded.msg, loaded.raw)
    header_info = _parse_headers(loaded.msg)
    walker = _Walker(limits, loaded)
    walker.walk(loaded.msg, depth=0, inside_attachment=False)
    text = "\n\n".join(t for t in walker.plain if t.strip())
    html = "\n".join(walker.html) if walker.html else None
    from_html = not text.strip() and bool(html)
    if html and from_html:
        if len(html) > MAX_HTML_TO_TEXT:
            walker.defects.append(f"html: only the first {MAX_HTML_TO_TEXT} characters as text")
        text = html_to_text(html[:MAX_HTML_TO_TEXT])
    text = _WS_RE.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    parts = walker.part_infos(text if from_html else None)
    defects = tuple(header_info.pop("defects")) + tuple(walker.defects)
    return ParsedMessage(
        text=text,
        html=html,
        attachments=tuple(walker.attachments),
        defects=defects,
        content_key=key,
        parts=parts,
        **header_info,
    )


def _first_raw(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name:
            return decode_8bit_header(header_text(value))
    return None


def _parse_headers(msg: Message) -> dict[str, Any]:
    defects: list[str] = []
    from_ = _raw_addresses(msg, "from")
    sender_name, sender = from_[0] if from_ else ("", "")
    date, date_defect = _parse_date(_first_raw(msg, "date"))
    if date_defect:
        defects.append(date_defect)
    headers = tuple(
        (clean(str(k)), clean(decode_8bit_header(header_text(v)))) for k, v in msg.raw_items()
    )
    return {
        "subject": " ".join(clean(decode_words(_first_raw(msg, "subject") or "")).split()),
        "sender": sender,
        "sender_name": sender_name,
        "to": tuple(a for _, a in _raw_addresses(msg, "to")),
        "cc": tuple(a for _, a in _raw_addresses(msg, "cc")),
        "reply_to": tuple(a for _, a in _raw_addresses(msg, "reply-to")),
        "date": date,
        "message_id": normalise_message_id(_first_raw(msg, "message-id")),
        "in_reply_to": message_ids(_first_raw(msg, "in-reply-to")),
        "references": message_ids(_first_raw(msg, "references")),
        "headers": headers,
        "defects": defects,
    }


def _parse_date(value: str | None) -> tuple[datetime | None, str | None]:
    """A Date header as an aware UTC datetime; (None, defect) when unreadable."""
    if not value or not value.strip():
        return None, None
    try:
        date = email.utils.parsedate_to_datetime(clean(value).strip())
        if date.tzinfo is None:  # "-0000": the zone is unknown
            date = date.replace(tzinfo=UTC)
        return date.astimezone(UTC), None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None, f"header: unreadable Date {value.strip()[:80]!r}"


def _raw_addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs of an address header.

    The addresses come from the header as sent: an address is never an encoded word,
    and decoding first lets a display name such as ``=?utf-8?q?boss=40bank.example?=``
    pose as the address. Only the display names are decoded.
    """
    result = []
    for key, value in msg.raw_items():
        if key.lower() != name:
            continue
        text = clean(decode_8bit_header(header_text(value)))
        try:
            pairs = email.utils.getaddresses([text])
        except (ValueError, IndexError, TypeError):
            pairs = []
        # "alice@example.com <bob@example.com>": the address is the one in <>, the
        # other is an unquoted display name.
        posing = set(_POSING_NAME_RE.findall(text)) - set(_ANGLE_ADDR_RE.findall(text))
        pairs = [(d, a) for d, a in pairs if a not in posing]
        known = {a.lower() for _, a in pairs}
        pairs += [("", a) for a in _ANGLE_ADDR_RE.findall(text) if a.lower() not in known]
        for display, addr in pairs:
            cleaned = _clean_address(addr)
            if cleaned:
                result.append((" ".join(clean(decode_words(display)).split()), cleaned))
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


def _content_charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except (LookupError, ValueError, TypeError, email.errors.MessageError):
        return None


def decode_text_part(part: Message, payload: bytes | bytearray) -> tuple[str, str | None]:
    """Decode a text part's bytes; returns (text, defect or None). See mime.decode_text."""
    return decode_text(payload, _content_charset(part))


@dataclass
class _Draft:
    """A PartInfo being recorded during the walk."""

    part: Message
    ctype: str
    params: str
    headers: facts.Headers
    is_attachment: bool
    text: str | None = None
    tnef_head: bytes | None = None
    body_html: bool = False  # its HTML is part of ParsedMessage.html


class _Walker:
    """Collects body text, attachments and the loop guard's facts in one pass."""

    def __init__(self, limits: ParseLimits, loaded: _Loaded) -> None:
        self.limits = limits
        self.loaded = loaded
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.defects: list[str] = []
        self.drafts: list[_Draft] = []
        self._current: _Draft | None = None

    def walk(self, part: Message, depth: int, inside_attachment: bool) -> None:
        self._walk(part, depth, inside_attachment, record=not inside_attachment)

    def _record(self, part: Message, depth: int, record: bool) -> tuple[_Draft | None, bool]:
        """Record ``part`` for the loop guard; also says whether its children count."""
        if not record or len(self.drafts) >= facts.MAX_PARTS:
            return None, False
        headers = facts.raw_headers(part)
        try:
            default = str(part.get_default_type())
        except (AttributeError, TypeError):
            default = "text/plain"
        ctype, params = facts.content_type_of(headers, default)
        draft = _Draft(part, ctype, params, headers, facts.is_attachment(ctype, params, headers))
        self.drafts.append(draft)
        return draft, ctype.startswith("multipart/") and depth < facts.MAX_DEPTH

    def _walk(self, part: Message, depth: int, inside_attachment: bool, record: bool) -> None:
        for defect in getattr(part, "defects", ()) or ():
            self.defects.append(f"mime: {type(defect).__name__}")
        if depth > self.limits.max_nesting:
            self.defects.append("mime: nesting too deep; inner parts kept only in the raw message")
            return
        draft, record_children = self._record(part, depth, record)
        self._current = draft
        ctype = clean(part.get_content_type())
        disposition = (_content_disposition(part) or "").lower()
        filename = _filename(part)
        if ctype in ("message/rfc822", "message/global"):
            self._attachment(part, ctype, disposition, filename, depth)
            return
        if part.is_multipart():
            payload = part.get_payload()
            children = payload if isinstance(payload, list) else []
            for child in children:
                if isinstance(child, Message):
                    self._walk(child, depth + 1, inside_attachment, record_children)
            return
        if ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            text, defect = decode_text_part(part, self._decode(part))
            if defect:
                self.defects.append(defect)
            (self.plain if ctype == "text/plain" else self.html).append(text)
            if draft is not None:
                draft.text = text[: facts.MAX_PART_BYTES]
                draft.body_html = ctype == "text/html"
            return
        self._attachment(part, ctype, disposition, filename, depth)

    def part_infos(self, html_text: str | None) -> tuple[PartInfo, ...]:
        """The recorded parts as frozen values (text decoded only where the loop guard
        reads it; HTML converted only when the own tree has no plain text).

        ``html_text``: the message's text when it was converted from all of its HTML,
        reused when the own tree holds all the HTML (no second conversion)."""
        inline = [
            d
            for d in self.drafts
            if not d.is_attachment
            and (
                d.ctype in ("text/plain", "text/html")
                or (d.ctype.startswith("multipart/") and not facts.subparts(d.part))
            )
        ]
        texts: dict[int, str] = {}
        for draft in inline:
            if draft.text is None:
                data = bytes(memoryview(self._decode(draft.part))[: facts.MAX_PART_BYTES])
                draft.text = decode_text(data, facts.param(draft.params, "charset"))[0]
            texts[id(draft)] = draft.text[: facts.MAX_PART_TEXT]
        has_plain = any(texts[id(d)].strip() for d in inline if d.ctype != "text/html")
        html_drafts = [d for d in inline if d.ctype == "text/html"]
        if (
            not has_plain
            and html_text is not None
            and len(html_drafts) == len(self.html)
            and all(d.body_html for d in html_drafts)
        ):
            for index, draft in enumerate(html_drafts):
                texts[id(draft)] = "" if index else html_text[: facts.MAX_PART_TEXT]
            html_drafts = []
        for draft in html_drafts:
            html = "" if has_plain else (draft.text or "")[: facts.MAX_PART_BYTES]
            texts[id(draft)] = html_to_text(html)[: facts.MAX_PART_TEXT]
        return tuple(self._info(d, texts.get(id(d))) for d in self.drafts)

    def _info(self, draft: _Draft, text: str | None) -> PartInfo:
        ctype = draft.ctype
        fields: tuple[facts.FieldBlock, ...] = ()
        returned = tnef_class = None
        if ctype in facts.REPORT_TYPES:
            fields = facts.report_blocks(draft.part)
        if ctype in facts.RETURNED_TYPES:
            own = text
            if own is None and ctype not in ("message/rfc822", "message/global"):
                data = bytes(memoryview(self._decode(draft.part))[: facts.MAX_PART_BYTES])
                own = decode_text(data, facts.param(draft.params, "charset"))[0]
            returned = facts.returned_message_id(draft.part, ctype, own or "")
        if ctype in facts.TNEF_TYPES:
            head = draft.tnef_head
            if head is None:
                head = bytes(memoryview(self._decode(draft.part))[: facts.TNEF_HEAD])
            tnef_class = facts.tnef_message_class(head)
        return PartInfo(
            content_type=ctype,
            params=draft.params,
            headers=draft.headers,
            is_attachment=draft.is_attachment,
            text=text or "",
            fields=fields,
            returned_message_id=returned,
            tnef_class=tnef_class,
        )

    def _attachment(
        self, part: Message, ctype: str, disposition: str, filename: str, depth: int
    ) -> None:
        if ctype == "message/rfc822" or ctype == "message/global":
            # A forwarded mail: keep it whole as an .eml and walk its parts.
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else None
            cte = header_text(part.get("content-transfer-encoding")).strip().lower()
            if cte in ("base64", "quoted-printable") and isinstance(inner_msg, Message):
                # Encoded message/rfc822 is invalid (RFC 2046 5.2.1) but clients send it.
                inner_msg = _decode_encoded_rfc822(inner_msg, cte)
            if isinstance(inner_msg, Message):
                serialised = self._serialise(inner_msg)
                name = filename or _eml_name(inner_msg)
                self._add(
                    make_attachment(
                        name, "message/rfc822", serialised, False, None, self.limits, sniff=False
                    )
                )
                self.walk(inner_msg, depth + 1, inside_attachment=True)
            return
        draft = self._current
        data = self._decode(part)
        if draft is not None and not draft.is_attachment and draft.ctype.startswith("text/"):
            # text the loop guard reads although we keep it as a file (a named text part)
            draft.text = decode_text(
                bytes(memoryview(data)[: facts.MAX_PART_BYTES]), _content_charset(part)
            )[0]
        if draft is not None and draft.ctype in facts.TNEF_TYPES:
            draft.tnef_head = bytes(memoryview(data)[: facts.TNEF_HEAD])
        content_id = normalise_message_id(header_text(part.get("content-id")))
        is_inline = disposition == "inline" or (disposition != "attachment" and bool(content_id))
        name = filename or default_name(ctype, content_id)
        if ctype == "application/ms-tnef" or name.lower() == "winmail.dat":
            unpacked = list(tnef_files(data, self.limits))
            if unpacked:
                for att in unpacked:
                    self._add(att)
                return
            self.defects.append("tnef: winmail.dat could not be unpacked; kept as is")
        self._add(make_attachment(name, ctype, data, is_inline, content_id, self.limits))

    def _deferred_span(self, part: Message) -> tuple[int, int] | None:
        try:
            payload = part.get_payload()
        except (LookupError, ValueError, TypeError):  # a charset with NUL: not ours
            return None
        if isinstance(payload, str) and payload.startswith((DEFERRED, DEFERRED_BODY)):
            return self.loaded.deferred.get(payload.strip())
        return None

    def _decode(self, part: Message) -> bytes | bytearray:
        """A leaf part's bytes; deferred bodies straight from the raw bytes."""
        span = self._deferred_span(part)
        if span is not None and DEFERRED_BODY in self.loaded.deferred:
            body = self.loaded.raw[span[0] : span[1]]
            cte = header_text(part.get("content-transfer-encoding")).strip().lower()
            return binascii.a2b_qp(body) if cte == "quoted-printable" else body
        if span is not None:
            try:
                return b64decode_span(self.loaded.raw, *span)
            except (ValueError, binascii.Error):
                self.defects.append("base64: invalid body; kept undecoded")
                return self.loaded.raw[span[0] : span[1]]
        try:
            data = part.get_payload(decode=True)
        except (LookupError, ValueError, TypeError, AttributeError, NameError):
            self.defects.append("mime: body could not be decoded; kept as sent")
            data = facts.payload_bytes(part, limit=self.limits.max_attachment_bytes + 1)
        return data if isinstance(data, bytes | bytearray) else b""

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


def _content_disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except (LookupError, ValueError, TypeError, email.errors.MessageError):
        return None


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
    except (LookupError, ValueError, TypeError, email.errors.MessageError):
        name = None
    if not name:
        return ""
    decoded = clean(decode_words(str(name)))
    return " ".join(decoded.replace("/", "_").replace("\\", "_").split())[:255]


def _eml_name(msg: Message) -> str:
    subject = " ".join(clean(decode_words(header_text(msg.get("subject")))).split())[:80]
    return f"{subject or 'forwarded message'}.eml"
