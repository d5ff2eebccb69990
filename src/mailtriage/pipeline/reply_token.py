"""Signed reply tokens in our plus addresses and Message-IDs (pure).

A token proves that a mail refers to something *we* sent to *one* recipient about *one*
ticket: it is an HMAC-SHA256 with the server secret over (ticket id, recipient address
lower-cased, purpose), truncated to 80 bits and written as 16 characters of lowercase
base32 (``a-z2-7``, no padding). That survives a mail system that lower-cases local
parts, fits an address local part and a Message-ID, and 80 bits cannot be guessed by
someone who can only try them by sending mail.

Forms (ticket id 123, prefix ``DM``)::

    support+dm-000123.<token>@dataandmore.com              reply address (Reply-To)
    support+dm-000123@dataandmore.com                      plus address without token
    dm-000123.ack.0.<token>@mailtriage.dataandmore.com     Message-ID (no angle brackets)

The parsers tolerate case and angle brackets and return None for anything else. They
do not check the token: a parsed token is only a claim until ``verify_token`` says it
was made for this ticket, this sender and this purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import NamedTuple

__all__ = [
    "AGENT",
    "MAX_TICKET_ID",
    "REPLY",
    "TOKEN_LENGTH",
    "MessageIdRef",
    "ReplyRef",
    "make_token",
    "parse_message_id",
    "parse_reply_address",
    "reply_address",
    "token_message_id",
    "verify_token",
]

# Purposes: a token made for one is never valid for another.
REPLY = "reply"  # mail to a customer or participant
AGENT = "agent"  # a notification to an agent (a valid one authenticates the agent's reply)

TOKEN_BYTES = 10  # 80 bits -> exactly 16 base32 characters, no padding
TOKEN_LENGTH = 16
MAX_TICKET_ID = 999_999_999  # nine digits; anything longer in an address is not ours
_CONTEXT = "mailtriage reply token v1"  # domain separation from other uses of the secret

_PURPOSE_RE = re.compile(r"[a-z][a-z0-9_-]{0,19}")
_TOKEN_CHARS = r"[a-z2-7]{1,64}"  # lenient on length: verify_token decides
_NUMBER = r"([0-9]{1,9})"


class ReplyRef(NamedTuple):
    """What a reply address names: the ticket id, and the token if there was one."""

    ticket_id: int
    token: str | None


class MessageIdRef(NamedTuple):
    """What one of our Message-IDs names."""

    ticket_id: int
    kind: str
    step: int
    token: str


def make_token(secret: bytes, ticket_id: int, recipient: str, purpose: str) -> str:
    """The token for mail about ``ticket_id`` sent to ``recipient`` for ``purpose``
    (e.g. ``"reply"`` for a customer, ``"agent"`` for an agent notification)."""
    if not secret:
        raise ValueError("empty secret")
    if not 0 < ticket_id <= MAX_TICKET_ID:
        raise ValueError(f"ticket id out of range: {ticket_id}")
    if not _PURPOSE_RE.fullmatch(purpose):
        raise ValueError(f"bad purpose {purpose!r}")
    # JSON keeps the fields apart unambiguously, whatever the address contains.
    message = json.dumps([_CONTEXT, ticket_id, recipient.strip().lower(), purpose])
    digest = hmac.new(secret, message.encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(digest[:TOKEN_BYTES]).decode("ascii").lower()


def verify_token(
    secret: bytes, token: str | None, ticket_id: int, recipient: str, purpose: str
) -> bool:
    """True when ``token`` is exactly the one we made for these values (any case)."""
    if not token or not secret or len(token) != TOKEN_LENGTH:
        return False
    try:
        expected = make_token(secret, ticket_id, recipient, purpose)
    except ValueError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), token.lower().encode("utf-8"))


def _reference(prefix: str, ticket_id: int) -> str:
    return f"{prefix.lower()}-{ticket_id:06d}"


def reply_address(
    support_address: str, ticket_id: int, token: str | None = None, prefix: str = "DM"
) -> str:
    """``support@x`` -> ``support+dm-000123.<token>@x`` (without a token: no ``.<token>``)."""
    local, at, domain = support_address.strip().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {support_address!r}")
    tag = _reference(prefix, ticket_id) + (f".{token.lower()}" if token else "")
    return f"{local}+{tag}@{domain.lower()}"


def parse_reply_address(address: str, support_address: str, prefix: str = "DM") -> ReplyRef | None:
    """The ticket (and token) a plus address of ``support_address`` names, else None.

    ``Support+DM-000123.ABC...@DataAndMore.com`` and ``<support+dm-123@...>`` are read;
    another mailbox, another domain, another prefix or a malformed tag are None.
    """
    local, at, domain = address.strip().strip("<>").strip().lower().rpartition("@")
    s_local, s_at, s_domain = support_address.strip().lower().rpartition("@")
    if not at or not s_at or domain != s_domain or not local.startswith(s_local + "+"):
        return None
    tag = local[len(s_local) + 1 :]
    match = re.fullmatch(rf"{re.escape(prefix.lower())}-{_NUMBER}(?:\.({_TOKEN_CHARS}))?", tag)
    if not match or int(match.group(1)) == 0:
        return None
    return ReplyRef(int(match.group(1)), match.group(2))


def token_message_id(
    ticket_id: int, kind: str, step: int, token: str, domain: str, prefix: str = "DM"
) -> str:
    """``dm-000123.ack.0.<token>@domain`` (without angle brackets): the same inputs give
    the same Message-ID, so a resend after a crash carries the same one."""
    if not _PURPOSE_RE.fullmatch(kind) or "." in kind:
        raise ValueError(f"bad kind {kind!r}")
    if step < 0:
        raise ValueError(f"bad step {step}")
    return f"{_reference(prefix, ticket_id)}.{kind}.{step}.{token.lower()}@{domain.lower()}"


def parse_message_id(
    value: str, own_domains: tuple[str, ...] | list[str], prefix: str = "DM"
) -> MessageIdRef | None:
    """What one of our Message-IDs (``<...>`` optional, any case) names, else None.

    Only IDs on one of ``own_domains`` with a token of full length count; the older
    form (``dm-000123.ack.0.<12 hex digits>@...``) is None here."""
    local, at, domain = value.strip().strip("<>").strip().lower().rpartition("@")
    if not at or domain not in {d.strip().lower() for d in own_domains}:
        return None
    match = re.fullmatch(
        rf"{re.escape(prefix.lower())}-{_NUMBER}\.([a-z][a-z0-9_-]{{0,19}})\.([0-9]{{1,10}})"
        rf"\.([a-z2-7]{{{TOKEN_LENGTH}}})",
        local,
    )
    if not match or int(match.group(1)) == 0:
        return None
    return MessageIdRef(int(match.group(1)), match.group(2), int(match.group(3)), match.group(4))
