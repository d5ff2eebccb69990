"""Write an authenticated agent's mail to a ticket: the public reply, the internal
note and the commands (the decision and the parsed commands come from the pure
``pipeline.conversation.match``).

Not in ``store/``: level, category and priority go through the ``tickets set``
correction path (``triage.corrections.correct_ticket``), so that ``mailtriage train``
learns from corrections made by email exactly as from those made on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailtriage.pipeline.conversation import Decision
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.store.apply import add_agent_article, set_status
from mailtriage.store.models import Contact, Event, Ticket, utcnow
from mailtriage.triage.corrections import correct_ticket

__all__ = ["AgentApplied", "apply_agent_reply"]


@dataclass(frozen=True)
class AgentApplied:
    public_article_id: int | None = None
    note_article_id: int | None = None
    errors: tuple[str, ...] = ()  # not empty: nothing was applied
    # the agent wrote to the requester directly (a reply to a mail Cc'd or forwarded to
    # them): relaying it would send the customer the same text twice
    sent_directly: bool = False


def apply_agent_reply(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    parsed: ParsedMessage,
    decision: Decision,
    prefix: str = "DM",
) -> AgentApplied:
    """Apply an agent's mail to ``ticket_id`` (all or nothing: any error, nothing)."""
    reply, agent = decision.agent_reply, decision.agent
    assert reply is not None and agent is not None
    if not reply.ok:
        errors = tuple(f"line {e.line}: {e.text}: {e.message}" for e in reply.errors)
        session.add(
            Event(
                ticket_id=ticket_id,
                inbound_id=inbound_id,
                kind="agent_command_refused",
                actor=agent.address,
                detail={"errors": list(errors), "reasons": list(decision.reasons)},
            )
        )
        return AgentApplied(errors=errors)
    public_id = note_id = None
    if reply.public_text:
        public_id = add_agent_article(
            session,
            ticket_id,
            inbound_id,
            parsed,
            reply.public_text,
            author=agent.address,
            author_name=agent.name,
            internal=False,
        )
    if reply.note:
        note_id = add_agent_article(
            session,
            ticket_id,
            None if public_id is not None else inbound_id,
            parsed,
            reply.note,
            author=agent.address,
            author_name=agent.name,
            internal=True,
            second=public_id is not None,
        )
    labels = {
        c.name: c.value for c in reply.commands if c.name in ("level", "category", "priority")
    }
    if labels:
        correct_ticket(session, ticket_id, labels, agent.address, prefix)
    assignee = next((c.value for c in reply.commands if c.name == "assign"), None)
    values: dict[str, object] = {"updated_at": utcnow()}
    if assignee is not None:
        values["assignee"] = assignee
    if public_id is not None:
        first = session.scalar(select(Ticket.first_response_at).where(Ticket.id == ticket_id))
        if first is None:
            values["first_response_at"] = utcnow()
    session.execute(
        update(Ticket)
        .where(Ticket.id == ticket_id)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    if decision.status_change is not None:
        before, after, why = decision.status_change
        set_status(session, ticket_id, before, after, why, agent.address, inbound_id)
    session.add(
        Event(
            ticket_id=ticket_id,
            inbound_id=inbound_id,
            kind="agent_reply",
            actor=agent.address,
            detail={
                "reasons": list(decision.reasons),
                "commands": [f"#{c.name} {c.value}" for c in reply.commands],
                "public_article": public_id,
                "note_article": note_id,
                "assignee": assignee,
            },
        )
    )
    session.flush()
    requester = session.scalar(
        select(Contact.email)
        .join(Ticket, Ticket.requester_id == Contact.id)
        .where(Ticket.id == ticket_id)
    )
    direct = bool(requester) and requester in {a.lower() for a in (*parsed.to, *parsed.cc)}
    return AgentApplied(public_id, note_id, sent_directly=direct)
