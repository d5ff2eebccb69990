"""Message-IDs and Reply-To addresses of the mail we send (pure).

With a server secret, both carry a signed reply token (``pipeline.reply_token``) made
for the one recipient of that mail: a reply that names it proves it answers a mail we
sent to that address about that ticket. The Message-ID derives from the outbox key
(ticket, kind, step) and the recipient, so a resend after a crash reuses it. Without a
secret (policies built in tests or by hand) the older unsigned forms are used.
"""

from __future__ import annotations

from mailtriage.outbound.headers import make_message_id, plus_address
from mailtriage.pipeline import reply_token
from mailtriage.pipeline.subject_tag import ticket_reference

__all__ = ["message_id_for", "reply_to_for", "token_for"]


def token_for(secret: bytes, ticket_id: int, recipient: str, purpose: str) -> str | None:
    """The recipient's token, or None without a secret."""
    if not secret:
        return None
    return reply_token.make_token(secret, ticket_id, recipient, purpose)


def message_id_for(
    *,
    secret: bytes,
    prefix: str,
    domain: str,
    ticket_id: int,
    kind: str,
    step: int,
    recipient: str,
    purpose: str,
    salt: str,
) -> str:
    """The Message-ID of outbox entry (ticket, kind, step) sent to ``recipient``.
    ``salt`` (the ticket's creation time) only matters for the unsigned form."""
    token = token_for(secret, ticket_id, recipient, purpose)
    if token is None:
        return make_message_id(ticket_reference(prefix, ticket_id), kind, step, salt, domain)
    return reply_token.token_message_id(ticket_id, kind, step, token, domain, prefix)


def reply_to_for(
    *,
    secret: bytes,
    prefix: str,
    support_address: str,
    ticket_id: int,
    recipient: str,
    purpose: str,
    plus: bool = True,
) -> str:
    """``support+dm-000123.<token>@...`` for ``recipient``; the bare plus address
    without a secret; the support address itself when plus addresses are off."""
    if not plus:
        return support_address
    token = token_for(secret, ticket_id, recipient, purpose)
    if token is None:
        return plus_address(support_address, ticket_reference(prefix, ticket_id))
    return reply_token.reply_address(support_address, ticket_id, token, prefix)
