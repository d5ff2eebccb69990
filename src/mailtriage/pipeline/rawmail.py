"""Raw message bytes: the content key, and the stdlib's compat32 parse with large
base64 bodies left in the raw bytes (decoded from there, without a copy of the text).

Bytes in, values out; no knowledge of ParsedMessage.
"""

from __future__ import annotations

import binascii
import email.feedparser
import email.parser
import hashlib
import re
import types
from email.message import Message
from email.policy import compat32
from typing import Any

from mailtriage.pipeline.mime import header_text

HEAD_END_RE = re.compile(rb"\r?\n\r?\n")

# Base64 bodies at least this large are not fed through the stdlib's line-by-line
# feed parser; they are decoded straight from the raw bytes (see _parse).
DEFER_BASE64_BYTES = 64 * 1024
DEFERRED = "x-mailtriage-deferred-base64:"
_B64_CTE_RE = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?$")
_B64_BODY_RE = re.compile(rb"[A-Za-z0-9+/=\r\n]*")
_MESSAGE_TYPE_RE = re.compile(rb"(?im)^content-type:[ \t]*message/")
# The body of a single-part message at least this large (a pasted log, a text dump) is
# not fed through the feed parser either (a str per line: 6x the body in memory); it
# is read straight from the raw bytes.
DEFER_BODY_BYTES = 1024 * 1024
DEFERRED_BODY = "x-mailtriage-deferred-body:0"
_PLAIN_CTES = frozenset({"", "7bit", "8bit", "binary", "quoted-printable"})


# --------------------------------------------------------------------------- parser

# The stdlib's feed parser compiles a regular expression for each multipart boundary
# it meets (email/feedparser.py, FeedParser._parsegen):
_BOUNDARY_HEAD = "(?P<sep>"
_BOUNDARY_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
# Every message has its own boundary, so re's cache never helps, and compiling costs
# about 0.25 ms, more than the rest of parsing a small message's structure. The same
# test without a compile: the line starts with the separator, and this (compiled once)
# matches the rest.
_AFTER_SEPARATOR = re.compile(_BOUNDARY_TAIL[1:])
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


class _Boundary:
    """``re.compile("(?P<sep>" + re.escape(separator) + _BOUNDARY_TAIL)``'s match()."""

    __slots__ = ("separator",)

    def __init__(self, separator: str) -> None:
        self.separator = separator

    def match(self, line: str) -> re.Match[str] | None:
        if not line.startswith(self.separator):
            return None
        return _AFTER_SEPARATOR.match(line, len(self.separator))


class _FeedParserRe:
    """The ``re`` module as our copy of _parsegen sees it: boundary patterns become a
    :class:`_Boundary`; everything else is the real ``re``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def compile(pattern: Any, flags: int = 0) -> Any:
        if (
            not flags
            and isinstance(pattern, str)
            and pattern.startswith(_BOUNDARY_HEAD)
            and pattern.endswith(_BOUNDARY_TAIL)
        ):
            escaped = pattern[len(_BOUNDARY_HEAD) : -len(_BOUNDARY_TAIL)]
            separator = _ESCAPED.sub(r"\1", escaped)
            if re.escape(separator) == escaped:
                return _Boundary(separator)
        return re.compile(pattern, flags)


def _parser_class() -> type[email.feedparser.BytesFeedParser]:
    """BytesFeedParser whose _parsegen is the stdlib's own code (the same code object)
    run with :class:`_FeedParserRe` as its ``re``; the stdlib's class itself when its
    internals are not the ones known here."""
    stdlib = getattr(email.feedparser.FeedParser, "_parsegen", None)
    if not isinstance(stdlib, types.FunctionType) or stdlib.__closure__:
        return email.feedparser.BytesFeedParser
    namespace = dict(vars(email.feedparser))
    namespace["re"] = _FeedParserRe()
    parsegen = types.FunctionType(stdlib.__code__, namespace, stdlib.__name__)
    return type("BytesFeedParser", (email.feedparser.BytesFeedParser,), {"_parsegen": parsegen})


BytesFeedParser = _parser_class()


def content_key(raw: bytes) -> str:
    """Hash of what identifies a message's content across transports.

    The same mail fetched over IMAP and received over SMTP differs in its trace
    headers (Received, Return-Path, Delivered-To) and sometimes in line endings;
    From, Subject, Date and the body bytes do not.
    """
    raw = strip_leading_blank(raw)
    match = HEAD_END_RE.search(raw)
    head = email.parser.BytesHeaderParser(policy=compat32).parsebytes(
        raw[: match.end()] if match else raw
    )
    return content_key_of(head, raw)


def content_key_of(msg: Message, raw: bytes) -> str:
    digest = hashlib.sha256()
    for name in ("from", "subject", "date", "content-type"):
        digest.update(header_text(msg.get(name, "")).strip().encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    match = HEAD_END_RE.search(raw)
    if not match:
        return digest.hexdigest()
    if raw.find(b"\r", match.end()) < 0:
        # No CR to normalise (a memchr): hash the body in place, without trailing white
        # space, instead of copying it chunk by chunk (the same bytes reach the hash).
        digest.update(memoryview(raw)[match.end() : _end_of_text(raw, match.end())])
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
        norm = chunk.replace(b"\r\n", b"\n")
        if b"\r" in norm:
            norm = norm.replace(b"\r", b"\n")
        text = norm.rstrip()
        if text:
            digest.update(pending + text)
            pending = norm[len(text) :]
        else:
            pending += norm
    return digest.hexdigest()


def _end_of_text(raw: bytes, start: int, step: int = 1 << 16) -> int:
    """len(raw[:start] + raw[start:].rstrip()), without copying raw[start:]."""
    end = len(raw)
    while end > start:
        low = max(start, end - step)
        kept = len(raw[low:end].rstrip())
        if kept:
            return low + kept
        end = low
    return start


def _find_boundary(raw: bytes, start: int) -> int:
    """raw.find(b"\n--", start), faster over base64 text, which has no "-": finding
    one byte is a memchr, a three-byte needle is not."""
    dash = raw.find(b"-", start + 1)
    return raw.find(b"\n--", dash - 1) if dash >= 0 else -1


def strip_leading_blank(raw: bytes) -> bytes:
    """Some files start with blank lines, which would end the header block at once."""
    return raw.lstrip(b" \t\r\n") if raw[:1] in (b" ", b"\t", b"\r", b"\n") else raw


def feed_parse(raw: bytes) -> tuple[Message, dict[str, tuple[int, int]]]:
    """The stdlib's feed parser, except for large base64 bodies.

    The feed parser handles a body line by line in Python: a 50 MB attachment is
    700,000 lines, which costs far more time (and a str object per line) than the
    MIME structure around it. A body that a Content-Transfer-Encoding: base64 header
    block introduces, that runs to the next boundary line and holds nothing but
    base64, is replaced by a placeholder for the parser and decoded later straight
    from the raw bytes (_Walker._decode). Everything else is parsed as usual.
    """
    top = _defer_top_body(raw)
    if top is not None:
        return top
    parser = BytesFeedParser(policy=compat32)
    deferred: dict[str, tuple[int, int]] = {}
    pos = scan = 0
    while cte := _B64_CTE_RE.search(raw, scan):
        head_end = HEAD_END_RE.search(raw, cte.end())
        if head_end is None:
            break
        start = scan = head_end.end()
        end = _find_boundary(raw, start)
        if end < 0:
            end = len(raw)
        elif raw[end - 1 : end] == b"\r":
            end -= 1
        if end - start < DEFER_BASE64_BYTES or not _looks_base64(raw, start, end):
            continue
        block_start = max(raw.rfind(b"\n\n", 0, cte.start()), raw.rfind(b"\n--", 0, cte.start()))
        if _MESSAGE_TYPE_RE.search(raw, max(block_start, 0), start):
            continue  # an encoded message/rfc822 is parsed as a message, see _attachment
        key = f"{DEFERRED}{len(deferred)}"
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


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    match = HEAD_END_RE.search(raw)
    if not match:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def b64decode_span(raw: bytes, start: int, end: int, step: int = 1 << 20) -> bytes | bytearray:
    """Decode base64 text raw[start:end] (line breaks carry no data).

    One a2b_base64 call over a memoryview (it skips line breaks itself): no copy of
    the base64 text. When the padding is off, slice by slice into a bytearray grown
    in place, so a large attachment exists once, not as a list of slices plus their
    join.
    """
    view = memoryview(raw)
    try:
        return binascii.a2b_base64(view[start:end])
    except (ValueError, binascii.Error):
        pass
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


def _defer_top_body(raw: bytes) -> tuple[Message, dict[str, tuple[int, int]]] | None:
    """A large single-part body (not base64, not a message/*) as a placeholder; None
    when the message is not one (or the parser did not end the header block where
    we did)."""
    head_end = HEAD_END_RE.search(raw)
    if head_end is None or len(raw) - head_end.end() < DEFER_BODY_BYTES:
        return None
    head = raw[: head_end.end()]
    parser = BytesFeedParser(policy=compat32)
    parser.feed(head)
    parser.feed(DEFERRED_BODY.encode("ascii"))
    msg = parser.close()
    ctype = msg.get_content_type()
    cte = header_text(msg.get("content-transfer-encoding", "")).strip().lower()
    if ctype.startswith(("multipart/", "message/")) or cte not in _PLAIN_CTES:
        return None
    payload = msg.get_payload()
    if not isinstance(payload, str) or payload != DEFERRED_BODY:
        return None
    return msg, {DEFERRED_BODY: (head_end.end(), len(raw))}
