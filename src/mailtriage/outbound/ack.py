"""The acknowledgement of a new ticket, planned as data (pure).

``plan_ack`` turns what the pipeline knows about a new ticket into an ``OutboxPlan``:
who gets it, in which language, its Message-ID, the due time of the 24-hour promise in
the customer's time zone and the knowledge-base articles that fit. The plan is stored
with the outbox row (``MailContext``), so every later render of the row, including a
resend after a crash, produces the same mail.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from mailtriage.config import AgentSettings, ConfigError, Settings
from mailtriage.outbound import sla
from mailtriage.outbound.headers import (
    MAX_REFERENCES,
    clean_header_value,
    plus_address,
    safe_address,
    safe_message_id,
)
from mailtriage.outbound.identity import message_id_for, reply_to_for
from mailtriage.outbound.kb import KbError, KbIndex, KbMatch, load_index, match_articles
from mailtriage.outbound.render import RenderError, Templates
from mailtriage.pipeline import subject_tag
from mailtriage.pipeline.reply_token import REPLY
from mailtriage.pipeline.subject_tag import ticket_reference
from mailtriage.sla import SlaRules
from mailtriage.sla.settings import rules_from_settings

__all__ = [
    "MailContext",
    "OutboundPolicy",
    "OutboxPlan",
    "cached_policy",
    "outbound_policy",
    "plan_ack",
]

ACK = "ack"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundPolicy:
    """What the store needs from the config to queue and note outbound mail."""

    acknowledge: bool = True
    prefix: str = "DM"
    message_domain: str = "dataandmore.com"
    support_address: str = "support@dataandmore.com"
    default_language: str = "de"
    languages: tuple[str, ...] = ("de", "en")
    response_hours: float = 24.0
    fallback_timezone: str = "Europe/Berlin"
    kb: KbIndex | None = None
    kb_max: int = 3
    kb_min_score: float = 3.0
    give_up_after_hours: float = 24.0
    suppress_days: float = 30.0
    # The HMAC secret of reply tokens (empty: unsigned Message-IDs and plus addresses).
    secret: bytes = field(default=b"", repr=False)
    agents: tuple[AgentSettings, ...] = ()
    reply_to_plus: bool = True
    from_name: str = "Data & More Support"
    # Attachments of one notice or relayed reply, in total; larger ones are listed only.
    attachment_limit_bytes: int = 10 * 1024 * 1024
    # Ask the customer how we did when a ticket is resolved (portal.feedback).
    ask_feedback: bool = False
    feedback_change_days: float = 14.0
    own_domains: tuple[str, ...] = ()
    # The SLA calendar and policies (None: no clocks; the ack promises calendar hours).
    sla: SlaRules | None = None
    team_lead_address: str = ""

    def reply_to(self, ticket_id: int, recipient: str, purpose: str) -> str:
        """The Reply-To of a mail about ``ticket_id`` to ``recipient`` (identity.py)."""
        return reply_to_for(
            secret=self.secret,
            prefix=self.prefix,
            support_address=self.support_address,
            ticket_id=ticket_id,
            recipient=recipient,
            purpose=purpose,
            plus=self.reply_to_plus,
        )

    def message_id(
        self, ticket_id: int, kind: str, step: int, recipient: str, purpose: str, salt: str
    ) -> str:
        """The Message-ID of outbox entry (ticket, kind, step) to ``recipient``."""
        return message_id_for(
            secret=self.secret,
            prefix=self.prefix,
            domain=self.message_domain,
            ticket_id=ticket_id,
            kind=kind,
            step=step,
            recipient=recipient,
            purpose=purpose,
            salt=salt,
        )


NO_ACK = OutboundPolicy(acknowledge=False)


@dataclass(frozen=True)
class MailContext:
    """Everything a template needs, fixed when the mail is queued (stored as JSON)."""

    reference: str
    to_address: str
    to_name: str
    language: str
    subject: str
    category: str
    created_at: str  # ISO 8601, UTC
    due_at: str  # ISO 8601, UTC
    timezone: str  # "Europe/Berlin" or "+05:30"
    response_hours: float
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    articles: tuple[dict[str, str], ...] = ()
    # Fixed when queued (it carries the recipient's token); "" in rows queued before.
    reply_to: str = ""
    # The promise counts business hours (the SLA policy's first-response target).
    business_hours: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["references"] = list(self.references)
        data["articles"] = [dict(a) for a in self.articles]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MailContext:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["references"] = tuple(known.get("references") or ())
        known["articles"] = tuple(dict(a) for a in known.get("articles") or ())
        return cls(**known)

    def variables(
        self, *, support_address: str, reply_address: str, ticket_url: str = ""
    ) -> dict[str, Any]:
        """The template variables (documented in templates/README.md); ``ticket_url``:
        the recipient's link to the ticket's page (made when the mail is sent)."""
        due = datetime.fromisoformat(self.due_at)
        return {
            "reference": self.reference,
            "name": self.to_name,
            "subject": self.subject,
            "category": self.category,
            "due": sla.format_due(due, self.timezone, self.language),
            "hours": f"{self.response_hours:g}",
            "business_hours": self.business_hours,
            "articles": [dict(a) for a in self.articles],
            "support_address": support_address,
            "reply_address": reply_address,
            "ticket_url": ticket_url,
        }


class JsonContext(Protocol):
    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class OutboxPlan:
    kind: str
    step: int
    message_id: str
    recipient: str
    language: str
    context: JsonContext
    deadline: datetime
    kb: tuple[KbMatch, ...] = ()
    kb_considered: int = 0


@dataclass(frozen=True)
class Customer:
    """What the ack needs from the customer's message."""

    address: str
    name: str = ""
    subject: str = ""
    text: str = ""
    message_id: str | None = None
    references: tuple[str, ...] = ()
    date_header: str | None = None


def choose_language(ticket_language: str | None, policy: OutboundPolicy) -> str:
    """The ticket's language when we have templates for it, else the configured default."""
    if ticket_language and ticket_language in policy.languages:
        return ticket_language
    if policy.default_language in policy.languages:
        return policy.default_language
    return policy.languages[0] if policy.languages else policy.default_language


def plan_ack(
    policy: OutboundPolicy,
    *,
    ticket_id: int,
    created_at: datetime,
    customer: Customer,
    category: str | None,
    language: str | None,
    promise: tuple[datetime, float, bool] | None = None,
) -> tuple[OutboxPlan | None, str]:
    """The acknowledgement for a new ticket, or (None, why not). ``promise``: (due,
    hours, business hours?) of the SLA policy's first-response target; None: the
    policy's ``response_hours`` in calendar time."""
    if not policy.acknowledge:
        return None, "acknowledgements are off (outbound.acknowledge = false)"
    recipient = safe_address(customer.address)
    if recipient is None:
        return None, f"no plain sender address to answer ({customer.address!r})"
    if recipient.casefold() == policy.support_address.casefold():
        return None, "the sender is our own support address"
    reference = ticket_reference(policy.prefix, ticket_id)
    lang = choose_language(language, policy)
    offset = sla.offset_from_date_header(customer.date_header)
    zone = sla.zone_for_customer(offset, created_at, policy.fallback_timezone)
    due, hours, business = promise or (
        sla.due_at(created_at, policy.response_hours),
        policy.response_hours,
        False,
    )
    kb: tuple[KbMatch, ...] = ()
    if policy.kb is not None and policy.kb_max > 0:
        kb = match_articles(
            policy.kb,
            subject=customer.subject,
            text=customer.text,
            category=category,
            language=lang,
            limit=policy.kb_max,
            min_score=policy.kb_min_score,
        )
    parent = safe_message_id(customer.message_id)
    refs = [r for r in (safe_message_id(x) for x in customer.references) if r]
    if parent:
        refs.append(parent)
    context = MailContext(
        reference=reference,
        to_address=recipient,
        to_name=clean_header_value(customer.name, 200),
        language=lang,
        subject=clean_header_value(strip_reference(customer.subject, policy.prefix), 500),
        category=category or "",
        created_at=created_at.isoformat(),
        due_at=due.isoformat(),
        timezone=zone,
        response_hours=hours,
        in_reply_to=parent,
        references=tuple(dict.fromkeys(refs))[-MAX_REFERENCES:],
        articles=tuple({"title": m.article.title, "url": m.article.url} for m in kb),
        reply_to=policy.reply_to(ticket_id, recipient, REPLY),
        business_hours=business,
    )
    message_id = policy.message_id(ticket_id, ACK, 0, recipient, REPLY, created_at.isoformat())
    plan = OutboxPlan(
        kind=ACK,
        step=0,
        message_id=message_id,
        recipient=recipient,
        language=lang,
        context=context,
        deadline=created_at + timedelta(hours=policy.give_up_after_hours),
        kb=kb,
        kb_considered=sum(1 for a in policy.kb.articles if a.language == lang) if policy.kb else 0,
    )
    return plan, ""


def strip_reference(subject: str, prefix: str) -> str:
    """The customer's subject without reply prefixes and without our [DM-000123] tag
    (the template puts the tag back once)."""
    return subject_tag.strip_prefixes(subject_tag.remove_ticket_tags(subject, prefix))


def reply_address(policy_support: str, reference: str, plus: bool) -> str:
    return plus_address(policy_support, reference) if plus else policy_support


def outbound_policy(
    settings: Settings,
    *,
    languages: tuple[str, ...] | None = None,
    secret: bytes | None = None,
) -> OutboundPolicy:
    """Build the policy from the config; a bad KB index, template dir or secret file
    is a ConfigError.

    ``languages``: those we have acknowledgement templates for (default: look);
    ``secret``: the reply-token secret (default: ``server_secret.load_secret``).
    """
    if secret is None:
        from mailtriage.server_secret import load_secret

        secret = load_secret(settings.security, settings.storage_dir)
    if languages is None:
        try:
            languages = Templates(settings.outbound.templates_dir or None).languages(ACK)
        except RenderError as exc:
            raise ConfigError(str(exc)) from None
    kb = None
    if settings.kb.index_file:
        try:
            kb = _load_kb(settings.kb.index_file, _mtime(settings.kb.index_file))
        except KbError as exc:
            raise ConfigError(f"kb.index_file: {exc}") from None
    support = settings.mail.support_address
    return OutboundPolicy(
        acknowledge=settings.outbound.acknowledge,
        prefix=settings.mail.ticket_prefix,
        message_domain=settings.mail.message_domain,
        support_address=support,
        default_language=settings.triage.default_language,
        languages=languages,
        response_hours=settings.sla.response_hours,
        fallback_timezone=settings.sla.timezone,
        kb=kb,
        kb_max=settings.kb.max_articles,
        kb_min_score=settings.kb.min_score,
        give_up_after_hours=settings.outbound.give_up_after_hours,
        suppress_days=settings.outbound.suppress_days,
        secret=secret,
        agents=settings.agents,
        reply_to_plus=settings.outbound.reply_to_plus_address,
        from_name=settings.outbound.from_name,
        ask_feedback=settings.portal.enabled and settings.portal.feedback,
        feedback_change_days=settings.portal.feedback_change_days,
        own_domains=settings.mail.own_domains,
        sla=rules_from_settings(settings.sla),
        team_lead_address=settings.sla.team_lead_address,
    )


def cached_policy(settings: Settings) -> OutboundPolicy:
    """``outbound_policy`` built once per settings (and KB file version): the worker
    calls this for every message it stores."""
    return _cached_policy(settings, _mtime(settings.kb.index_file) if settings.kb.index_file else 0)


@functools.lru_cache(maxsize=8)
def _cached_policy(settings: Settings, kb_mtime: float) -> OutboundPolicy:
    # A broken KB index, template directory or secret file must not stop tickets from
    # being created: log it and go on without (`mailtriage run` and `outbox send` check
    # the same config strictly at start and refuse to run).
    from mailtriage.server_secret import load_secret

    try:
        secret = load_secret(settings.security, settings.storage_dir)
    except (ConfigError, OSError) as exc:
        log.error("outbound: %s; mail is sent without signed reply tokens", exc)
        secret = b""
    try:
        return outbound_policy(settings, secret=secret)
    except ConfigError as exc:
        log.error("outbound: %s; acknowledgements are queued without KB articles", exc)
    without_kb = dataclasses.replace(settings, kb=dataclasses.replace(settings.kb, index_file=""))
    try:
        return outbound_policy(without_kb, secret=secret)
    except ConfigError:
        return outbound_policy(
            without_kb, languages=(settings.triage.default_language,), secret=secret
        )


def _mtime(path: str) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return -1.0


@functools.lru_cache(maxsize=8)
def _load_kb(path: str, mtime: float) -> KbIndex:
    return load_index(path)
