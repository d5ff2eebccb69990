"""The loop guard's view of one parsed message: headers, subject, body, parts.

Everything is read from the :class:`ParsedMessage` the parser produced (its ``parts``
record the message's own MIME tree); nothing here walks a ``Message`` again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from email.utils import parseaddr
from functools import cached_property

from mailtriage.pipeline.facts import PartInfo, field_blocks
from mailtriage.pipeline.loops import patterns as p
from mailtriage.pipeline.mime import decode_words, find_message_id, fold
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.text import BodyParts, same_split, split_body

MAX_TEXT = 60_000  # characters of inline body text looked at
TOP_OF_BODY = 400  # characters that count as "the body opens with"
HEAD_OF_BODY = 3_000  # characters searched for auto-reply wording
MAX_HEADER = 4_000  # characters of Subject and From looked at

_NO_PART = PartInfo(content_type="text/plain", params="", headers=())
_MSGID_IN_TEXT = re.compile(r"^[ \t>]*message-id:[ \t]*(<[^>\r\n]{1,250}>|\S{3,250})", re.I | re.M)


def address(value: str) -> tuple[str, str]:
    """(display name, address) of a From-like header; never raises."""
    try:
        name, addr = parseaddr(value)
    except (ValueError, TypeError, IndexError, AttributeError):
        name, addr = "", ""
    if not addr:
        match = p.ADDR_RE.search(value)
        addr = match.group(0) if match else ""
    return decode_words(name).strip(), addr.strip()


def local_part(addr: str) -> str:
    addr = addr.strip().strip("<>").strip().strip('"')
    local = addr.rsplit("@", 1)[0]
    local = re.split(r"\\?@", local)[0]  # "Postmaster\@example.com@relay"
    return local.strip().strip('"').rstrip("\\").casefold()


def domains(own_domains: Sequence[str]) -> set[str]:
    return {d.strip().casefold().strip(".").lstrip("@") for d in own_domains if d and d.strip()}


def pretty(name: str) -> str:
    special = {"rt": "RT", "otrs": "OTRS", "otobo": "OTOBO"}
    return "-".join(special.get(x, x.capitalize()) for x in name.split("-"))


def field(block: tuple[tuple[str, str], ...], name: str, default: str = "") -> str:
    for key, value in block:
        if key == name:
            return value
    return default


class Mail:
    """Facts about one message, computed on first use."""

    def __init__(
        self,
        parsed: ParsedMessage,
        envelope_sender: str | None,
        body_parts: Callable[[], BodyParts] | None = None,
    ) -> None:
        self.parts: tuple[PartInfo, ...] = parsed.parts or (_NO_PART,)
        self.top = self.parts[0]
        self.headers = self.top.headers
        self.envelope_sender = envelope_sender
        self._parsed_sender = (parsed.sender_name, parsed.sender)
        self._parsed_text = parsed.text
        self._body_parts = body_parts  # gives split_body(parsed.text): the caller's

    # headers ---------------------------------------------------------------
    @cached_property
    def _first_values(self) -> dict[str, str]:
        first: dict[str, str] = {}
        for key, value in self.headers:
            first.setdefault(key, value)
        return first

    def get(self, name: str) -> str | None:
        return self._first_values.get(name)

    def has(self, name: str) -> bool:
        return name in self._first_values

    def folded(self, name: str) -> str:
        return fold(self.get(name) or "")

    @cached_property
    def subject(self) -> str:
        return fold(decode_words((self.get("subject") or "")[:MAX_HEADER]))

    @cached_property
    def sender(self) -> tuple[str, str, str]:
        """(folded display name, address, folded local part) of From (as the parser
        read it; read again only when the parser found no address)."""
        name, addr = self._parsed_sender
        if not addr:
            name, addr = address((self.get("from") or "")[:MAX_HEADER])
        return fold(name), addr, local_part(addr)

    @cached_property
    def null_sender(self) -> str | None:
        """Reason name when the return path is null (``<>``, MAILER-DAEMON)."""
        if self.envelope_sender is not None:
            env = self.envelope_sender.strip().strip("<>").strip()
            if not env:
                return "envelope:null"
            if p.DAEMON_LOCAL.match(local_part(env)):
                return "envelope:mailer-daemon"
        return_path = self.get("return-path")
        if return_path is not None:
            value = return_path.strip()
            inner = value.strip("<>").strip()
            if (not inner and "<" in value) or inner == "#@[]":  # qmail writes <#@[]>
                return "header:Return-Path=<>"
            if inner and p.DAEMON_LOCAL.match(local_part(inner)):
                return "header:Return-Path=MAILER-DAEMON"
        raw_from = (self.get("from") or "").replace(" ", "")
        if raw_from and not self.sender[1] and "<>" in raw_from:
            return "header:From=<>"
        return None

    # subject ---------------------------------------------------------------
    @cached_property
    def subject_core(self) -> str:
        """The subject without leading list or ticket tags."""
        subject = self.subject
        for _ in range(3):
            stripped = p.LEADING_TAG.sub("", subject, count=1)
            if stripped == subject:
                break
            subject = stripped
        return subject

    @cached_property
    def is_reply_or_forward(self) -> bool:
        return bool(p.REPLY_FWD_PREFIX.match(self.subject_core))

    @cached_property
    def is_forward(self) -> bool:
        return bool(p.FORWARD_PREFIX.match(self.subject_core))

    @property
    def heuristic_subject(self) -> str:
        """The subject, or "" when it is a reply or a forward."""
        return "" if self.is_reply_or_forward else self.subject

    # body ------------------------------------------------------------------
    @cached_property
    def text(self) -> str:
        """Inline text of the message's own parts (plain preferred over HTML), at most
        MAX_TEXT characters: all the guard's wording rules need."""
        plain: list[str] = []
        other: list[str] = []
        size = 0
        for part in self.parts:
            if size >= MAX_TEXT:
                break
            if not part.text:
                continue
            text = part.text[:MAX_TEXT]
            (other if part.content_type == "text/html" else plain).append(text)
            size += len(text)
        chosen = plain if any(t.strip() for t in plain) else other
        return "\n".join(chosen)[:MAX_TEXT]

    @cached_property
    def body(self) -> str:
        """All inline text, folded."""
        return fold(self.text)

    @cached_property
    def bounce_template(self) -> bool:
        """An MTA's bounce boilerplate in the body (never on forwards)."""
        return not self.is_forward and bool(p.BOUNCE_TEMPLATE.search(self.body))

    @cached_property
    def bounce_words(self) -> bool:
        """Bounce wording in the body (never on forwards)."""
        return not self.is_forward and bool(p.BOUNCE_WORDS.search(self.body))

    @cached_property
    def fresh(self) -> str:
        """The inline text without quoted history, folded ("" for forwards)."""
        if self.is_forward:
            return ""
        # the caller's split of the parser's text serves when the inline text is the
        # same text (new text and signature do not depend on the subject it was split with)
        shared = self._body_parts
        if shared is not None and same_split(self.text, self._parsed_text):
            parts = shared()
        else:
            parts = split_body(self.text)
        return fold(f"{parts.new_text}\n{parts.signature}")

    @cached_property
    def away_wording(self) -> bool:
        """Out-of-office wording at the head of the fresh text."""
        return bool(p.OOO_BODY.search(self.fresh[:HEAD_OF_BODY]))

    @cached_property
    def auto_wording(self) -> bool:
        """Auto-responder wording ("this is an automatic reply") at the head of the
        fresh text."""
        return bool(p.AUTO_BODY.search(self.fresh[:HEAD_OF_BODY]))

    @property
    def opening(self) -> str:
        return self.fresh[:TOP_OF_BODY]

    @cached_property
    def human_cues(self) -> tuple[bool, bool, bool]:
        """(asks for help, greets at the start, asks a question at the start)."""
        opening = self.opening
        return (
            bool(p.HELP_SUBJECT.search(self.subject_core)) or bool(p.HELP_BODY.search(opening)),
            bool(p.GREETING.match(opening)),
            "?" in opening,
        )

    # structure -------------------------------------------------------------
    def parts_of(self, *ctypes: str) -> list[PartInfo]:
        return [x for x in self.parts[1:] if x.content_type in ctypes]

    @cached_property
    def returned_parts(self) -> list[PartInfo]:
        return self.parts_of(
            "message/rfc822",
            "text/rfc822-headers",
            "message/rfc822-headers",
            "message/global",
            "message/global-headers",
            "message/partial",
        )

    @cached_property
    def text_fields(self) -> tuple[tuple[tuple[str, str], ...], ...]:
        return field_blocks(self.text)


# --------------------------------------------------------------------------- Message-IDs


def returned_message_id(mail: Mail) -> str | None:
    for part in mail.returned_parts:
        if part.returned_message_id:
            return part.returned_message_id
    return None


def reply_target(mail: Mail) -> str | None:
    in_reply_to = mail.get("in-reply-to")
    return find_message_id(in_reply_to) if in_reply_to else None


def last_reference(mail: Mail) -> str | None:
    idents = re.findall(r"<([^<>\s]+)>", mail.get("references") or "")
    return idents[-1] if idents else None


def bounce_original_id(mail: Mail) -> str | None:
    ident = returned_message_id(mail) or reply_target(mail)
    if ident:
        return ident
    match = _MSGID_IN_TEXT.search(mail.text)
    if match:
        return find_message_id(match.group(1))
    return last_reference(mail)


def auto_original_id(mail: Mail) -> str | None:
    return reply_target(mail) or last_reference(mail) or returned_message_id(mail)
