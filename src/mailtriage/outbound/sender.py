"""The outbox sender: claim due rows -> guard -> render -> deliver -> record.

Delivery is at least once. The row is leased (``sending``) and committed before the
SMTP transaction starts, and the result is committed right after the relay's ``250``.
A crash (kill -9, power loss) between the ``250`` and that commit leaves the row
``sending``; when its lease expires it is claimed and sent again, with the same
Message-ID, because the Message-ID was fixed when the mail was queued. So a crash in
that window sends one duplicate, never more per crash, and never a mail with a new
identity: mail clients and Gmail fold two copies with one Message-ID into one. The
alternative (mark "sent" before sending) would lose mail on a crash instead. Without
a relay the Maildir file name derives from the Message-ID, which makes even that
window exactly-once; so there a claimed batch is written, the directory synced once,
and the batch recorded in one commit (a crash before it writes the same files again).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.attachment_data import AttachmentMissing, attachment_data
from mailtriage.backoff import exponential_delay
from mailtriage.blobs import BlobStore
from mailtriage.config import Settings
from mailtriage.ops.logs import fields
from mailtriage.outbound.ack import ACK, MailContext, reply_address
from mailtriage.outbound.conversation_mail import (
    CONVERSATION_KINDS,
    FEEDBACK,
    RELAY,
    ConversationContext,
)
from mailtriage.outbound.headers import (
    AUTO_GENERATED,
    AUTO_REPLIED,
    MailAttachment,
    OutgoingMail,
    UnsendableAddress,
    message_bytes,
    safe_address,
)
from mailtriage.outbound.mailer import (
    DeliveryError,
    Mailer,
    mailer_from_settings,
)
from mailtriage.outbound.outbox import GuardFacts, OutboxJob, OutboxStore
from mailtriage.outbound.render import RenderError, Templates
from mailtriage.outbound.sla_mail import CUSTOMER_KINDS, SLA_KINDS
from mailtriage.portal.links import strip_page_links, ticket_url
from mailtriage.server_secret import load_secret
from mailtriage.store.models import utcnow
from mailtriage.store.outbound_models import OutboxStatus
from mailtriage.store.queries import ticket_reference

log = logging.getLogger(__name__)

__all__ = ["RateLimits", "SendReport", "Sender", "guard", "next_attempt"]


@dataclass(frozen=True)
class RateLimits:
    ticket_limit: int = 10
    ticket_window: timedelta = timedelta(minutes=10)
    address_limit: int = 30
    address_window: timedelta = timedelta(hours=1)


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    lost: int = 0  # delivered, but another sender had taken the row over

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def merge(self, other: SendReport) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def total(self) -> int:
        return sum(asdict(self).values())

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def guard(facts: GuardFacts, limits: RateLimits, now: datetime) -> str | None:
    """Why this mail must not be sent now (pure), or None."""
    if facts.suppressed_until is not None and facts.suppressed_until > now:
        return (
            f"address suppressed until {facts.suppressed_until.isoformat(timespec='minutes')}"
            f" ({facts.suppressed_reason})"
        )
    if facts.ticket_sent >= limits.ticket_limit:
        return (
            f"rate limit: {facts.ticket_sent} mails to this ticket in the last "
            f"{_minutes(limits.ticket_window)} minutes (outbound.ticket_limit)"
        )
    if facts.address_sent >= limits.address_limit:
        return (
            f"rate limit: {facts.address_sent} mails to this address in the last "
            f"{_minutes(limits.address_window)} minutes (outbound.address_limit)"
        )
    return None


def _article(mail: OutgoingMail) -> dict[str, Any]:
    """What ``mark_sent`` records of a sent mail."""
    return {
        "sender": mail.from_address,
        "sender_name": mail.from_name,
        "reply_to": mail.reply_to,
        "subject": mail.subject,
        "text": mail.text,
        "html": mail.html,
        "cc": [address for address, _ in mail.cc],
        "in_reply_to": [mail.in_reply_to] if mail.in_reply_to else [],
        "references": list(mail.references),
    }


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:g}"


def next_attempt(
    attempts: int,
    now: datetime,
    deadline: datetime,
    base_seconds: float,
    max_seconds: float,
    jitter: float = 1.0,
) -> datetime | None:
    """When to try again after ``attempts`` failed tries (pure): exponential backoff,
    never past the deadline; None once the deadline has passed."""
    if now >= deadline:
        return None
    delay = exponential_delay(attempts, base_seconds, max_seconds) * jitter
    return min(now + timedelta(seconds=delay), deadline)


class Sender:
    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        *,
        mailer: Mailer | None = None,
        templates: Templates | None = None,
        blobs: BlobStore | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = OutboxStore(factory)
        self.mailer = mailer or mailer_from_settings(settings)
        self.templates = templates or Templates(settings.outbound.templates_dir or None)
        self.blobs = blobs or BlobStore(settings.storage_dir / "blobs")
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        o = settings.outbound
        self.limits = RateLimits(
            o.ticket_limit,
            timedelta(minutes=o.ticket_window_minutes),
            o.address_limit,
            timedelta(minutes=o.address_window_minutes),
        )
        self.envelope_sender = o.envelope_sender or settings.mail.support_address
        self.agent_addresses = frozenset(a.address.lower() for a in settings.agents)
        self._secret: bytes | None = None

    def ticket_url(self, job: OutboxJob) -> str:
        """The link to the ticket's page for a customer recipient ("" for an agent, or
        with the portal off): every mail to a customer alone carries one (a mail with
        Cc recipients none: see _render_conversation)."""
        if not self.settings.portal.enabled or job.recipient.lower() in self.agent_addresses:
            return ""
        if self._secret is None:
            self._secret = load_secret(self.settings.security, self.settings.storage_dir)
        return ticket_url(self.settings, self._secret, job.ticket_id, job.recipient, self.clock())

    # -- loop -----------------------------------------------------------------------

    def run_once(self, limit: int | None = None, due_before: datetime | None = None) -> SendReport:
        """Claim one batch of due mail and send it.

        The guard's facts are read once for the batch (mail the batch sends is
        counted as it goes). Into the Maildir, the delivered mails are recorded
        together after one sync of its directory: it is exactly-once per Message-ID,
        so a crash before that record only writes the same files again. Through a
        relay each mail is recorded right after its ``250``, so a crash sends at
        most one mail twice."""
        report = SendReport()
        jobs = self.store.claim(
            self.owner,
            limit or self.settings.outbound.batch_size,
            self.settings.outbound.lease_seconds,
            self.clock(),
            due_before,
        )
        if not jobs:
            return report
        now = self.clock()
        facts = self.store.guard_facts(
            jobs, now, self.limits.ticket_window, self.limits.address_window
        )
        per_ticket: Counter[int] = Counter()
        per_address: Counter[str] = Counter()
        delivered: list[tuple[OutboxJob, dict[str, Any]]] = []
        with self.mailer.batch():
            for job in jobs:
                known = facts[job.id]
                outcome = self._send(
                    job,
                    dataclasses.replace(
                        known,
                        ticket_sent=known.ticket_sent + per_ticket[job.ticket_id],
                        address_sent=known.address_sent + per_address[job.recipient],
                    ),
                )
                if isinstance(outcome, str):
                    report.add(outcome)
                    continue
                per_ticket[job.ticket_id] += 1
                per_address[job.recipient] += 1
                delivered.append((job, outcome))
                if not self.mailer.synced_per_batch:
                    report.add(self._record(delivered)[0])
                    delivered = []
        if delivered:
            try:
                self.mailer.sync()
            except DeliveryError as err:  # not recorded: sent again when the leases end
                log.error("outbox: %s; %d mails are written again later", err, len(delivered))
                report.retrying += len(delivered)
                return report
            for outcome in self._record(delivered):
                report.add(outcome)
        return report

    def _record(self, delivered: list[tuple[OutboxJob, dict[str, Any]]]) -> list[str]:
        """Record delivered mail (one commit); "sent" or "lost" for each."""
        via = self.mailer.via
        outcomes = []
        for (job, _), ok in zip(
            delivered,
            self.store.mark_sent(self.owner, delivered, via=via, now=self.clock()),
            strict=True,
        ):
            if ok:
                log.info(
                    "outbox %s: %s sent via %s", job.id, job.kind, via, extra=self._fields(job)
                )
                outcomes.append("sent")
            else:
                log.warning(
                    "outbox %s: sent, but its lease had expired and another sender "
                    "took it over (it may be sent twice)",
                    job.id,
                )
                outcomes.append("lost")
        return outcomes

    def flush(self, stop: threading.Event | None = None) -> SendReport:
        """Send what is due now, each mail at most once (what fails again waits for
        its retry time), until nothing is left or ``stop`` is set."""
        started = self.clock()
        total = SendReport()
        while not (stop is not None and stop.is_set()):
            report = self.run_once(due_before=started)
            total.merge(report)
            if not report.total():
                break
        return total

    def _fields(self, job: OutboxJob) -> dict[str, Any]:
        """Log fields of an outbox row: ids, not the recipient's address."""
        prefix = self.settings.mail.ticket_prefix
        return fields(
            outbox_id=job.id,
            ticket=ticket_reference(prefix, job.ticket_id),
            message_id=job.message_id,
        )

    def release(self) -> int:
        return self.store.release(self.owner)

    # -- one mail -------------------------------------------------------------------

    def render(
        self, job: OutboxJob, exclude: frozenset[str] = frozenset()
    ) -> tuple[bytes, dict[str, Any]]:
        """The message as it goes out (bytes), and the outgoing article to record.
        ``exclude``: Cc addresses to leave out (suppressed ones)."""
        if job.kind in CONVERSATION_KINDS or job.kind in SLA_KINDS:
            return self._render_conversation(job, exclude)
        return self._render_ack(job)

    def _render_ack(self, job: OutboxJob) -> tuple[bytes, dict[str, Any]]:
        ctx = MailContext.from_json(job.context)
        support = self.settings.mail.support_address
        reply = ctx.reply_to or reply_address(
            support, ctx.reference, self.settings.outbound.reply_to_plus_address
        )
        rendered = self.templates.render(
            job.kind,
            job.language,
            ctx.variables(
                support_address=support, reply_address=reply, ticket_url=self.ticket_url(job)
            ),
        )
        mail = OutgoingMail(
            from_name=self.settings.outbound.from_name,
            from_address=support,
            to_name=ctx.to_name,
            to_address=job.recipient,
            reply_to=reply,
            subject=rendered.subject,
            message_id=job.message_id,
            date=self.clock(),
            text=rendered.text,
            html=rendered.html,
            in_reply_to=ctx.in_reply_to,
            references=ctx.references,
            auto_submitted=AUTO_REPLIED if job.kind == ACK else AUTO_GENERATED,
            language=job.language,
            ticket_reference=ctx.reference,
            kind=job.kind,
        )
        return message_bytes(mail), _article(mail)

    def _render_conversation(
        self, job: OutboxJob, exclude: frozenset[str]
    ) -> tuple[bytes, dict[str, Any]]:
        ctx = ConversationContext.from_json(job.context)
        support = self.settings.mail.support_address
        cc = tuple(
            (address, name)
            for address, name in ctx.cc
            if safe_address(address)
            and address.lower() not in exclude
            and address.lower() != job.recipient.lower()
        )
        variables = ctx.variables(
            support_address=support, ticket_url="" if cc else self.ticket_url(job)
        )
        if cc and "text" in variables:
            # Everyone on Cc reads the same text: a page link is a capability made for
            # one address (the requester's), so a shared mail carries none, not even
            # one the agent quoted.
            variables["text"] = strip_page_links(str(variables["text"]))
        rendered = self.templates.render(job.kind, job.language, variables)
        mail = OutgoingMail(
            from_name=ctx.from_name or self.settings.outbound.from_name,
            from_address=support,
            to_name=ctx.to_name,
            to_address=job.recipient,
            reply_to=ctx.reply_to,
            subject=rendered.subject,
            message_id=job.message_id,
            date=self.clock(),
            text=rendered.text,
            html=rendered.html,
            in_reply_to=ctx.in_reply_to,
            references=ctx.references,
            auto_submitted=ctx.auto_submitted,
            language=job.language,
            ticket_reference=ctx.reference,
            kind=job.kind,
            cc=cc,
            attachments=self._attachments(ctx),
        )
        article = _article(mail)
        if job.kind == RELAY:
            article["sends_article"] = job.step  # the agent's article is the record
        elif job.kind == FEEDBACK or job.kind in CUSTOMER_KINDS:
            article["internal"] = False  # a mail to the customer (feedback, reminder, ...)
        else:
            article["internal"] = True  # mail to an agent: never shown to a customer
        return message_bytes(mail), article

    def _attachments(self, ctx: ConversationContext) -> tuple[MailAttachment, ...]:
        """The bytes of the attachments to attach (``attachment_data``: from the blob
        store, or cut out of their message again); bytes no kept message has any more
        fail the mail (``outbox retry``) rather than drop a file."""
        wanted = [att for att in ctx.attachments if att.get("attached")]
        if not wanted:
            return ()
        out = []
        with self.store.factory() as session:
            for att in wanted:
                try:
                    data = attachment_data(session, self.blobs, str(att["sha256"]))
                except (OSError, ValueError, AttachmentMissing) as exc:
                    raise RenderError(f"attachment {att['filename']!r}: {exc}") from exc
                out.append(MailAttachment(str(att["filename"]), str(att["content_type"]), data))
        return tuple(out)

    def _send(self, job: OutboxJob, facts: GuardFacts) -> str | dict[str, Any]:
        """Guard, render and deliver one mail: its article once delivered (the
        caller records it), else the outcome ("skipped", "failed", "retrying")."""
        try:
            return self._send_one(job, facts)
        except (OperationalError, DBAPIError):
            raise
        except Exception as exc:  # a bug: count it as a try, the deadline ends it
            log.exception("outbox %s: unexpected error", job.id)
            return self._retry_or_fail(job, f"{type(exc).__name__}: {exc}", None)

    def _send_one(self, job: OutboxJob, facts: GuardFacts) -> str | dict[str, Any]:
        now = self.clock()
        why = guard(facts, self.limits, now)
        if why is not None:
            log.info("outbox %s skipped: %s", job.id, why, extra=self._fields(job))
            self.store.mark_final(job, self.owner, OutboxStatus.SKIPPED, why, {})
            return "skipped"
        cc = [str(c[0]).lower() for c in job.context.get("cc") or ()]
        suppressed = self.store.suppressed(cc, now) if cc else frozenset()
        try:
            message, article = self.render(job, suppressed)
        except (RenderError, UnsendableAddress) as exc:
            log.error("outbox %s cannot be rendered: %s", job.id, exc)
            self.store.mark_final(job, self.owner, OutboxStatus.FAILED, str(exc), {})
            return "failed"
        try:
            self.mailer.deliver(
                self.envelope_sender, job.recipient, message, job.message_id, cc=article["cc"]
            )
        except DeliveryError as err:
            if err.permanent:
                log.warning("outbox %s failed: %s", job.id, err.reason, extra=self._fields(job))
                self.store.mark_final(
                    job, self.owner, OutboxStatus.FAILED, err.reason, {"smtp_code": err.code}
                )
                return "failed"
            return self._retry_or_fail(job, err.reason, err.code)
        return article

    def _retry_or_fail(self, job: OutboxJob, reason: str, code: int | None) -> str:
        o = self.settings.outbound
        now = self.clock()
        when = next_attempt(
            job.attempts,
            now,
            job.deadline,
            o.retry_base_seconds,
            o.retry_max_seconds,
            random.uniform(0.8, 1.2),
        )
        if when is None:
            why = f"gave up at the deadline after {job.attempts} attempts; last error: {reason}"
            log.warning("outbox %s failed: %s", job.id, why, extra=self._fields(job))
            self.store.mark_final(job, self.owner, OutboxStatus.FAILED, why, {"smtp_code": code})
            return "failed"
        log.info(
            "outbox %s: %s; retry at %s",
            job.id,
            reason,
            when.isoformat(timespec="seconds"),
            extra=self._fields(job),
        )
        self.store.mark_retry(job, self.owner, reason, when)
        return "retrying"
