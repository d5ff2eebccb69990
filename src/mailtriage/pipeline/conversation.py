"""Which conversation a message belongs to, from facts the store looked up (pure).

Input: the parsed message, the loop guard's verdict and :class:`ConversationFacts`
(``store.lookups.lookup_conversation``: what the database knows about the Message-IDs
the message carries). Output: a :class:`Decision` with the reasons that decided it.

Matching today, in order: an automatic answer to one of our mails is noted on that
ticket; the same Message-ID with the same content is a duplicate; a message whose
In-Reply-To/References (newest first) name a stored message joins that message's
ticket; failing that, a ticket opened by an earlier reply *from the same sender* to
the same (not yet stored) parent; otherwise a new ticket. Tickets opened by replies
that arrived before this message (their first article refers to it) are merged into
the ticket it lands in, unless a human changed them.

Reply tokens, subject tags and sender authorisation build on this: candidates carry
how they were found and who the ticket's requester is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import ParsedMessage

Action = Literal["ignore", "duplicate", "append", "create"]
# "message": the referenced message is an article of the ticket;
# "reference": another article of the ticket refers to the same Message-ID.
FoundVia = Literal["message", "reference"]


@dataclass(frozen=True)
class Candidate:
    """A ticket the message may belong to, found through one of its Message-ID refs."""

    ticket_id: int
    message_id: str  # which of the message's In-Reply-To/References found it
    via: FoundVia
    article_sender: str = ""  # sender of the article that made the match
    requester: str | None = None  # the ticket's requester address


@dataclass(frozen=True)
class EarlyReply:
    """A ticket opened by a reply to this message that was stored before it."""

    ticket_id: int
    kept_because: str | None = None  # None: adoptable (still new, no human touched it)


@dataclass(frozen=True)
class OurMail:
    """One of our outgoing mails that an inbound message refers to."""

    ticket_id: int
    message_id: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class ConversationFacts:
    """What the database knows about one message's identity and references."""

    message_key: str
    duplicate_article_id: int | None = None  # same Message-ID and same content
    same_id_other_content: bool = False  # same Message-ID, different content
    # In the order of thread_candidates(); "message" ones first for each Message-ID.
    candidates: tuple[Candidate, ...] = ()
    early_replies: tuple[EarlyReply, ...] = ()
    # automated mail only: the mail of ours it answers (bounce, out of office)
    our_mail: OurMail | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    ticket_id: int | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # "ignore" of an automatic answer to our mail: note it (an event) on ticket_id,
    # which stays as it is (no reopening). The loop kind: out_of_office, auto_reply, bounce.
    note: str | None = None
    # "create" / "append": tickets opened by early replies to this message, merged into
    # the ticket this message lands in (articles moved, the old ticket "merged").
    merge_ticket_ids: tuple[int, ...] = ()
    merge_reason: str | None = None
    duplicate_article_id: int | None = None  # "duplicate": the article it repeats


# Automatic answers to our mail that are worth a note on the ticket.
NOTED_KINDS = ("out_of_office", "auto_reply", "bounce")


def message_key(parsed: ParsedMessage) -> str:
    """The logical identity of a message: its Message-ID, or one derived from content."""
    return parsed.message_id or f"derived:{parsed.content_key}"


def thread_candidates(parsed: ParsedMessage) -> tuple[str, ...]:
    """Message-IDs this message answers, most specific first: In-Reply-To, then
    References newest first."""
    seen: dict[str, None] = {}
    for ident in (*parsed.in_reply_to, *reversed(parsed.references)):
        if ident != parsed.message_id:
            seen.setdefault(ident, None)
    return tuple(seen)


def our_mail_candidates(parsed: ParsedMessage, loop: LoopVerdict) -> tuple[str, ...]:
    """Message-IDs under which an automatic answer may name one of our mails."""
    ids = (*thread_candidates(parsed), loop.original_message_id)
    return tuple(i for i in dict.fromkeys(ids) if i)


def match(parsed: ParsedMessage, loop: LoopVerdict, facts: ConversationFacts) -> Decision:
    """Ignore, duplicate, append to a ticket or create one, and why."""
    if loop.automated:
        our = facts.our_mail
        if our is not None and loop.kind in NOTED_KINDS:
            return Decision(
                "ignore",
                ticket_id=our.ticket_id,
                reasons=(*loop.reasons, f"answers our <{our.message_id}>"),
                note=loop.kind,
            )
        return Decision("ignore", reasons=loop.reasons)
    if facts.duplicate_article_id is not None:
        return Decision(
            "duplicate",
            reasons=(f"same Message-ID and content as article {facts.duplicate_article_id}",),
            duplicate_article_id=facts.duplicate_article_id,
        )
    warnings: tuple[str, ...] = ()
    if facts.same_id_other_content:
        warnings = (
            "a message with this Message-ID but different content is already stored; "
            "kept as a new message",
        )
    joined = _thread(parsed, facts.candidates)
    target = joined.ticket_id if joined else None
    merge = tuple(
        t
        for t in dict.fromkeys(e.ticket_id for e in facts.early_replies if e.kept_because is None)
        if t != target
    )
    why = f"reply arrived before its parent <{facts.message_key}>"
    adopted = tuple(f"merges ticket {t}: {why}" for t in merge)
    kept = tuple(
        f"ticket {e.ticket_id} refers to this message but is kept: {e.kept_because}"
        for e in facts.early_replies
        if e.kept_because is not None and e.ticket_id != target
    )
    if joined is not None:
        via = " (as an earlier reply to it does)" if joined.via == "reference" else ""
        return Decision(
            "append",
            ticket_id=joined.ticket_id,
            reasons=(f"refers to <{joined.message_id}>{via}", *adopted, *kept),
            warnings=warnings,
            merge_ticket_ids=merge,
            merge_reason=why if merge else None,
        )
    return Decision(
        "create",
        reasons=("no known message referenced", *adopted, *kept),
        warnings=warnings,
        merge_ticket_ids=merge,
        merge_reason=why if merge else None,
    )


def _thread(parsed: ParsedMessage, candidates: tuple[Candidate, ...]) -> Candidate | None:
    """The ticket of the first referenced message we hold; failing that, the ticket of
    an earlier reply from the same sender to one of them (a reply from someone else
    opens its own ticket; the parent adopts both when it comes)."""
    direct = next((c for c in candidates if c.via == "message"), None)
    if direct is not None or not parsed.sender:
        return direct
    sender = parsed.sender.lower()
    return next(
        (c for c in candidates if c.via == "reference" and c.article_sender.lower() == sender),
        None,
    )
