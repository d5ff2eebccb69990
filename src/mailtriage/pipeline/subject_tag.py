"""Reply/forward prefixes and our ticket tag in a subject (pure).

Prefixes: a chain of ``Re:``, ``AW:``, ``WG:``, ``Fwd:``, ``SV:``, ... at the start,
in any case, optionally numbered (``RE[2]:``, ``Re^2:``, ``Re(2):``), with a full-width
colon or a space before the colon (French ``RE :``). Leading bracket tags that mail
systems add (``[EXTERNAL]``, ``[SPAM]``, our ``[DM-000123]``) are not prefixes and are
kept; prefixes between and after them are removed:
``RE: [EXTERNAL] AW: [DM-000123] Drucker`` -> ``[EXTERNAL] [DM-000123] Drucker``.

Tag: ``[DM-000123]`` anywhere in the subject, case-insensitive, also without the zeros
(``[dm-123]``), with ``#`` (``[DM#123]``) or spaces inside the brackets
(``[ DM-000123 ]``), and full-width forms (NFKC). Only in square brackets: a bare
``DM-1000`` is as likely a product name as a ticket. Another prefix, a number of 0 or
of more than nine digits is no tag. With several tags the first (leftmost: the newest
reply prefix comes first) wins.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "find_ticket_tag",
    "is_forward_subject",
    "is_reply_subject",
    "strip_prefixes",
    "ticket_reference",
]


def ticket_reference(prefix: str, ticket_id: int) -> str:
    """A ticket's human reference: ``DM-000123`` (the one place it is spelled)."""
    return f"{prefix}-{ticket_id:06d}"


# Reply words: "Re" (most clients), German "AW"/"Antw"/"Antwort", Swedish/Norwegian/
# Danish "SV" (svar), Finnish "VS" (vastaus), Italian "Rif", Portuguese "Res", Polish
# "Odp", and "Ref". Forward words: "Fwd"/"FW", German "WG", French "TR", Swedish "VB",
# Finnish "VL", Dutch "Doorst", Spanish "RV", Portuguese "Enc", Danish "Wtr".
_REPLY_WORDS = ("re", "aw", "antw", "antwort", "sv", "vs", "rif", "ref", "res", "odp")
_FORWARD_WORDS = ("fwd", "fw", "wg", "tr", "vb", "vl", "doorst", "rv", "enc", "wtr")
_COUNT = r"(?:\[\d{1,3}\]|\(\d{1,3}\)|\^\d{1,3})?"
_COLON = r"\s?[:：]"


def _prefix_re(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(sorted(words, key=len, reverse=True))
    return re.compile(rf"(?:{alternatives}){_COUNT}{_COLON}\s*", re.IGNORECASE)


_ANY_PREFIX = _prefix_re(_REPLY_WORDS + _FORWARD_WORDS)
_REPLY_PREFIX = _prefix_re(_REPLY_WORDS)
_FORWARD_PREFIX = _prefix_re(_FORWARD_WORDS)
_BRACKET_TAG = re.compile(r"\[[^\[\]]{1,60}\]\s*")
_TAG = re.compile(r"\[\s*([A-Za-z]{1,10})\s*[-#]\s*([0-9]{1,9})\s*\]")
_SPACED_TAG = re.compile(r"\s*" + _TAG.pattern)


def _walk(subject: str) -> tuple[str, list[re.Match[str]]]:
    """(the subject without prefixes, the prefix matches in order)."""
    text = unicodedata.normalize("NFKC", subject).strip()
    kept: list[str] = []
    found: list[re.Match[str]] = []
    pos = 0
    while pos < len(text):
        prefix = _ANY_PREFIX.match(text, pos)
        if prefix:
            found.append(prefix)
            pos = prefix.end()
            continue
        tag = _BRACKET_TAG.match(text, pos)
        if tag:
            kept.append(tag.group(0).strip())
            pos = tag.end()
            continue
        break
    return " ".join([*kept, text[pos:].strip()]).strip(), found


def strip_prefixes(subject: str) -> str:
    """The subject without its chain of reply and forward prefixes (bracket tags kept),
    NFKC-normalised and stripped."""
    return _walk(subject)[0]


def is_reply_subject(subject: str) -> bool:
    """True when the leading chain of prefixes (bracket tags skipped) holds a reply
    prefix (``Re:``, ``AW:``, ``SV:``...)."""
    return any(_REPLY_PREFIX.fullmatch(m.group(0)) for m in _walk(subject)[1])


def is_forward_subject(subject: str) -> bool:
    """True when the leading chain of prefixes holds a forward prefix (``Fwd:``,
    ``WG:``, ``TR:``...)."""
    return any(_FORWARD_PREFIX.fullmatch(m.group(0)) for m in _walk(subject)[1])


def find_ticket_tag(subject: str, prefix: str = "DM") -> str | None:
    """The normalised ticket reference (``DM-000123``) of the first ``[DM-...]`` tag in
    the subject, or None."""
    text = unicodedata.normalize("NFKC", subject)
    for match in _TAG.finditer(text):
        number = int(match.group(2))
        if match.group(1).upper() == prefix.upper() and number > 0:
            return f"{prefix.upper()}-{number:06d}"
    return None


def remove_ticket_tags(subject: str, prefix: str | None = None) -> str:
    """The subject without ticket tags (``[DM-000123]``; with ``prefix``, only ours)."""

    def drop(match: re.Match[str]) -> str:
        ours = prefix is None or match.group(1).upper() == prefix.upper()
        return "" if ours else match.group(0)

    return _SPACED_TAG.sub(drop, subject).strip()
