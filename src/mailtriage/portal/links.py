"""Signed links of the customer pages (pure).

A link is a capability: whoever holds it sees what it names, nothing else. The token
signs (HMAC-SHA256 with the server secret, by itsdangerous) what the page may show and
until when:

* a ticket link: ticket id, the recipient it was sent to, expiry;
* an organisation link: the organisation's domain, the address that asked, expiry.

Each kind has its own salt, so one kind's token is never valid as another. Expiry is
inside the signed payload: an expired link is told apart from a forged one (the page
can offer a new link to the address it was made for, and to no other).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from itsdangerous import BadSignature, URLSafeSerializer

if TYPE_CHECKING:
    from mailtriage.config import Settings

__all__ = [
    "Claim",
    "base_url",
    "make_org_token",
    "make_ticket_token",
    "read_org_token",
    "read_ticket_token",
    "strip_page_links",
    "ticket_url",
]

_TICKET_SALT = "mailtriage portal ticket v1"
_ORG_SALT = "mailtriage portal organisation v1"
_MAX_TOKEN = 600  # characters; anything longer is not ours
# A page link as made here, wherever the pages are: [scheme://host[/prefix]]/t|o/ then
# the token (payload "." HMAC-SHA256 signature, base64url; "." first when compressed),
# then any sub-page or query (/feedback, ?rate=5).
_PAGE_LINK = re.compile(
    r"(?:https?://[^\s<>\"'()]*?)?/[to]/\.?[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{40,}"
    r"(?:[/?#][^\s<>\"']*)?"
)
REMOVED_LINK = "[link to the customer's page removed]"


@dataclass(frozen=True)
class Claim:
    """What a token with a valid signature says. ``subject`` is the ticket id (ticket
    links) or the organisation domain (organisation links)."""

    subject: int | str
    address: str
    expires: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


def _serializer(secret: bytes, salt: str) -> URLSafeSerializer:
    if not secret:
        raise ValueError("empty secret")
    return URLSafeSerializer(secret, salt=salt, signer_kwargs={"digest_method": hashlib.sha256})


def _expiry(expires: datetime) -> int:
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return int(expires.timestamp())


def make_ticket_token(secret: bytes, ticket_id: int, address: str, expires: datetime) -> str:
    """The token of ``/t/<token>``: ticket ``ticket_id`` for ``address`` until ``expires``."""
    if ticket_id <= 0:
        raise ValueError(f"ticket id out of range: {ticket_id}")
    payload = [ticket_id, address.strip().lower(), _expiry(expires)]
    return str(_serializer(secret, _TICKET_SALT).dumps(payload))


def make_org_token(secret: bytes, domain: str, address: str, expires: datetime) -> str:
    """The token of ``/o/<token>``: the tickets of ``domain`` for ``address``."""
    payload = [domain.strip().lower(), address.strip().lower(), _expiry(expires)]
    return str(_serializer(secret, _ORG_SALT).dumps(payload))


def _read(secret: bytes, salt: str, token: str) -> list[object] | None:
    if not token or len(token) > _MAX_TOKEN or not secret:
        return None
    try:
        # itsdangerous compares the signature in constant time.
        payload = _serializer(secret, salt).loads(token)
    except (BadSignature, ValueError, TypeError, UnicodeError):
        return None
    if not isinstance(payload, list) or len(payload) != 3:
        return None
    return payload


def read_ticket_token(secret: bytes, token: str) -> Claim | None:
    """The claim of a ticket token whose signature is ours (expired or not), else None."""
    payload = _read(secret, _TICKET_SALT, token)
    if payload is None:
        return None
    ticket_id, address, expires = payload
    if not isinstance(ticket_id, int) or isinstance(ticket_id, bool) or ticket_id <= 0:
        return None
    if not isinstance(address, str) or not isinstance(expires, int):
        return None
    return Claim(ticket_id, address, datetime.fromtimestamp(expires, UTC))


def read_org_token(secret: bytes, token: str) -> Claim | None:
    """The claim of an organisation token whose signature is ours, else None."""
    payload = _read(secret, _ORG_SALT, token)
    if payload is None:
        return None
    domain, address, expires = payload
    if not isinstance(domain, str) or not isinstance(address, str):
        return None
    if not isinstance(expires, int) or isinstance(expires, bool):
        return None
    return Claim(domain, address, datetime.fromtimestamp(expires, UTC))


def base_url(settings: Settings) -> str:
    """Where customers reach the pages: ``portal.base_url``, else the HTTP role's
    address (right for a local test, not behind a proxy)."""
    if settings.portal.base_url:
        return settings.portal.base_url.rstrip("/")
    host = settings.http.host
    if host in ("", "0.0.0.0", "::"):  # every interface: this machine's name
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http.port}"


def ticket_url(
    settings: Settings,
    secret: bytes,
    ticket_id: int,
    address: str,
    now: datetime,
    base: str | None = None,
) -> str:
    """The link to ticket ``ticket_id``'s page for ``address``, valid ``portal.link_days``;
    ``base``: where the pages are (default ``base_url(settings)``)."""
    expires = now + timedelta(days=settings.portal.link_days)
    token = make_ticket_token(secret, ticket_id, address, expires)
    return f"{base or base_url(settings)}/t/{token}"


def strip_page_links(text: str) -> str:
    """``text`` with every customer page link replaced by a note. A link is a
    capability made for one address: text quoted to anyone else (staff) must not
    carry it."""
    return _PAGE_LINK.sub(REMOVED_LINK, text)
