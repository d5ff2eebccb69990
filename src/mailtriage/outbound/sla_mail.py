"""Mail of the SLA jobs, queued in the job's transaction like the conversation mail.

| kind | to | when |
| --- | --- | --- |
| ``sla_warning`` | the agents of the ticket's level (else L1) | a share of a target has passed |
| ``sla_breach`` | ``sla.team_lead_address`` | a target was missed |
| ``escalation`` | the L2 agents | an L1 ticket went to L2: the conversation and screenshots |
| ``escalation_note`` | the requester | specialists are on it |
| ``reminder`` | the requester | the ticket has waited for them a while |
| ``auto_close`` | the requester | it was closed after the reminder |

The key (ticket, kind, step) is UNIQUE, so a job that runs twice, or on two
instances, queues each mail once. Steps: ``sla_warning`` = ((cycle * 4 + clock) * 10
+ warning) * 100 + agent index; ``sla_breach`` = (cycle * 4 + clock) * 10;
``escalation`` = agent index; ``reminder`` = the how-many-th reminder; else 0.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtriage.outbound import sla as due_words
from mailtriage.outbound.ack import OutboundPolicy, choose_language
from mailtriage.outbound.conversation_mail import (
    COMMANDS,
    MAX_AGENTS,
    ConversationContext,
    _plan,
    _queue,
    _subject,
    agents_of,
    attachment_list,
    notice_agents,
    requester_address,
    staff_quote,
)
from mailtriage.outbound.headers import AUTO_GENERATED, clean_header_value, safe_address
from mailtriage.pipeline.reply_token import AGENT, REPLY
from mailtriage.pipeline.subject_tag import ticket_reference as reference
from mailtriage.sla import CLOCKS, Action
from mailtriage.store.models import Article, Attachment, Ticket

__all__ = [
    "CUSTOMER_KINDS",
    "SLA_KINDS",
    "queue_auto_close",
    "queue_breach",
    "queue_escalation",
    "queue_reminder",
    "queue_warning",
]

WARNING = "sla_warning"
BREACH = "sla_breach"
ESCALATION = "escalation"
ESCALATION_NOTE = "escalation_note"
REMINDER = "reminder"
AUTO_CLOSE = "auto_close"
SLA_KINDS = (WARNING, BREACH, ESCALATION, ESCALATION_NOTE, REMINDER, AUTO_CLOSE)
# Mail to the customer: recorded as a public outgoing article (the rest is internal).
CUSTOMER_KINDS = (ESCALATION_NOTE, REMINDER, AUTO_CLOSE)
MAX_TEXT = 20_000  # characters of one article in the escalation notice


def _clock_step(action: Action) -> int:
    return (action.cycle * len(CLOCKS) + CLOCKS.index(action.clock)) * 10


def _due(action: Action, policy: OutboundPolicy, language: str) -> str:

    due = action.detail.get("due")
    if not due:
        return ""
    return due_words.format_due(
        datetime.fromisoformat(str(due)), policy.fallback_timezone, language
    )


def _labels(ticket: Ticket) -> dict[str, Any]:
    return {
        "level": ticket.level or "",
        "priority": ticket.priority or "",
        "category": ticket.category or "",
        "status": ticket.status,
        "assignee": ticket.assignee or "",
    }


def _context(
    ticket: Ticket,
    policy: OutboundPolicy,
    name: str,
    reply_to: str,
    values: dict[str, Any],
    attachments: tuple[dict[str, Any], ...] = (),
) -> ConversationContext:
    return ConversationContext(
        reference=reference(policy.prefix, ticket.id),
        to_name=clean_header_value(name, 200),
        reply_to=reply_to,
        subject=_subject(ticket, policy),
        auto_submitted=AUTO_GENERATED,
        attachments=attachments,
        values=values,
    )


def queue_warning(
    session: Session, ticket: Ticket, action: Action, policy: OutboundPolicy
) -> list[int]:
    """Warn the agents of the ticket's level (else L1) that a target is near."""
    language = choose_language(ticket.language, policy)
    ids = []
    for index, agent in notice_agents(policy.agents, ticket.level):
        address = safe_address(agent.address)
        if address is None:
            continue
        values = _labels(ticket) | {
            "clock": action.clock,
            "percent": round(float(action.detail.get("fraction", 0)) * 100),
            "due": _due(action, policy, language),
        }
        context = _context(
            ticket, policy, agent.name, policy.reply_to(ticket.id, address, AGENT), values
        )
        step = (_clock_step(action) + action.index) * MAX_AGENTS + index
        plan = _plan(policy, ticket, WARNING, step, address, AGENT, language, context)
        ids.append(_queue(session, ticket.id, plan))
    return ids


def queue_breach(
    session: Session, ticket: Ticket, action: Action, policy: OutboundPolicy
) -> int | None:
    """Tell the team lead that a target was missed (None: no lead configured)."""
    address = safe_address(policy.team_lead_address)
    if address is None:
        return None
    language = choose_language(ticket.language, policy)
    values = _labels(ticket) | {"clock": action.clock, "due": _due(action, policy, language)}
    context = _context(ticket, policy, "", policy.reply_to(ticket.id, address, AGENT), values)
    plan = _plan(policy, ticket, BREACH, _clock_step(action), address, AGENT, language, context)
    return _queue(session, ticket.id, plan)


def _conversation(session: Session, ticket_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Article).where(Article.ticket_id == ticket_id).order_by(Article.id)
    )
    out = []
    for a in rows:
        who = a.sender_name or a.author or a.sender or "system"
        out.append(
            {
                "direction": a.direction,
                "internal": bool(a.internal),
                "who": clean_header_value(who, 200),
                "date": (a.date or a.created_at).isoformat(timespec="minutes"),
                "text": staff_quote(a.text)[:MAX_TEXT],
            }
        )
    return out


def queue_escalation(
    session: Session, ticket: Ticket, action: Action, policy: OutboundPolicy
) -> list[int]:
    """The escalation notice to every L2 agent (the conversation so far and the
    screenshots) and a short note to the requester; ids of the rows queued."""
    language = choose_language(ticket.language, policy)
    screenshots = list(
        session.scalars(
            select(Attachment)
            .join(Article, Attachment.article_id == Article.id)
            .where(
                Article.ticket_id == ticket.id,
                Article.direction == "in",
                Attachment.is_screenshot.is_(True),
            )
            .order_by(Attachment.id)
        )
    )
    attachments = attachment_list(screenshots, policy.attachment_limit_bytes)
    requester = ticket.requester
    values = _labels(ticket) | {
        "rule": str(action.detail.get("rule", "")),
        "elapsed_hours": action.detail.get("business_hours_elapsed", 0),
        "customer_name": clean_header_value(requester.name if requester else "", 200),
        "customer_address": requester.email if requester else "",
        "conversation": _conversation(session, ticket.id),
        "commands": list(COMMANDS),
    }
    ids = []
    for index, agent in agents_of(policy.agents, "L2"):
        address = safe_address(agent.address)
        if address is None:
            continue
        reply_to = policy.reply_to(ticket.id, address, AGENT)
        context = _context(ticket, policy, agent.name, reply_to, values, attachments)
        plan = _plan(policy, ticket, ESCALATION, index, address, AGENT, language, context)
        ids.append(_queue(session, ticket.id, plan))
    note = _to_customer(session, ticket, policy, ESCALATION_NOTE, 0, {})
    return ids + ([note] if note is not None else [])


def queue_reminder(
    session: Session, ticket: Ticket, action: Action, policy: OutboundPolicy, step: int
) -> int | None:
    values = {"days": f"{float(action.detail.get('days', 0)):g}"}
    return _to_customer(session, ticket, policy, REMINDER, step, values)


def queue_auto_close(
    session: Session, ticket: Ticket, action: Action, policy: OutboundPolicy
) -> int | None:
    values = {"days": f"{float(action.detail.get('days', 0)):g}"}
    return _to_customer(session, ticket, policy, AUTO_CLOSE, 0, values)


def _to_customer(
    session: Session,
    ticket: Ticket,
    policy: OutboundPolicy,
    kind: str,
    step: int,
    values: dict[str, Any],
) -> int | None:
    """Mail to the requester only (never a participant or anyone else)."""
    requester = ticket.requester
    address = requester_address(ticket, policy)
    if address is None:
        return None
    language = choose_language(ticket.language, policy)
    name = requester.name if requester else ""
    context = _context(ticket, policy, name, policy.reply_to(ticket.id, address, REPLY), values)
    plan = _plan(policy, ticket, kind, step, address, REPLY, language, context)
    return _queue(session, ticket.id, plan)
