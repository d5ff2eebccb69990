"""What the loop guard reads of a message's own MIME tree, as frozen values.

The parser's one walk (parse._Walker) records a :class:`PartInfo` for each part of the
message's own tree (multipart nesting only, never inside an attached ``message/*``),
so :func:`mailtriage.pipeline.loops.detect_loop` needs no second walk over a
``Message`` object. The helpers here are the pure pieces of that recording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from mailtriage.pipeline.mime import (
    clean,
    decode_8bit_header,
    decode_bytes,
    find_message_id,
    header_text,
)

MAX_PARTS = 200  # parts of the own tree recorded
MAX_DEPTH = 16  # multipart nesting followed
MAX_PART_BYTES = 200_000  # bytes decoded per part for the loop guard
MAX_PART_TEXT = 60_000  # characters of text kept per part
TNEF_HEAD = 16_384  # bytes of a winmail.dat read for its message class

REPORT_TYPES = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/feedback-report",
        "message/disposition-notification",
    }
)
RETURNED_TYPES = frozenset(
    {
        "message/rfc822",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global",
        "message/global-headers",
        "message/partial",
    }
)
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})

Headers = tuple[tuple[str, str], ...]
FieldBlock = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PartInfo:
    """One part of the message's own tree, as the loop guard sees it."""

    content_type: str  # lower case, from the raw header (compat32's fallbacks)
    params: str  # the raw parameter string of Content-Type
    headers: Headers  # (lower-case name, value), 8-bit decoded, control characters removed
    is_attachment: bool = False
    #: decoded text (bounded) of inline text parts; HTML already converted
    text: str = ""
    #: field blocks of report parts (delivery-status, feedback, disposition)
    fields: tuple[FieldBlock, ...] = ()
    #: Message-ID of a returned message or returned header block
    returned_message_id: str | None = None
    #: MAPI message class of a TNEF body
    tnef_class: str | None = None


def raw_headers(part: Message) -> Headers:
    """(lower-case name, value) pairs from the raw header lines; never raises."""
    try:
        items = list(part.raw_items())
    except (AttributeError, TypeError):
        return ()
    return tuple(
        (clean(str(name)).strip().casefold(), clean(decode_8bit_header(header_text(value))))
        for name, value in items
    )


def first(headers: Headers, name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


_COMMENT_RE = re.compile(r"\([^)]*\)|\s")


def content_type_of(headers: Headers, default: str) -> tuple[str, str]:
    """(lower-case type, raw parameter string), with compat32's fallbacks."""
    raw = first(headers, "content-type")
    if raw is None:
        return default, ""
    main, _, params = raw.partition(";")
    ctype = _COMMENT_RE.sub("", main).casefold()
    if ctype.count("/") != 1:
        ctype = "text/plain"
    return ctype, params


def param(params: str, name: str) -> str | None:
    match = re.search(
        r"(?:^|;)\s*" + re.escape(name) + r"\*?\s*=\s*(?:\"([^\"]*)\"|([^;\s]*))",
        params,
        re.I,
    )
    if not match:
        return None
    value = match.group(1) if match.group(1) is not None else match.group(2)
    return value.strip() if value else None


def is_attachment(ctype: str, params: str, headers: Headers) -> bool:
    disposition = (first(headers, "content-disposition") or "").strip().casefold()
    if disposition.startswith("attachment"):
        return True
    return bool(param(params, "name")) and not ctype.startswith("text/")


def subparts(part: Message) -> list[Message]:
    try:
        payload = part.get_payload()
    except (LookupError, ValueError, TypeError, AttributeError):
        return []
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def payload_bytes(part: Message, limit: int = MAX_PART_BYTES) -> bytes:
    """Up to ``limit`` decoded bytes of a part; never raises."""
    try:
        data = part.get_payload(decode=True)
    except (LookupError, ValueError, TypeError, AttributeError, NameError):
        # NameError: compat32's get_payload(decode=True) fails with UnboundLocalError on
        # a bytes payload with a quoted-printable or base64 transfer encoding.
        try:
            data = part.get_payload()
        except (LookupError, ValueError, TypeError, AttributeError):
            data = None
    if isinstance(data, bytes | bytearray):
        return bytes(data[:limit])
    if isinstance(data, str):
        return data[:limit].encode("utf-8", "surrogateescape")
    return b""


# --------------------------------------------------------------------------- reports


def field_blocks(text: str) -> tuple[FieldBlock, ...]:
    """RFC 822-style field blocks separated by blank lines (DSN bodies)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        if line[:1] in (" ", "\t") and last is not None:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name and " " not in name:
            last = name.casefold()
            current.setdefault(last, value.strip())
        else:
            last = None
    if current:
        blocks.append(current)
    return tuple(tuple(block.items()) for block in blocks)


def report_blocks(part: Message) -> tuple[FieldBlock, ...]:
    """Field blocks of a message/delivery-status (or similar) part."""
    blocks: list[FieldBlock] = []
    children = subparts(part)
    for child in children:
        fields: dict[str, str] = {}
        for name, value in raw_headers(child):
            fields.setdefault(name, value.strip())
        if fields:
            blocks.append(tuple(fields.items()))
    known = ("action", "final-recipient", "status", "disposition", "feedback-type")
    if any(key == k for block in blocks for key, _ in block for k in known):
        return tuple(blocks)
    # A string payload, or a transfer-encoded body the parser could not split.
    text = decode_bytes(payload_bytes(part), "utf-8")
    if not text.strip():
        text = "\n\n".join(decode_bytes(payload_bytes(c), "utf-8") for c in children)
    return field_blocks(clean(text))


_MSGID_IN_TEXT = re.compile(r"^[ \t>]*message-id:[ \t]*(<[^>\r\n]{1,250}>|\S{3,250})", re.I | re.M)


def returned_message_id(part: Message, ctype: str, text: str) -> str | None:
    """The Message-ID of a returned message or header block (``text``: the part's
    decoded text, used for header blocks)."""
    if ctype in ("message/rfc822", "message/global"):
        for child in subparts(part):
            value = first(raw_headers(child), "message-id")
            if value:
                return find_message_id(value)
        text = clean(decode_bytes(payload_bytes(part), "utf-8"))
    match = _MSGID_IN_TEXT.search(text)
    return find_message_id(match.group(1)) if match else None


_TNEF_SIGNATURE = 0x223E9F78
_TNEF_ATT_MESSAGE_CLASS = 0x00078008


def tnef_message_class(data: bytes | bytearray) -> str | None:
    """MAPI message class of a TNEF stream, e.g. ``REPORT.IPM.Note.IPNRN``."""
    data = bytes(memoryview(data)[:TNEF_HEAD])
    if len(data) < 6 or int.from_bytes(data[:4], "little") != _TNEF_SIGNATURE:
        return None
    pos = 6
    while pos + 9 <= len(data):
        level = data[pos]
        attribute = int.from_bytes(data[pos + 1 : pos + 5], "little")
        length = int.from_bytes(data[pos + 5 : pos + 9], "little")
        start = pos + 9
        if level != 1:  # the attachments' attributes follow the message's own
            break
        if attribute == _TNEF_ATT_MESSAGE_CLASS:
            value = data[start : start + min(length, 200)].split(b"\0")[0]
            return clean(value.decode("ascii", "replace")).strip() or None
        pos = start + length + 2
    return None
