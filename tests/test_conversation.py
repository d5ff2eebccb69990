"""Conversation matching as a pure function of the message and looked-up facts."""

from __future__ import annotations

from typing import Any

from mailtriage.pipeline.conversation import (
    Candidate,
    ConversationFacts,
    EarlyReply,
    OurMail,
    match,
    thread_candidates,
)
from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import parse_message

from mails import mail

HUMAN = LoopVerdict("human", ())
REPLY = parse_message(
    mail(
        message_id="<r@kunde.example>",
        in_reply_to="<p@kunde.example>",
        references="<root@kunde.example> <p@kunde.example>",
    )
)


def facts(**values: Any) -> ConversationFacts:
    return ConversationFacts(message_key="r@kunde.example", **values)


def test_references_are_tried_in_reply_to_first_then_newest() -> None:
    assert thread_candidates(REPLY) == ("p@kunde.example", "root@kunde.example")


def test_no_candidate_creates() -> None:
    decision = match(REPLY, HUMAN, facts())
    assert decision.action == "create" and decision.reasons == ("no known message referenced",)


def test_a_held_message_wins_over_a_sibling_reply() -> None:
    found = facts(
        candidates=(
            Candidate(7, "root@kunde.example", "message"),
            Candidate(3, "p@kunde.example", "reference", article_sender="erika@kunde.example"),
        )
    )
    decision = match(REPLY, HUMAN, found)
    assert (decision.action, decision.ticket_id) == ("append", 7)
    assert decision.reasons == ("refers to <root@kunde.example>",)


def test_a_sibling_reply_counts_only_from_the_same_sender() -> None:
    sibling = Candidate(3, "p@kunde.example", "reference", article_sender="ERIKA@kunde.example")
    stranger = Candidate(4, "p@kunde.example", "reference", article_sender="max@other.example")
    decision = match(REPLY, HUMAN, facts(candidates=(stranger, sibling)))
    assert (decision.action, decision.ticket_id) == ("append", 3)
    assert decision.reasons == ("refers to <p@kunde.example> (as an earlier reply to it does)",)
    assert match(REPLY, HUMAN, facts(candidates=(stranger,))).action == "create"


def test_early_replies_are_merged_unless_kept() -> None:
    early = (EarlyReply(5), EarlyReply(6, "corrected by agent"), EarlyReply(5))
    decision = match(REPLY, HUMAN, facts(early_replies=early))
    assert decision.action == "create" and decision.merge_ticket_ids == (5,)
    assert decision.reasons[1:] == (
        "merges ticket 5: reply arrived before its parent <r@kunde.example>",
        "ticket 6 refers to this message but is kept: corrected by agent",
    )


def test_automatic_answer_to_our_mail_is_a_note_and_a_duplicate_is_a_duplicate() -> None:
    ooo = LoopVerdict("out_of_office", ("subject:out of office",))
    our = OurMail(9, "ack-9@dataandmore.com", ("erika@kunde.example",))
    decision = match(REPLY, ooo, facts(our_mail=our))
    assert (decision.action, decision.ticket_id, decision.note) == ("ignore", 9, "out_of_office")
    assert match(REPLY, LoopVerdict("list", ()), facts(our_mail=our)).note is None
    duplicate = match(REPLY, HUMAN, facts(duplicate_article_id=4))
    assert (duplicate.action, duplicate.duplicate_article_id) == ("duplicate", 4)
