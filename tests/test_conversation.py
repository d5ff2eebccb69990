"""Conversation matching as a pure function of the message and looked-up facts.

Most cases are one row of a table: a mail, the facts the store would look up, and
what the decision must be (action, ticket, a reason it must give, the linked ticket).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailtriage.pipeline.agent_commands import Taxonomy
from mailtriage.pipeline.conversation import (
    AgentSpec,
    Candidate,
    ConversationFacts,
    ConversationPolicy,
    Decision,
    EarlyReply,
    OurMail,
    TicketFacts,
    forwarded_sender,
    is_own_address,
    match,
    new_participants,
    thread_candidates,
)
from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import parse_message
from mailtriage.pipeline.reply_token import AGENT, REPLY, make_token, token_message_id

from mails import mail

HUMAN = LoopVerdict("human", ())
SECRET = b"a test secret that is long enough"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ERIKA = "erika@kunde.example"
STRANGER = "stranger@evil.example"
ANNA = "anna@dataandmore.com"
POLICY = ConversationPolicy(
    secret=SECRET,
    own_domains=("mailtriage.dataandmore.com",),
    agents=(AgentSpec(ANNA, "Anna Schmidt", "L2"),),
    authserv_ids=("mx.dataandmore.com",),
    freemail_domains=("gmail.com",),
    taxonomy=Taxonomy(categories=("integration", "printing"), agents=((ANNA, "Anna Schmidt"),)),
)
T1 = TicketFacts(1, "open", requester=ERIKA, participants=("max@kunde.example",))
ACK_ID = "ack-1@mailtriage.dataandmore.com"
ERIKAS_MAIL = "erika-1@kunde.example"
AUTH_PASS = {
    "Authentication-Results": "mx.dataandmore.com; dkim=pass header.d=dataandmore.com; "
    "spf=pass smtp.mailfrom=dataandmore.com"
}
AUTH_FOREIGN = {
    "Authentication-Results": "mx.evil.example; dkim=pass header.d=dataandmore.com",
}
REPLY_MAIL = parse_message(
    mail(
        message_id="<r@kunde.example>",
        in_reply_to="<p@kunde.example>",
        references="<root@kunde.example> <p@kunde.example>",
    )
)


def token(ticket: int, who: str, purpose: str = REPLY) -> str:
    return make_token(SECRET, ticket, who, purpose)


def plus(ticket: int, tok: str | None = None) -> str:
    return f"support+dm-{ticket:06d}{'.' + tok if tok else ''}@dataandmore.com"


def facts(**values: Any) -> ConversationFacts:
    values.setdefault("tickets", (T1,))
    values.setdefault("now", NOW)
    return ConversationFacts(message_key="r@kunde.example", **values)


BY_ACK = (Candidate(1, ACK_ID, "message", requester=ERIKA),)
BY_ERIKAS_MAIL = (Candidate(1, ERIKAS_MAIL, "message", ERIKA, requester=ERIKA),)

# (id, mail() arguments, facts() arguments, action, ticket, reason part, linked ticket)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str, int | None, str, int | None]] = [
    (
        "gmail reply to our ack",
        {"sender": ERIKA, "in_reply_to": f"<{ACK_ID}>", "subject": "Re: [DM-000001] Drucker"},
        {"candidates": BY_ACK},
        "append",
        1,
        "In-Reply-To <ack-1@",
        None,
    ),
    (
        "outlook: rewritten ids, token plus address and tag",
        {"sender": ERIKA, "to": plus(1, token(1, ERIKA)), "subject": "RE: [DM-000001] Drucker"},
        {},
        "append",
        1,
        "signed reply token in support+dm-000001.",
        None,
    ),
    (
        "token in our Message-ID named by References",
        {
            "sender": ERIKA,
            "references": "<"
            + token_message_id(1, "ack", 0, token(1, ERIKA), "mailtriage.dataandmore.com")
            + ">",
        },
        {},
        "append",
        1,
        "signed reply token in <dm-000001.ack.0.",
        None,
    ),
    (
        "german outlook, tag only",
        {"sender": ERIKA, "subject": "AW: [DM-000001] Drucker druckt nicht"},
        {},
        "append",
        1,
        "subject tag DM-000001",
        None,
    ),
    (
        "plain plus address",
        {"sender": ERIKA, "to": plus(1)},
        {},
        "append",
        1,
        "plus address support+dm-000001@",
        None,
    ),
    (
        "participant by tag",
        {"sender": "max@kunde.example", "subject": "Re: [DM-1] Drucker"},
        {},
        "append",
        1,
        "sender is a participant",
        None,
    ),
    (
        "stranger with the tag",
        {"sender": STRANGER, "subject": "Re: [DM-000001] Drucker"},
        {},
        "create",
        None,
        "sender stranger@evil.example is not a participant of DM-000001 "
        "(matched by subject tag DM-000001)",
        1,
    ),
    (
        "stranger with the In-Reply-To of the customer's mail",
        {"sender": STRANGER, "in_reply_to": f"<{ERIKAS_MAIL}>"},
        {"candidates": BY_ERIKAS_MAIL},
        "create",
        None,
        f"(matched by In-Reply-To <{ERIKAS_MAIL}>)",
        1,
    ),
    (
        "stranger with the customer's token in the plus address",
        {"sender": STRANGER, "to": plus(1, token(1, ERIKA))},
        {},
        "create",
        None,
        "is not a participant of DM-000001 (matched by plus address",
        1,
    ),
    (
        "stranger with a token made for them on another ticket",
        {"sender": STRANGER, "to": plus(1, token(2, STRANGER))},
        {},
        "create",
        None,
        "is not a participant",
        1,
    ),
    (
        "stranger with an agent token",
        {"sender": STRANGER, "to": plus(1, token(1, ANNA, AGENT))},
        {},
        "create",
        None,
        "is not a participant",
        1,
    ),
    (
        "tag of a ticket that does not exist",
        {"sender": STRANGER, "subject": "Re: [DM-000099] x"},
        {},
        "create",
        None,
        "no known message referenced",
        None,
    ),
    (
        "our own plus address",
        {"sender": "support+dm-000001@dataandmore.com", "subject": "Re: [DM-000001] x"},
        {},
        "ignore",
        None,
        "from our own address support+dm-000001@dataandmore.com: it is us",
        None,
    ),
    (
        "our support address",
        {"sender": "Support <SUPPORT@dataandmore.com>"},
        {},
        "ignore",
        None,
        "it is us",
        None,
    ),
    (
        "our Message-ID domain",
        {"sender": "robot@mailtriage.dataandmore.com"},
        {},
        "ignore",
        None,
        "it is us",
        None,
    ),
    (
        "reply to a waiting ticket",
        {"sender": ERIKA, "subject": "AW: [DM-000001] x"},
        {"tickets": (replace(T1, status="waiting"),)},
        "append",
        1,
        "sender is the requester",
        None,
    ),
    (
        "reply to a resolved ticket within the window reopens",
        {"sender": ERIKA, "subject": "AW: [DM-000001] x"},
        {"tickets": (replace(T1, status="resolved", resolved_at=NOW - timedelta(days=3)),)},
        "append",
        1,
        "sender is the requester",
        None,
    ),
    (
        "reply to a resolved ticket after the window",
        {"sender": ERIKA, "subject": "AW: [DM-000001] x"},
        {"tickets": (replace(T1, status="resolved", resolved_at=NOW - timedelta(days=30)),)},
        "create",
        None,
        "past the reopen window",
        1,
    ),
    (
        "reply to a closed ticket",
        {"sender": ERIKA, "subject": "AW: [DM-000001] x"},
        {"tickets": (replace(T1, status="closed"),)},
        "create",
        None,
        "DM-000001: ticket is closed (matched by subject tag DM-000001)",
        1,
    ),
    (
        "over the cap of new tickets",
        {"sender": "robot@kunde.example", "subject": "Hello", "date": NOW},
        {"sender_recent_tickets": 20, "sender_latest_ticket": 7},
        "append",
        7,
        "opened 20 tickets in 60 minutes (cap 20): kept on DM-000007",
        None,
    ),
    (
        "the agent, authenticated",
        {"sender": ANNA, "subject": "Re: [DM-000001] x", "headers": AUTH_PASS},
        {},
        "append",
        1,
        "from agent anna@dataandmore.com: dkim=pass",
        None,
    ),
    (
        "the agent, with an agent token in the plus address",
        {"sender": ANNA, "to": plus(1, token(1, ANNA, AGENT))},
        {},
        "append",
        1,
        "signed agent token",
        None,
    ),
    (
        "spoofed agent: no authentication",
        {"sender": ANNA, "subject": "Re: [DM-000001] #status closed"},
        {},
        "create",
        None,
        "agent address not authenticated",
        1,
    ),
    (
        "spoofed agent: Authentication-Results of someone else's server",
        {"sender": ANNA, "subject": "Re: [DM-000001] x", "headers": AUTH_FOREIGN},
        {},
        "create",
        None,
        "not trusted",
        1,
    ),
    (
        "spoofed agent: an agent token for another ticket",
        {"sender": ANNA, "to": plus(1, token(2, ANNA, AGENT)), "subject": "[DM-000001]"},
        {},
        "create",
        None,
        "agent address not authenticated",
        1,
    ),
]


@pytest.mark.parametrize(
    ("mail_args", "fact_args", "action", "ticket", "reason", "linked"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_match(
    mail_args: dict[str, Any],
    fact_args: dict[str, Any],
    action: str,
    ticket: int | None,
    reason: str,
    linked: int | None,
) -> None:
    parsed = parse_message(mail(**mail_args))
    decision = match(parsed, HUMAN, facts(**fact_args), POLICY)
    assert (decision.action, decision.ticket_id, decision.link_ticket_id) == (
        action,
        ticket,
        linked,
    ), decision.reasons
    assert any(reason in r for r in decision.reasons), decision.reasons
    if linked is not None:
        assert decision.merge_ticket_ids == ()


def _match(policy: ConversationPolicy = POLICY, **kw: Any) -> Decision:
    fact_args = kw.pop("facts", {})
    return match(parse_message(mail(**kw)), HUMAN, facts(**fact_args), policy)


def test_envelope_recipient_carries_the_token() -> None:
    parsed = parse_message(mail(sender=ERIKA))
    rcpt = (plus(1, token(1, ERIKA)),)
    decision = match(parsed, HUMAN, facts(), POLICY, envelope_recipients=rcpt)
    assert (decision.action, decision.ticket_id) == ("append", 1)
    assert match(parsed, HUMAN, facts(), POLICY).action == "create"


def test_a_token_wins_over_in_reply_to_and_the_tag() -> None:
    decision = _match(
        sender=ERIKA,
        to=plus(1, token(1, ERIKA)),
        subject="Re: [DM-000003] x",
        in_reply_to="<other@x>",
        facts={
            "candidates": (Candidate(2, "other@x", "message", requester=ERIKA),),
            "tickets": (T1, TicketFacts(2, "open", ERIKA), TicketFacts(3, "open", ERIKA)),
        },
    )
    assert decision.ticket_id == 1
    decision = _match(
        sender=ERIKA,
        subject="Re: [DM-000003] x",
        in_reply_to="<other@x>",
        facts={
            "candidates": (Candidate(2, "other@x", "message", requester=ERIKA),),
            "tickets": (T1, TicketFacts(2, "open", ERIKA), TicketFacts(3, "open", ERIKA)),
        },
    )
    assert decision.ticket_id == 2


def test_status_changes_of_a_customer_reply() -> None:
    waiting = _match(
        sender=ERIKA, subject="[DM-1]", facts={"tickets": (replace(T1, status="waiting"),)}
    )
    assert waiting.status_change == ("waiting", "open", "customer replied")
    resolved = replace(T1, status="resolved", resolved_at=NOW - timedelta(days=3))
    reopened = _match(sender=ERIKA, subject="[DM-1]", facts={"tickets": (resolved,)})
    assert reopened.status_change is not None and reopened.status_change[:2] == (
        "resolved",
        "open",
    )
    assert _match(sender=ERIKA, subject="[DM-1]").status_change is None  # open stays


def test_organisation_participants_only_when_configured_and_never_freemail() -> None:
    colleague = {"sender": "kollege@kunde.example", "subject": "Re: [DM-000001] x"}
    assert _match(**colleague).action == "create"
    org = replace(POLICY, organisation_participants=True)
    assert _match(org, **colleague).action == "append"
    free = TicketFacts(1, "open", requester="erika@gmail.com")
    other = {"sender": "someone@gmail.com", "subject": "Re: [DM-000001] x"}
    assert _match(org, facts={"tickets": (free,)}, **other).action == "create"


def test_no_acknowledgement_when_the_sender_asks_for_none_or_is_an_agent() -> None:
    for value in ("All", "OOF, AutoReply", "autoreply"):
        decision = _match(headers={"X-Auto-Response-Suppress": value})
        assert decision.action == "create" and not decision.acknowledge, value
    assert _match(headers={"X-Auto-Response-Suppress": "DR, RN"}).acknowledge
    assert _match().acknowledge
    agent = _match(sender=ANNA, subject="New thing", headers=AUTH_PASS)
    assert agent.action == "create" and not agent.acknowledge


def test_a_linked_ticket_takes_no_old_tag_in_its_subject() -> None:
    decision = _match(sender=STRANGER, subject="Re: [DM-000001] Bitte um Rückruf")
    assert decision.subject == "Re: Bitte um Rückruf"
    assert _match(sender=ERIKA, subject="Neue Frage").subject is None


def test_the_cap_counts_only_mail_written_within_its_window() -> None:
    """An archive imported in one go (old Date headers) is no loop: each of a customer's
    old mails gets its own ticket, not the last one."""
    capped = {"sender_recent_tickets": 50, "sender_latest_ticket": 7}
    old = _match(sender="jsmith@kunde.example", date=NOW - timedelta(days=400), facts=capped)
    assert old.action == "create"
    live = _match(sender="jsmith@kunde.example", date=NOW - timedelta(minutes=5), facts=capped)
    assert (live.action, live.ticket_id) == ("append", 7)


def test_the_cap_is_off_at_zero() -> None:
    capped = {"sender_recent_tickets": 50, "sender_latest_ticket": 7}
    assert _match(replace(POLICY, new_tickets_per_address=0), facts=capped).action == "create"
    assert _match(facts={"sender_recent_tickets": 19, "sender_latest_ticket": 7}).action == (
        "create"
    )


def test_trust_by_address_makes_the_from_an_agent() -> None:
    trusting = replace(POLICY, trust_agents_by_address=True)
    decision = _match(trusting, sender=ANNA, subject="Re: [DM-000001] x")
    assert decision.role == "agent" and decision.agent is not None
    assert _match(sender=ANNA, subject="Re: [DM-000001] x").role == "customer"


def test_agent_commands_are_parsed_and_checked_against_the_ticket() -> None:
    body = "#status resolved\n#level L2\n\nDear Erika, fixed.\n\n#note\nCalled them.\n"
    decision = _match(sender=ANNA, subject="Re: [DM-000001] x", headers=AUTH_PASS, body=body)
    reply = decision.agent_reply
    assert reply is not None and reply.ok
    assert reply.public_text == "Dear Erika, fixed." and reply.note == "Called them."
    assert decision.status_change == ("open", "resolved", "#status resolved")
    bad = _match(sender=ANNA, subject="[DM-1]", headers=AUTH_PASS, body="#bogus\nHi")
    assert bad.agent_reply is not None and not bad.agent_reply.ok
    assert bad.status_change is None
    closed = _match(
        sender=ANNA,
        subject="[DM-1]",
        headers=AUTH_PASS,
        body="#status open\nHi",
        facts={"tickets": (replace(T1, status="closed"),)},
    )
    assert closed.agent_reply is not None and "closed is final" in str(closed.agent_reply.errors)
    plain = _match(sender=ANNA, subject="[DM-1]", headers=AUTH_PASS, body="Hello Erika")
    assert plain.status_change == ("open", "waiting", "agent replied; waiting for the customer")


def test_agent_reply_drops_the_quoted_notification() -> None:
    body = (
        "Hallo Erika, bitte neu starten.\n\n"
        "Am 02.11.2026 um 10:00 schrieb Support <support@dataandmore.com>:\n"
        "> Neues Ticket DM-000001\n> #close\n> Kundentext\n"
    )
    decision = _match(sender=ANNA, subject="[DM-1]", headers=AUTH_PASS, body=body)
    assert decision.agent_reply is not None and decision.agent_reply.ok
    assert decision.agent_reply.public_text == "Hallo Erika, bitte neu starten."
    assert decision.status_change == ("open", "waiting", "agent replied; waiting for the customer")


def test_participants_from_to_cc_and_forwards_never_us_or_agents() -> None:
    parsed = parse_message(
        mail(
            sender=ERIKA,
            to=f"support@dataandmore.com, {plus(1)}, chef@kunde.example",
            headers={"Cc": f"max@kunde.example, {ANNA}, x@mailtriage.dataandmore.com, {ERIKA}"},
        )
    )
    assert new_participants(parsed, POLICY) == (
        ("chef@kunde.example", "", "to"),
        ("max@kunde.example", "", "cc"),
    )
    assert new_participants(parsed, POLICY, T1) == (("chef@kunde.example", "", "to"),)
    forward = parse_message(
        mail(
            sender="helpdesk@kunde.example",
            subject="WG: Drucker kaputt",
            body="Bitte um Hilfe, siehe unten.\n\n"
            "Von: End User <enduser@kunde.example>\n"
            "Gesendet: Montag, 2. November 2026 09:00\n"
            "An: helpdesk@kunde.example\n"
            "Betreff: Drucker kaputt\n\n"
            "Mein Drucker druckt nicht.\n",
        )
    )
    assert forwarded_sender(forward) == ("enduser@kunde.example", "End User")
    assert ("enduser@kunde.example", "End User", "forwarded") in new_participants(forward, POLICY)
    assert forwarded_sender(parse_message(mail(body="From: nobody@x.example\nhi"))) is None


def test_own_addresses() -> None:
    assert is_own_address("Support+anything@DataAndMore.com", POLICY)
    assert is_own_address("bot@mailtriage.dataandmore.com", POLICY)
    assert not is_own_address("support@dataandmore.com.evil.example", POLICY)
    assert not is_own_address("supportx@dataandmore.com", POLICY)


# -- the existing threading rules ------------------------------------------------------


def test_references_are_tried_in_reply_to_first_then_newest() -> None:
    assert thread_candidates(REPLY_MAIL) == ("p@kunde.example", "root@kunde.example")


def test_no_candidate_creates() -> None:
    decision = match(REPLY_MAIL, HUMAN, facts())
    assert decision.action == "create" and decision.reasons == ("no known message referenced",)


def test_a_held_message_wins_over_a_sibling_reply() -> None:
    found = facts(
        candidates=(
            Candidate(7, "root@kunde.example", "message", requester=ERIKA),
            Candidate(3, "p@kunde.example", "reference", article_sender=ERIKA, requester=ERIKA),
        ),
        tickets=(),
    )
    decision = match(REPLY_MAIL, HUMAN, found)
    assert (decision.action, decision.ticket_id) == ("append", 7)
    assert decision.reasons[0] == "matched DM-000007 by References <root@kunde.example>"


def test_a_sibling_reply_counts_only_from_the_same_sender() -> None:
    sibling = Candidate(3, "p@kunde.example", "reference", "ERIKA@kunde.example", ERIKA)
    stranger = Candidate(
        4, "p@kunde.example", "reference", "max@other.example", "max@other.example"
    )
    decision = match(REPLY_MAIL, HUMAN, facts(candidates=(stranger, sibling), tickets=()))
    assert (decision.action, decision.ticket_id) == ("append", 3)
    assert decision.reasons[0] == (
        "matched DM-000003 by In-Reply-To <p@kunde.example> (as an earlier reply to it does)"
    )
    assert match(REPLY_MAIL, HUMAN, facts(candidates=(stranger,))).action == "create"


def test_early_replies_are_merged_only_from_people_on_the_parent() -> None:
    early = (
        EarlyReply(5, sender=ERIKA),
        EarlyReply(6, "corrected by agent", sender=ERIKA),
        EarlyReply(5, sender=ERIKA),
        # the colliding Message-ID: customer B's early reply is not the stranger's
        EarlyReply(8, sender="bert@b.example", recipients=("support@dataandmore.com",)),
    )
    decision = match(REPLY_MAIL, HUMAN, facts(early_replies=early))
    assert decision.action == "create" and decision.merge_ticket_ids == (5,)
    assert decision.reasons[1:] == (
        "merges ticket 5: reply arrived before its parent <r@kunde.example>",
        "ticket 6 refers to this message but is kept: corrected by agent",
        "ticket 8 refers to this message but is kept: its sender bert@b.example is not a "
        "participant of this message",
    )


def test_an_early_reply_of_someone_on_cc_is_adopted_only_when_it_answered_the_sender() -> None:
    parent = parse_message(
        mail(sender=STRANGER, message_id="<r@kunde.example>", headers={"Cc": "bert@b.example"})
    )
    answered = EarlyReply(8, sender="bert@b.example", recipients=(STRANGER,))
    not_answered = EarlyReply(9, sender="bert@b.example", recipients=("support@dataandmore.com",))
    decision = match(parent, HUMAN, facts(early_replies=(answered, not_answered)))
    assert decision.merge_ticket_ids == (8,)


def test_automatic_answer_to_our_mail_is_a_note_and_a_duplicate_is_a_duplicate() -> None:
    ooo = LoopVerdict("out_of_office", ("subject:out of office",))
    our = OurMail(9, "ack-9@dataandmore.com", (ERIKA,))
    decision = match(REPLY_MAIL, ooo, facts(our_mail=our))
    assert (decision.action, decision.ticket_id, decision.note) == ("ignore", 9, "out_of_office")
    assert match(REPLY_MAIL, LoopVerdict("list", ()), facts(our_mail=our)).note is None
    duplicate = match(REPLY_MAIL, HUMAN, facts(duplicate_article_id=4))
    assert (duplicate.action, duplicate.duplicate_article_id) == ("duplicate", 4)


@pytest.mark.parametrize("header", ["Delivered-To", "X-Original-To", "Cc"])
def test_the_token_is_read_from_every_recipient_header(header: str) -> None:
    decision = _match(sender=ERIKA, headers={header: plus(1, token(1, ERIKA))})
    assert (decision.action, decision.ticket_id) == ("append", 1)
    assert "signed reply token" in decision.reasons[0]


def test_a_forged_delivered_to_is_only_a_hint() -> None:
    """Anyone can write a Delivered-To header; without a token for the sender it is a
    plus address like any other, and the sender check decides."""
    decision = _match(sender=STRANGER, headers={"Delivered-To": plus(1, token(1, ERIKA))})
    assert (decision.action, decision.link_ticket_id) == ("create", 1)


def test_the_runner_builds_the_policy_from_the_settings(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from mailtriage.config import settings_from_dict
    from mailtriage.runners.conversation import conversation_policy, warn_about_trust
    from mailtriage.triage.rules_file import load_rules

    settings = settings_from_dict(
        {
            "storage": {"dir": str(tmp_path)},
            "security": {"secret": SECRET.decode(), "authserv_ids": ["mx.dataandmore.com"]},
            "agents": [{"address": "Anna@DataAndMore.com", "name": "Anna", "level": "L2"}],
            "conversation": {"new_tickets_per_address": 7, "reopen_days": 3},
        }
    )
    policy = conversation_policy(settings, load_rules(None))
    assert policy.secret == SECRET and policy.agents == (AgentSpec(ANNA, "Anna", "L2"),)
    assert (policy.new_tickets_per_address, policy.reopen_days) == (7, 3)
    assert policy.taxonomy.agents == ((ANNA, "Anna"),) and "how_to" in policy.taxonomy.categories
    assert not policy.trust_agents_by_address
    warn_about_trust(settings)
    assert "trust_agents_by_address" not in caplog.text
    trusting = settings_from_dict(
        {"storage": {"dir": str(tmp_path)}, "security": {"trust_agents_by_address": True}}
    )
    warn_about_trust(trusting)
    assert caplog.text.count("security.trust_agents_by_address is on") == 1
