"""The two mails the pages send themselves: an organisation sign-in link, and a new
ticket link in place of an expired one. They go out at once through the configured
mailer (a link that could not be sent is asked for again; it is not worth a retry
queue), with the loop-safe headers of every mail we send."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from mailtriage.config import Settings
from mailtriage.outbound.headers import AUTO_GENERATED, OutgoingMail, message_bytes
from mailtriage.outbound.mailer import Mailer, mailer_from_settings
from mailtriage.outbound.render import Templates
from mailtriage.portal.app import SendMail

__all__ = ["link_sender"]

KINDS = {"signin": "portal_signin", "renew": "portal_link"}


def link_sender(settings: Settings, mailer: Mailer | None = None) -> SendMail:
    """A ``send(kind, recipient, language, link)`` for ``PortalPages``."""
    templates = Templates(settings.outbound.templates_dir or None)
    chosen = mailer or mailer_from_settings(settings)
    support = settings.mail.support_address
    domain = settings.mail.message_domain

    def send(kind: str, recipient: str, language: str, link: str) -> None:
        template = KINDS[kind]
        if language not in templates.languages(template):
            language = settings.triage.default_language
        rendered = templates.render(
            template,
            language,
            {
                "link": link,
                "minutes": f"{settings.portal.signin_link_minutes:g}",
                "support_address": support,
            },
        )
        message_id = f"portal.{uuid.uuid4().hex}@{domain}"
        mail = OutgoingMail(
            from_name=settings.outbound.from_name,
            from_address=support,
            to_name="",
            to_address=recipient,
            reply_to=support,
            subject=rendered.subject,
            message_id=message_id,
            date=datetime.now(UTC),
            text=rendered.text,
            html=rendered.html,
            auto_submitted=AUTO_GENERATED,
            language=language,
            kind=template,
        )
        envelope = settings.outbound.envelope_sender or support
        chosen.deliver(envelope, recipient, message_bytes(mail), message_id)

    return send
