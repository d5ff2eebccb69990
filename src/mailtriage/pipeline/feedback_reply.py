"""A rating given by email (pure): the customer answers our feedback request with a
number from 1 to 5, perhaps a few words after it ("4 - quick and friendly").

Only a reply to *our feedback request for that ticket* counts (its In-Reply-To or
References name the request's Message-ID), and only when the new text starts with the
number: "I still have 2 printers down" to an agent's answer is not a rating.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.reply_token import parse_message_id
from mailtriage.pipeline.text import split_body

__all__ = ["FEEDBACK_KIND", "rating_in_reply", "replies_to_feedback_request"]

FEEDBACK_KIND = "feedback"
MAX_COMMENT = 4000

# "5", "5/5", "4 von 5", "Note 4", "**4**", "4 - super", "Bewertung: 3. Danke"
_RATING_RE = re.compile(
    r"\A\W{0,3}(?:(?:note|bewertung|rating|score)\s*:?\s*)?\**([1-5])\**"
    r"(?:\s*(?:/|von|of|out of)\s*5)?(?!\d|[.,]\d)(?P<rest>.*)\Z",
    re.IGNORECASE | re.DOTALL,
)


def rating_in_reply(text: str, subject: str = "") -> tuple[int, str] | None:
    """(score, comment) when the new text of a reply is a rating, else None."""
    new_text = split_body(text, subject).new_text.strip()
    match = _RATING_RE.match(new_text)
    if not match:
        return None
    comment = match.group("rest").strip(" \t\r\n-–—:.,;!")
    return int(match.group(1)), comment[:MAX_COMMENT]


def replies_to_feedback_request(
    parsed: ParsedMessage, ticket_id: int, own_domains: Iterable[str], prefix: str
) -> bool:
    """True when the message answers our feedback request about ``ticket_id``."""
    domains = tuple(own_domains)
    for value in (*parsed.in_reply_to, *parsed.references):
        ref = parse_message_id(value, domains, prefix)
        if ref is not None and ref.ticket_id == ticket_id and ref.kind == FEEDBACK_KIND:
            return True
    return False
