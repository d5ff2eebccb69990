"""Which conversation a message belongs to, and who may join it (pure).

Input: the parsed message, the loop guard's verdict, :class:`ConversationFacts`
(``store.lookups.lookup_message``: what the database knows about the tickets and
Message-IDs the message names) and a :class:`ConversationPolicy` (config values and the
token secret, built once by the runner). Output: a :class:`Decision` with the reasons.

Order:

1. automated mail (loop guard) is ignored (an answer to our mail is noted);
2. mail from one of our own addresses (the support address, any plus address of it, a
   domain in ``mail.own_domains``) is ignored: it is us;
3. the same Message-ID and content is a duplicate;
4. the ticket is found by, first match wins: our signed reply token (in a plus address
   the mail was sent to, or in one of our Message-IDs it refers to) that verifies for
   the sender; In-Reply-To; References newest first; a plain plus address
   ``support+dm-000123@`` (or a token that does not verify); the subject tag
   ``[DM-000123]`` with reply/forward prefixes stripped. Each way is a reason.
5. **who may join**: the requester, a participant (a ``Participant`` row, or the
   requester's organisation when ``organisation_participants``, never a freemail
   domain), someone holding a verified token, or an authenticated agent. Anyone else
   opens a NEW ticket linked to the matched one (the link says why); they never append
   and never merge.
6. status: a customer's reply to a resolved ticket past the reopen window, or to a
   closed one, opens a new linked ticket; otherwise ``ticket_status.on_customer_reply``.
7. a sender over the per-address cap of new tickets does not open another: the message
   is appended to that address's latest ticket (kept, never dropped; no acknowledgement).

Early replies (a reply stored before its parent opened its own ticket) are adopted by
the parent only when the early reply's sender would be allowed to join: the parent's
sender, or on the parent's To/Cc *and* replying to the parent's sender. A stranger
who forges the parent's Message-ID cannot move someone else's ticket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from mailtriage.pipeline import reply_token, subject_tag, ticket_status
from mailtriage.pipeline.agent_commands import (
    CommandError,
    ParsedReply,
    Taxonomy,
    parse_agent_reply,
)
from mailtriage.pipeline.authresults import agent_authenticated
from mailtriage.pipeline.loops import LoopVerdict
from mailtriage.pipeline.parse import ParsedMessage
from mailtriage.pipeline.subject_tag import ticket_reference
from mailtriage.pipeline.text import split_body

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
    sender: str = ""  # who wrote the early reply
    recipients: tuple[str, ...] = ()  # its To and Cc


@dataclass(frozen=True)
class TicketFacts:
    """What matching needs to know about one ticket (the live one: merges followed)."""

    ticket_id: int
    status: str
    requester: str | None = None
    participants: tuple[str, ...] = ()
    resolved_at: datetime | None = None
    subject: str = ""
    merged_from: tuple[int, ...] = ()  # ids that were merged into this ticket


@dataclass(frozen=True)
class AgentSpec:
    address: str  # lower-cased
    name: str
    level: str = "L1"


@dataclass(frozen=True)
class ConversationPolicy:
    """Config the matching needs (built once by the runner from the settings)."""

    secret: bytes = b""
    support_address: str = "support@dataandmore.com"
    own_domains: tuple[str, ...] = ()
    prefix: str = "DM"
    agents: tuple[AgentSpec, ...] = ()
    authserv_ids: tuple[str, ...] = ()
    trust_agents_by_address: bool = False
    reopen_days: float = 14.0
    organisation_participants: bool = False
    freemail_domains: tuple[str, ...] = ()
    new_tickets_per_address: int = 20  # 0: no cap
    new_tickets_window_minutes: float = 60.0
    taxonomy: Taxonomy = field(default_factory=lambda: Taxonomy(categories=()))

    def agent(self, address: str) -> AgentSpec | None:
        address = address.lower()
        return next((a for a in self.agents if a.address == address), None)


DEFAULT_POLICY = ConversationPolicy()


@dataclass(frozen=True)
class TicketHint:
    """A ticket named by the message itself: token, plus address or subject tag."""

    ticket_id: int
    how: str  # "token", "plus address", "subject tag"
    where: str  # the address, Message-ID or subject that named it
    agent_token: bool = False  # a verified AGENT token (authenticates the agent)


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
    # every ticket a candidate, a hint or the sender's latest ticket names
    tickets: tuple[TicketFacts, ...] = ()
    # tickets opened by this sender within the policy's window, and their latest one
    sender_recent_tickets: int = 0
    sender_latest_ticket: int | None = None
    now: datetime | None = None

    def ticket(self, ticket_id: int) -> TicketFacts | None:
        return next((t for t in self.tickets if ticket_id in (t.ticket_id, *t.merged_from)), None)


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
    # "create": the ticket this one is linked to, and why it did not join it
    link_ticket_id: int | None = None
    link_reason: str | None = None
    # "create": acknowledge it (False for agents, X-Auto-Response-Suppress)
    acknowledge: bool = True
    # "append": the ticket's status change (from, to, why) a customer reply causes
    status_change: tuple[str, str, str] | None = None
    # who wrote it: "customer", "agent" (authenticated), "over_cap" (appended, kept)
    role: str = "customer"
    agent: AgentSpec | None = None
    agent_reply: ParsedReply | None = None  # an agent's mail: commands, text, note
    # (address, name, role) to record as participants of the ticket it lands in
    participants: tuple[tuple[str, str, str], ...] = ()
    # subject for a new ticket (our tags of other tickets removed: nothing leaks)
    subject: str | None = None


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


# X-Auto-Response-Suppress values that ask for no automatic answer (MS-OXCMAIL).
SUPPRESS_VALUES = frozenset({"all", "autoreply", "oof"})
_RECIPIENT_HEADERS = ("to", "cc", "delivered-to", "x-original-to")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9._%+'=-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}")
_FORWARD_FROM_RE = re.compile(r"^[\s>*]*(?:from|von|de|van|da)\s*:\*?\s*(.+)$", re.IGNORECASE)


class OwnAddresses(Protocol):
    """What tells our own addresses apart (``ConversationPolicy``, ``OutboundPolicy``)."""

    @property
    def support_address(self) -> str: ...
    @property
    def own_domains(self) -> tuple[str, ...]: ...


def is_own_address(address: str, policy: OwnAddresses) -> bool:
    """The support address, any plus address of it, or a domain of ``own_domains``."""
    local, at, domain = address.strip().strip("<>").lower().rpartition("@")
    if not at:
        return False
    s_local, _, s_domain = policy.support_address.strip().lower().rpartition("@")
    if domain == s_domain and local.split("+", 1)[0] == s_local:
        return True
    return domain in {d.strip().lower() for d in policy.own_domains}


def _header_values(parsed: ParsedMessage, name: str) -> list[str]:
    return [v for k, v in parsed.headers if k.lower() == name]


def recipient_addresses(
    parsed: ParsedMessage, envelope_recipients: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Where the mail was sent: To, Cc, Delivered-To, X-Original-To and the SMTP
    envelope recipients, lower-cased, each once."""
    found = [*parsed.to, *parsed.cc, *envelope_recipients]
    for name in _RECIPIENT_HEADERS[2:]:
        for value in _header_values(parsed, name):
            found.extend(_ADDRESS_RE.findall(value))
    return tuple(dict.fromkeys(a.strip().strip("<>").lower() for a in found if a))


def suppresses_auto_response(parsed: ParsedMessage) -> str | None:
    """The X-Auto-Response-Suppress value when it asks for no automatic answer."""
    for value in _header_values(parsed, "x-auto-response-suppress"):
        words = {w.strip().lower() for w in re.split(r"[,;\s]+", value) if w.strip()}
        if words & SUPPRESS_VALUES:
            return value.strip()
    return None


def _token_kind(policy: ConversationPolicy, token: str | None, ticket_id: int, sender: str) -> str:
    """ "reply" or "agent" when ``token`` verifies for ``sender``, else ""."""
    if not token or not sender or not policy.secret:
        return ""
    if reply_token.verify_token(policy.secret, token, ticket_id, sender, reply_token.REPLY):
        return "reply"
    if policy.agent(sender) is not None and reply_token.verify_token(
        policy.secret, token, ticket_id, sender, reply_token.AGENT
    ):
        return "agent"
    return ""


def ticket_hints(
    parsed: ParsedMessage, policy: ConversationPolicy, envelope_recipients: tuple[str, ...] = ()
) -> tuple[tuple[TicketHint, ...], tuple[TicketHint, ...]]:
    """(strong, weak) tickets the message names itself.

    Strong: a token that verifies for the sender, in a plus address it was sent to or
    in one of our Message-IDs it refers to. Weak: a plus address without a token (or
    with one that does not verify), then the subject tag."""
    strong: list[TicketHint] = []
    weak: list[TicketHint] = []
    for address in recipient_addresses(parsed, envelope_recipients):
        ref = reply_token.parse_reply_address(address, policy.support_address, policy.prefix)
        if ref is None:
            continue
        kind = _token_kind(policy, ref.token, ref.ticket_id, parsed.sender)
        if kind:
            strong.append(TicketHint(ref.ticket_id, "token", address, kind == "agent"))
        else:
            weak.append(TicketHint(ref.ticket_id, "plus address", address))
    for ident in thread_candidates(parsed):
        mid = reply_token.parse_message_id(ident, policy.own_domains, policy.prefix)
        if mid is None:
            continue
        kind = _token_kind(policy, mid.token, mid.ticket_id, parsed.sender)
        if kind:
            strong.append(TicketHint(mid.ticket_id, "token", f"<{ident}>", kind == "agent"))
    tag = subject_tag.find_ticket_tag(parsed.subject, policy.prefix)
    if tag:
        weak.append(TicketHint(int(tag.rpartition("-")[2]), "subject tag", tag))
    return tuple(strong), tuple(weak)


def hinted_ticket_ids(
    parsed: ParsedMessage, policy: ConversationPolicy, envelope_recipients: tuple[str, ...] = ()
) -> tuple[int, ...]:
    """The ticket ids the store must look up for the hints (tokens, plus address, tag)."""
    strong, weak = ticket_hints(parsed, policy, envelope_recipients)
    return tuple(dict.fromkeys(h.ticket_id for h in (*strong, *weak)))


def identify_agent(
    parsed: ParsedMessage, policy: ConversationPolicy
) -> tuple[AgentSpec | None, str]:
    """(the agent, why) when the sender is a configured agent AND the mail is
    authenticated by our receiving server (or trust by address is on). A valid AGENT
    token authenticates too; ``match`` checks it against the matched ticket."""
    spec = policy.agent(parsed.sender)
    if spec is None:
        return None, ""
    if policy.trust_agents_by_address:
        return spec, "agent trusted by address (security.trust_agents_by_address)"
    headers = _header_values(parsed, "authentication-results")
    ok, why = agent_authenticated(headers, policy.authserv_ids, spec.address)
    return (spec, why) if ok else (None, why)


def may_join(sender: str, ticket: TicketFacts, policy: ConversationPolicy) -> tuple[bool, str]:
    """(allowed, why) for a customer-side sender joining ``ticket``."""
    s = sender.lower()
    requester = (ticket.requester or "").lower()
    if s and s == requester:
        return True, "sender is the requester"
    if s and s in {p.lower() for p in ticket.participants}:
        return True, "sender is a participant"
    domain = s.rpartition("@")[2]
    if (
        policy.organisation_participants
        and s
        and requester
        and domain == requester.rpartition("@")[2]
        and domain not in {d.lower() for d in policy.freemail_domains}
    ):
        return True, f"sender is of the requester's organisation ({domain})"
    return False, (
        f"sender {sender or '(none)'} is not a participant of "
        f"{ticket_reference(policy.prefix, ticket.ticket_id)}"
    )


def forwarded_sender(parsed: ParsedMessage) -> tuple[str, str] | None:
    """(address, name) of the end user whose mail a helpdesk forwarded: the first
    ``From:``/``Von:`` line of a forwarded header block, when the subject or the body
    says it is a forward."""
    parts = split_body(parsed.text, parsed.subject)
    if not parts.forwarded and not subject_tag.is_forward_subject(parsed.subject):
        return None
    for line in parsed.text.splitlines():
        found = _FORWARD_FROM_RE.match(line)
        if not found:
            continue
        value = found.group(1)
        address = _ADDRESS_RE.search(value)
        if address is None:
            continue
        name = value[: value.find("<")].strip().strip('"') if "<" in value else ""
        return address.group(0).lower(), name
    return None


def new_participants(
    parsed: ParsedMessage,
    policy: ConversationPolicy,
    ticket: TicketFacts | None = None,
) -> tuple[tuple[str, str, str], ...]:
    """(address, name, role) of people on a customer's mail who join the conversation:
    To (other than us) and Cc, and the end user of a helpdesk forward. Never our own
    addresses, never agents, never the sender or the ticket's requester."""
    skip = {parsed.sender.lower(), *(a.address for a in policy.agents)}
    if ticket is not None:
        skip |= {(ticket.requester or "").lower(), *(p.lower() for p in ticket.participants)}
    out: dict[str, tuple[str, str, str]] = {}
    found: list[tuple[str, str, str]] = [(a, "", "to") for a in parsed.to]
    found += [(a, "", "cc") for a in parsed.cc]
    forwarded = forwarded_sender(parsed)
    if forwarded is not None:
        found.append((forwarded[0], forwarded[1], "forwarded"))
    for address, name, role in found:
        address = address.strip().lower()
        if not address or address in skip or is_own_address(address, policy):
            continue
        out.setdefault(address, (address, name, role))
    return tuple(out.values())


def without_history(text: str, subject: str = "") -> str:
    """``text`` without quoted history (signature kept): what an agent wrote."""
    parts = split_body(text, subject)
    return "\n\n".join(p for p in (parts.new_text, parts.signature) if p)


def agent_reply(parsed: ParsedMessage, taxonomy: Taxonomy, status: str) -> ParsedReply:
    """Commands, public text and note of an agent's mail, with the quoted notification
    removed; a status command the agent may not give is an error like any other."""
    reply = parse_agent_reply(parsed.text, taxonomy)
    errors = list(reply.errors)
    for command in reply.commands:
        if command.name == "status":
            ok, why = ticket_status.can_transition("agent", status, command.value)
            if not ok:
                errors.append(CommandError(command.line, f"#status {command.value}", why))
    return replace(
        reply,
        public_text=without_history(reply.public_text, parsed.subject),
        note=without_history(reply.note, parsed.subject),
        errors=tuple(errors),
    )


def agent_status_change(reply: ParsedReply, status: str) -> tuple[str, str, str] | None:
    """(from, to, why) after an agent's mail: the status command, else waiting for the
    customer when there is public text."""
    target = next((c.value for c in reply.commands if c.name == "status"), None)
    if target is not None:
        return (status, target, f"#status {target}") if target != status else None
    if reply.public_text:
        new, why = ticket_status.on_agent_reply(status)
        return (status, new, why) if new != status else None
    return None


def match(
    parsed: ParsedMessage,
    loop: LoopVerdict,
    facts: ConversationFacts,
    policy: ConversationPolicy = DEFAULT_POLICY,
    envelope_recipients: tuple[str, ...] = (),
) -> Decision:
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
    if is_own_address(parsed.sender, policy):
        return Decision("ignore", reasons=(f"from our own address {parsed.sender}: it is us",))
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
    strong, weak = ticket_hints(parsed, policy, envelope_recipients)
    found = _find(parsed, facts, strong, weak)
    agent, agent_why = identify_agent(parsed, policy)
    if agent is None and found is not None and policy.agent(parsed.sender) is not None:
        token = next(
            (h for h in strong if h.ticket_id == found[0].ticket_id and h.agent_token), None
        )
        if token is not None:
            agent, agent_why = policy.agent(parsed.sender), f"signed agent token in {token.where}"
    merge, merge_reasons = _early(parsed, facts, found[0].ticket_id if found else None)
    merge_reason = f"reply arrived before its parent <{facts.message_key}>" if merge else None
    if found is not None:
        ticket, how, verified = found
        matched = f"matched {ticket_reference(policy.prefix, ticket.ticket_id)} by {how}"
        if agent is not None:
            reply = agent_reply(parsed, policy.taxonomy, ticket.status)
            return Decision(
                "append",
                ticket_id=ticket.ticket_id,
                reasons=(matched, f"from agent {agent.address}: {agent_why}"),
                warnings=warnings,
                role="agent",
                agent=agent,
                agent_reply=reply,
                status_change=agent_status_change(reply, ticket.status) if reply.ok else None,
            )
        ok, why = (
            (True, "sender holds our signed reply token")
            if verified
            else may_join(parsed.sender, ticket, policy)
        )
        if policy.agent(parsed.sender) is not None:
            why += f"; agent address not authenticated ({agent_why}): a customer's mail"
        if not ok:
            return _create(
                parsed,
                facts,
                policy,
                warnings,
                merge,
                merge_reason,
                merge_reasons,
                link=(ticket.ticket_id, f"{why} (matched by {how})"),
            )
        now = facts.now
        if now is not None and ticket.status in ticket_status.STATUSES:
            window = timedelta(days=policy.reopen_days)
            new, status_why = ticket_status.on_customer_reply(
                ticket.status, ticket.resolved_at, now, window
            )
        else:
            new, status_why = ticket.status, "status unknown"
        if new == ticket_status.NEW_TICKET:
            return _create(
                parsed,
                facts,
                policy,
                warnings,
                merge,
                merge_reason,
                merge_reasons,
                link=(
                    ticket.ticket_id,
                    f"{ticket_reference(policy.prefix, ticket.ticket_id)}: {status_why} "
                    f"(matched by {how})",
                ),
            )
        return Decision(
            "append",
            ticket_id=ticket.ticket_id,
            reasons=(matched, why, *merge_reasons),
            warnings=warnings,
            merge_ticket_ids=merge,
            merge_reason=merge_reason,
            status_change=(ticket.status, new, status_why) if new != ticket.status else None,
            participants=new_participants(parsed, policy, ticket),
        )
    return _create(parsed, facts, policy, warnings, merge, merge_reason, merge_reasons, agent=agent)


def _create(
    parsed: ParsedMessage,
    facts: ConversationFacts,
    policy: ConversationPolicy,
    warnings: tuple[str, ...],
    merge: tuple[int, ...],
    merge_reason: str | None,
    merge_reasons: tuple[str, ...],
    *,
    link: tuple[int, str] | None = None,
    agent: AgentSpec | None = None,
) -> Decision:
    """A new ticket, unless the sender is over the cap of new tickets per address."""
    cap = policy.new_tickets_per_address
    latest = facts.sender_latest_ticket
    if (
        cap > 0
        and facts.sender_recent_tickets >= cap
        and latest is not None
        and _written_within(parsed, facts.now, policy.new_tickets_window_minutes)
    ):
        return Decision(
            "append",
            ticket_id=latest,
            reasons=(
                f"{parsed.sender} opened {facts.sender_recent_tickets} tickets in "
                f"{policy.new_tickets_window_minutes:g} minutes (cap {cap}): kept on "
                f"{ticket_reference(policy.prefix, latest)}, no new ticket, no acknowledgement",
            ),
            warnings=warnings,
            role="over_cap",
        )
    reasons: list[str] = []
    if link is not None:
        reasons.append(
            f"new ticket linked to {ticket_reference(policy.prefix, link[0])}: {link[1]}"
        )
    else:
        reasons.append("no known message referenced")
    reasons.extend(merge_reasons)
    acknowledge = True
    suppress = suppresses_auto_response(parsed)
    if suppress is not None:
        acknowledge = False
        reasons.append(f"no acknowledgement: X-Auto-Response-Suppress: {suppress}")
    if agent is not None:
        acknowledge = False
        reasons.append(f"no acknowledgement: mail from agent {agent.address}")
    return Decision(
        "create",
        reasons=tuple(reasons),
        warnings=warnings,
        merge_ticket_ids=merge,
        merge_reason=merge_reason,
        link_ticket_id=link[0] if link else None,
        link_reason=link[1] if link else None,
        acknowledge=acknowledge,
        participants=new_participants(parsed, policy),
        subject=subject_tag.remove_ticket_tags(parsed.subject) if link else None,
    )


def _find(
    parsed: ParsedMessage,
    facts: ConversationFacts,
    strong: tuple[TicketHint, ...],
    weak: tuple[TicketHint, ...],
) -> tuple[TicketFacts, str, bool] | None:
    """(ticket, how it was found, token verified), first match wins: a verified token,
    In-Reply-To / References (newest first), a plus address, the subject tag."""
    for hint in strong:
        ticket = facts.ticket(hint.ticket_id)
        if ticket is not None:
            return ticket, f"signed reply token in {hint.where}", True
    joined = _thread(parsed, facts.candidates)
    if joined is not None:
        ticket = facts.ticket(joined.ticket_id) or TicketFacts(
            joined.ticket_id, "new", requester=joined.requester
        )
        if parsed.in_reply_to and joined.message_id == parsed.in_reply_to[0]:
            how = f"In-Reply-To <{joined.message_id}>"
        else:
            how = f"References <{joined.message_id}>"
        if joined.via == "reference":
            how += " (as an earlier reply to it does)"
        return ticket, how, False
    for hint in weak:
        ticket = facts.ticket(hint.ticket_id)
        if ticket is not None:
            return ticket, f"{hint.how} {hint.where}", False
    return None


def _early(
    parsed: ParsedMessage, facts: ConversationFacts, target: int | None
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(tickets of early replies to adopt, reasons). An early reply is adopted only
    when its sender is this message's sender, or is on this message's To/Cc and wrote
    to this message's sender: a forged parent cannot take someone's ticket."""
    sender = parsed.sender.lower()
    on_it = {a.lower() for a in (*parsed.to, *parsed.cc)}
    why = f"reply arrived before its parent <{facts.message_key}>"
    merge: list[int] = []
    reasons: list[str] = []
    for early in facts.early_replies:
        if early.ticket_id == target or early.ticket_id in merge:
            continue
        kept = early.kept_because
        e_sender = early.sender.lower()
        if kept is None and e_sender != sender:
            wrote_to = {r.lower() for r in early.recipients}
            if e_sender not in on_it or not sender or sender not in wrote_to:
                kept = f"its sender {early.sender} is not a participant of this message"
        if kept is None:
            merge.append(early.ticket_id)
            reasons.append(f"merges ticket {early.ticket_id}: {why}")
        else:
            line = f"ticket {early.ticket_id} refers to this message but is kept: {kept}"
            if line not in reasons:
                reasons.append(line)
    return tuple(merge), tuple(reasons)


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


def _written_within(parsed: ParsedMessage, now: datetime | None, minutes: float) -> bool:
    """Whether the message was written within the cap's window before ``now`` (or has
    no usable date). A loop is live: mail written long before (an archive imported
    with ``mailtriage import``, a delayed delivery) is not capped, so a customer's
    old mails never end up on one ticket."""
    if parsed.date is None or now is None:
        return True
    return parsed.date >= now - timedelta(minutes=minutes)
