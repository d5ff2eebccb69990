"""What to do with an analysed message, given what the database already knows (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailtriage.pipeline.parse import ParsedMessage

Action = Literal["ignore", "duplicate", "append", "create"]


@dataclass(frozen=True)
class Known:
    """Facts looked up in the database for one message."""

    duplicate_article_id: int | None = None  # same Message-ID and same content
    same_id_other_content: bool = False  # same Message-ID, different content
    thread_ticket_id: int | None = None  # ticket of a message this one refers to
    thread_message_id: str | None = None
    # automated mail only: the ticket of OUR outgoing mail it answers (bounce, OOO)
    our_ticket_id: int | None = None
    our_message_id: str | None = None
    # The thread ticket was found through another message that refers to the same
    # (not yet stored) Message-ID: a sibling reply that arrived before the parent.
    thread_via_reference: bool = False
    # This message's own key, and tickets opened by replies to it that arrived before
    # it (their first inbound article refers to it), still untouched by a human.
    message_key: str | None = None
    early_reply_ticket_ids: tuple[int, ...] = ()
    # Such tickets that must stay as they are: (ticket id, why).
    early_reply_kept: tuple[tuple[int, str], ...] = ()


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


def decide(
    automated: bool, loop_reasons: tuple[str, ...], known: Known, loop_kind: str = "human"
) -> Decision:
    if automated:
        if known.our_ticket_id is not None and loop_kind in NOTED_KINDS:
            return Decision(
                "ignore",
                ticket_id=known.our_ticket_id,
                reasons=(*loop_reasons, f"answers our <{known.our_message_id}>"),
                note=loop_kind,
            )
        return Decision("ignore", reasons=loop_reasons)
    if known.duplicate_article_id is not None:
        return Decision(
            "duplicate",
            reasons=(f"same Message-ID and content as article {known.duplicate_article_id}",),
        )
    warnings: tuple[str, ...] = ()
    if known.same_id_other_content:
        warnings = (
            "a message with this Message-ID but different content is already stored; "
            "kept as a new message",
        )
    target = known.thread_ticket_id
    merge = tuple(t for t in dict.fromkeys(known.early_reply_ticket_ids) if t != target)
    why = f"reply arrived before its parent <{known.message_key}>"
    adopted = tuple(f"merges ticket {t}: {why}" for t in merge)
    kept = tuple(
        f"ticket {t} refers to this message but is kept: {note}"
        for t, note in known.early_reply_kept
        if t != target
    )
    if target is not None:
        via = " (as an earlier reply to it does)" if known.thread_via_reference else ""
        return Decision(
            "append",
            ticket_id=target,
            reasons=(f"refers to <{known.thread_message_id}>{via}", *adopted, *kept),
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
