"""The matching policy of the conversation (pure ``pipeline.conversation``) from the
settings and the rules in use, built once per settings and rules: it reads the token
secret (``server_secret.load_secret``: a file), which the pipeline may not."""

from __future__ import annotations

import logging
from functools import lru_cache

from mailtriage.config import Settings
from mailtriage.pipeline.agent_commands import Taxonomy
from mailtriage.pipeline.classify import LEVELS, PRIORITIES, Rules
from mailtriage.pipeline.conversation import AgentSpec, ConversationPolicy
from mailtriage.server_secret import load_secret

__all__ = ["conversation_policy", "warn_about_trust"]

log = logging.getLogger(__name__)


def conversation_policy(settings: Settings, rules: Rules | None = None) -> ConversationPolicy:
    """The policy for ``settings`` (cached: the worker asks for every message)."""
    categories = tuple(rules.categories) if rules is not None else ()
    return _policy(settings, categories)


@lru_cache(maxsize=8)
def _policy(settings: Settings, categories: tuple[str, ...]) -> ConversationPolicy:
    agents = tuple(AgentSpec(a.address.strip().lower(), a.name, a.level) for a in settings.agents)
    mail, conv = settings.mail, settings.conversation
    return ConversationPolicy(
        secret=load_secret(settings.security, settings.storage_dir),
        support_address=mail.support_address,
        own_domains=tuple(mail.own_domains),
        prefix=mail.ticket_prefix,
        agents=agents,
        authserv_ids=tuple(settings.security.authserv_ids),
        trust_agents_by_address=settings.security.trust_agents_by_address,
        reopen_days=conv.reopen_days,
        organisation_participants=conv.organisation_participants,
        freemail_domains=tuple(mail.freemail_domains),
        new_tickets_per_address=conv.new_tickets_per_address,
        new_tickets_window_minutes=conv.new_tickets_window_minutes,
        taxonomy=Taxonomy(
            categories=categories,
            priorities=PRIORITIES,
            levels=LEVELS,
            agents=tuple((a.address, a.name) for a in agents),
        ),
    )


def warn_about_trust(settings: Settings) -> None:
    """Once at start-up: trusting agents by their From address lets anyone who writes
    that From give commands."""
    if settings.security.trust_agents_by_address:
        log.warning(
            "security.trust_agents_by_address is on: any mail with an agent's From "
            "address counts as the agent's (commands run, replies are relayed); use it "
            "only where nobody else can send mail with that address"
        )
