"""Mail of the conversation: agent notices, agents' replies relayed to the customer,
and the error answer to an agent's command mail.

Each ``queue_*`` function writes outbox rows in the caller's session (no commit), like
``queue_ack``: the key (ticket, kind, step) is UNIQUE, and a key that is queued already
is not queued again (its id is returned), so calling twice is harmless. What a mail
needs is fixed in its ``ConversationContext`` (stored as JSON with the row); the
bytes of attachments stay in the blob store and are attached when the mail is sent.

Steps: ``notice`` = article id * 100 + the agent's index in ``[[agents]]`` (one mail
per agent and customer article; agents past the 100th are not notified), ``reply`` =
the outgoing article's id, ``cmd_error`` = the agent's inbound message id.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from mailtriage.config import AgentSettings
from mailtriage.outbound.ack import OutboundPolicy, OutboxPlan, choose_language, strip_reference
from mailtriage.outbound.headers import (
    AUTO_GENERATED,
    AUTO_REPLIED,
    MAX_REFERENCES,
    clean_header_value,
    safe_address,
    safe_message_id,
)
from mailtriage.outbound.outbox import enqueue, enqueue_many
from mailtriage.pipeline.classify import Classification
from mailtriage.pipeline.conversation import is_own_address
from mailtriage.pipeline.reply_token import AGENT, REPLY
from mailtriage.pipeline.subject_tag import ticket_reference as reference
from mailtriage.portal.links import strip_page_links
from mailtriage.store.apply import NewTicket, add_event
from mailtriage.store.models import Article, Attachment, Participant, Ticket, utcnow
from mailtriage.store.outbound_models import Outbox
from mailtriage.store.tables import table

__all__ = [
    "CMD_ERROR",
    "CONVERSATION_KINDS",
    "FEEDBACK",
    "NOTICE",
    "RELAY",
    "ConversationContext",
    "hide_address",
    "notice_agents",
    "notice_step",
    "queue_agent_notices",
    "queue_command_error",
    "queue_feedback_request",
    "queue_relay",
    "staff_quote",
]

NOTICE = "notice"
RELAY = "reply"
CMD_ERROR = "cmd_error"
FEEDBACK = "feedback"
CONVERSATION_KINDS = (NOTICE, RELAY, CMD_ERROR, FEEDBACK)
MAX_AGENTS = 100  # notice steps: article id * MAX_AGENTS + agent index
COMMANDS = ("#status", "#level", "#category", "#priority", "#assign", "#note", "#close")

log = logging.getLogger(__name__)

_ARTICLE = table(Article)
_ATTACHMENT = table(Attachment)
# A notice's article and its attachments (one row each, or one row without any).
_NOTICE_ARTICLE = (
    select(
        _ARTICLE.c.ticket_id,
        _ARTICLE.c.sender,
        _ARTICLE.c.sender_name,
        _ARTICLE.c.text,
        _ATTACHMENT.c.filename,
        _ATTACHMENT.c.content_type,
        _ATTACHMENT.c.size,
        _ATTACHMENT.c.sha256,
    )
    .select_from(_ARTICLE.outerjoin(_ATTACHMENT, _ATTACHMENT.c.article_id == _ARTICLE.c.id))
    .where(_ARTICLE.c.id == bindparam("article_id"))
    .order_by(_ATTACHMENT.c.id)
)


@dataclass(frozen=True)
class ConversationContext:
    """Everything a conversation mail needs, fixed when queued (stored as JSON).

    ``values`` are the kind's own template variables; ``attachments`` are attachment
    rows (filename, content_type, size, sha256, attached) whose bytes the sender reads
    from the blob store when ``attached``; ``auto_submitted`` "" writes no header.
    """

    reference: str
    to_name: str
    reply_to: str
    subject: str
    from_name: str = ""  # "" -> outbound.from_name
    cc: tuple[tuple[str, str], ...] = ()  # (address, name)
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str = AUTO_GENERATED
    attachments: tuple[dict[str, Any], ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["cc"] = [list(c) for c in self.cc]
        data["references"] = list(self.references)
        data["attachments"] = [dict(a) for a in self.attachments]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversationContext:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["cc"] = tuple((str(a), str(n)) for a, n in known.get("cc") or ())
        known["references"] = tuple(known.get("references") or ())
        known["attachments"] = tuple(dict(a) for a in known.get("attachments") or ())
        known["values"] = dict(known.get("values") or {})
        return cls(**known)

    def variables(self, *, support_address: str, ticket_url: str = "") -> dict[str, Any]:
        """The template variables (documented in templates/README.md); ``ticket_url``:
        the recipient's link to the ticket's page (made when the mail is sent)."""
        return {
            "ticket_url": ticket_url,
            "reference": self.reference,
            "name": self.to_name,
            "subject": self.subject,
            "support_address": support_address,
            "reply_address": self.reply_to,
            "attachments": [
                {
                    "filename": a["filename"],
                    "size": a["size"],
                    "attached": bool(a.get("attached")),
                }
                for a in self.attachments
            ],
        } | self.values


# -- pure helpers ---------------------------------------------------------------------


def notice_agents(
    agents: tuple[AgentSettings, ...], level: str | None
) -> list[tuple[int, AgentSettings]]:
    """(index in ``[[agents]]``, agent) of the agents of ``level``; with none, those of
    L1; no agents configured: none."""
    for wanted in (level, "L1"):
        if found := agents_of(agents, wanted):
            return found
    return []


def agents_of(
    agents: tuple[AgentSettings, ...], level: str | None
) -> list[tuple[int, AgentSettings]]:
    """(index in ``[[agents]]``, agent) of the agents of ``level`` (the first
    MAX_AGENTS of the list count)."""
    return [(i, a) for i, a in enumerate(agents) if a.level == level and i < MAX_AGENTS]


def staff_quote(text: str) -> str:
    """An article's text as quoted in mail to staff: without the customer page links
    it may carry (our mail to the customer, or the customer quoting it); such a link is
    a capability made for the customer's address. Every staff mail quotes through here."""
    return strip_page_links(text)


def notice_step(article_id: int, agent_index: int) -> int:
    return article_id * MAX_AGENTS + agent_index


def attachment_list(rows: list[Any], limit_bytes: int) -> tuple[dict[str, Any], ...]:
    """Attachment rows -> context entries; ``attached`` while the total fits the cap
    (larger ones are listed in the text only)."""
    out = []
    total = 0
    for row in rows:
        attached = total + int(row.size) <= limit_bytes
        if attached:
            total += int(row.size)
        out.append(
            {
                "filename": clean_header_value(row.filename or "attachment", 200) or "attachment",
                "content_type": row.content_type,
                "size": int(row.size),
                "sha256": row.sha256,
                "attached": attached,
            }
        )
    return tuple(out)


def _subject(ticket: Ticket | NewTicket, policy: OutboundPolicy) -> str:
    return clean_header_value(strip_reference(ticket.subject or "", policy.prefix), 500)


def _plan(
    policy: OutboundPolicy,
    ticket: Ticket | NewTicket,
    kind: str,
    step: int,
    recipient: str,
    purpose: str,
    language: str,
    context: ConversationContext,
) -> OutboxPlan:
    message_id = policy.message_id(
        ticket.id, kind, step, recipient, purpose, ticket.created_at.isoformat()
    )
    return OutboxPlan(
        kind=kind,
        step=step,
        message_id=message_id,
        recipient=recipient,
        language=language,
        context=context,
        deadline=utcnow() + timedelta(hours=policy.give_up_after_hours),
    )


def _queue(session: Session, ticket_id: int, plan: OutboxPlan) -> int:
    """The row's id; an existing row with the same key is kept (idempotent)."""
    existing = session.scalar(
        select(Outbox.id).where(
            Outbox.ticket_id == ticket_id, Outbox.kind == plan.kind, Outbox.step == plan.step
        )
    )
    if existing is not None:
        return int(existing)
    return enqueue(session, ticket_id, plan)


# -- notices to agents ----------------------------------------------------------------


def queue_agent_notices(
    session: Session,
    ticket: Ticket | NewTicket,
    inbound_id: int,
    article_id: int,
    classification: Classification | None,
    policy: OutboundPolicy,
    *,
    new: bool = False,
) -> list[int]:
    """One notice per agent of the ticket's level (else L1) about the customer's
    article ``article_id``: the text, the classification and why, the screenshots.
    The Reply-To carries the agent's AGENT token: replying answers the customer.
    ``new``: the ticket was created in this transaction from this article alone (it
    adopted no early replies): there is no earlier article and nothing queued for it
    yet, so neither is looked up (the rows go in with one statement)."""
    agents = notice_agents(policy.agents, ticket.level)
    if not agents:
        return []
    rows = session.connection().execute(_NOTICE_ARTICLE, {"article_id": article_id}).all()
    if not rows or rows[0].ticket_id != ticket.id:
        raise ValueError(f"article {article_id} is not one of ticket {ticket.id}")
    article = rows[0]
    language = choose_language(ticket.language, policy)
    follow_up = False if new else _earlier_inbound(session, ticket.id, article_id)
    values = _notice_values(ticket, article, classification) | {"follow_up": follow_up}
    files = [r for r in rows if r.sha256 is not None]
    attachments = attachment_list(files, policy.attachment_limit_bytes)
    plans = []
    for index, agent in agents:
        address = safe_address(agent.address)
        if address is None:
            log.warning("agents[%d].address %r cannot be written to", index, agent.address)
            continue
        context = ConversationContext(
            reference=reference(policy.prefix, ticket.id),
            to_name=clean_header_value(agent.name, 200),
            reply_to=policy.reply_to(ticket.id, address, AGENT),
            subject=_subject(ticket, policy),
            auto_submitted=AUTO_GENERATED,
            attachments=attachments,
            values=values,
        )
        step = notice_step(article_id, index)
        plans.append(_plan(policy, ticket, NOTICE, step, address, AGENT, language, context))
    if new:
        return enqueue_many(session, ticket.id, plans)
    return [_queue(session, ticket.id, plan) for plan in plans]


def _earlier_inbound(session: Session, ticket_id: int, article_id: int) -> bool:
    """Whether the customer wrote before (the notice is about a reply, not a new ticket)."""
    earlier = session.scalar(
        select(Article.id)
        .where(
            Article.ticket_id == ticket_id,
            Article.direction == "in",
            Article.id < article_id,
        )
        .limit(1)
    )
    return earlier is not None


def _notice_values(
    ticket: Ticket | NewTicket, article: Any, classification: Classification | None
) -> dict[str, Any]:
    """(``article``: a row with its sender, sender_name and text)"""
    c = classification
    fields = (
        (c.level, c.category, c.priority, c.language)
        if c is not None
        else (ticket.level, ticket.category, ticket.priority, ticket.language)
    )
    level, category, priority, lang = (value or "" for value in fields)
    reasons = list(c.reasons) if c is not None else list(ticket.classification_reasons or [])
    return {
        "customer_name": clean_header_value(article.sender_name or "", 200),
        "customer_address": article.sender,
        "text": staff_quote(article.text),
        "level": level,
        "category": category,
        "priority": priority,
        "language": lang,
        "reasons": [str(r) for r in reasons],
        "commands": list(COMMANDS),
    }


# -- an agent's reply, relayed to the customer ----------------------------------------


def queue_relay(
    session: Session, ticket: Ticket, article_id: int, agent_name: str, policy: OutboundPolicy
) -> int | None:
    """Send the outgoing article ``article_id`` (an agent's public text) to the
    requester, the participants in Cc, from the support address with the agent's name;
    the agent's address appears nowhere. None (and an event) when there is nobody to
    send it to."""
    article = _article(session, ticket, article_id)
    if article.direction != "out" or article.internal:
        raise ValueError(f"article {article_id} is not a public outgoing article")
    requester = ticket.requester
    address = safe_address(requester.email) if requester else None
    if address is None:
        why = {"article": article_id, "reason": "the requester has no address to write to"}
        add_event(session, ticket.id, None, "relay_skipped", why)
        return None
    parent, refs = _thread(session, ticket.id)
    name = clean_header_value(agent_name, 100)
    context = ConversationContext(
        reference=reference(policy.prefix, ticket.id),
        to_name=clean_header_value(requester.name if requester else "", 200),
        reply_to=policy.reply_to(ticket.id, address, REPLY),
        subject=_subject(ticket, policy),
        from_name=f"{name} ({policy.from_name})" if name else policy.from_name,
        cc=_cc(session, ticket.id, address, policy),
        in_reply_to=parent,
        references=refs,
        auto_submitted="",  # written by a person (RFC 3834: no Auto-Submitted)
        attachments=attachment_list(list(article.attachments), policy.attachment_limit_bytes),
        values={"agent_name": name, "text": hide_address(article.text, article.author, policy)},
    )
    language = choose_language(ticket.language, policy)
    plan = _plan(policy, ticket, RELAY, article_id, address, REPLY, language, context)
    return _queue(session, ticket.id, plan)


def requester_address(ticket: Ticket, policy: OutboundPolicy) -> str | None:
    """Where mail for the ticket's requester alone goes; None when the address is
    unusable or one of ours (we never write to ourselves: a loop)."""
    requester = ticket.requester
    address = safe_address(requester.email) if requester else None
    if address is None or is_own_address(address, policy):
        return None
    return address


def queue_feedback_request(session: Session, ticket: Ticket, policy: OutboundPolicy) -> int | None:
    """Ask the requester how we did, once per ticket (the links to rate are on the
    ticket's page; a reply with a number counts too). None when there is nobody to ask
    or it was asked before."""
    if not policy.ask_feedback:
        return None
    requester = ticket.requester
    address = requester_address(ticket, policy)
    if address is None:
        return None
    parent, refs = _thread(session, ticket.id)
    context = ConversationContext(
        reference=reference(policy.prefix, ticket.id),
        to_name=clean_header_value(requester.name if requester else "", 200),
        reply_to=policy.reply_to(ticket.id, address, REPLY),
        subject=_subject(ticket, policy),
        in_reply_to=parent,
        references=refs,
    )
    language = choose_language(ticket.language, policy)
    plan = _plan(policy, ticket, FEEDBACK, 0, address, REPLY, language, context)
    return _queue(session, ticket.id, plan)


def hide_address(text: str, address: str | None, policy: OutboundPolicy) -> str:
    """The agent's text with their own address (say, in a signature) replaced by the
    support address: customers never learn it."""
    if not address:
        return text
    return re.sub(re.escape(address), policy.support_address, text, flags=re.IGNORECASE)


def _thread(session: Session, ticket_id: int) -> tuple[str | None, tuple[str, ...]]:
    """In-Reply-To and References: the customer's latest inbound message."""
    latest = session.scalar(
        select(Article)
        .where(
            Article.ticket_id == ticket_id,
            Article.direction == "in",
            Article.message_id.is_not(None),
        )
        .order_by(Article.id.desc())
        .limit(1)
    )
    if latest is None:
        return None, ()
    parent = safe_message_id(latest.message_id)
    refs = [r for r in (safe_message_id(str(x)) for x in latest.references or []) if r]
    if parent:
        refs.append(parent)
    return parent, tuple(dict.fromkeys(refs))[-MAX_REFERENCES:]


def _cc(
    session: Session, ticket_id: int, requester: str, policy: OutboundPolicy
) -> tuple[tuple[str, str], ...]:
    """The participants to Cc: not the requester, no agent, not our own address
    (suppressed addresses are left out by the sender when it sends)."""
    skip = {a.address.lower() for a in policy.agents} | {requester.lower()}
    out = []
    for row in session.scalars(
        select(Participant).where(Participant.ticket_id == ticket_id).order_by(Participant.address)
    ):
        address = safe_address(row.address)
        if address is None or address.lower() in skip or is_own_address(address, policy):
            continue
        out.append((address, clean_header_value(row.name or "", 200)))
    return tuple(out)


# -- a command mail that was not understood -------------------------------------------


def queue_command_error(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    agent_address: str,
    errors: list[str],
    policy: OutboundPolicy,
) -> int:
    """Tell the agent which lines were not understood and that nothing of that mail
    was applied or relayed."""
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise ValueError(f"no ticket {ticket_id}")
    address = safe_address(agent_address)
    if address is None:
        raise ValueError(f"not an address: {agent_address!r}")
    agent = next((a for a in policy.agents if a.address.lower() == address.lower()), None)
    context = ConversationContext(
        reference=reference(policy.prefix, ticket_id),
        to_name=clean_header_value(agent.name if agent else "", 200),
        reply_to=policy.reply_to(ticket_id, address, AGENT),
        subject=_subject(ticket, policy),
        auto_submitted=AUTO_REPLIED,
        values={"errors": [str(e)[:500] for e in errors], "commands": list(COMMANDS)},
    )
    language = choose_language(ticket.language, policy)
    plan = _plan(policy, ticket, CMD_ERROR, inbound_id, address, AGENT, language, context)
    return _queue(session, ticket_id, plan)


# -- shared ---------------------------------------------------------------------------


def _article(session: Session, ticket: Ticket | NewTicket, article_id: int) -> Article:
    article = session.get(Article, article_id)
    if article is None or article.ticket_id != ticket.id:
        raise ValueError(f"article {article_id} is not one of ticket {ticket.id}")
    return article
