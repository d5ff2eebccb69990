"""The SLA jobs: find the tickets with due SLA work, act, and say when next.

Stateless: everything they need is on the ticket row (``sla_next_at``, indexed) and
in its events; a restart loses nothing. One transaction per batch, a savepoint per
ticket: the ticket rows are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so a
second instance takes other tickets; SQLite's write lock serialises instances), each
action writes its event and its outbox rows (UNIQUE keys) together, and the due
times are recomputed before the commit. Two instances, or a tick run twice, send
every notice once.

`mailtriage run` runs :func:`run_sla_jobs` every ``sla.job_interval_seconds`` (an
APScheduler job); ``mailtriage scheduler tick`` runs it once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.config import Settings
from mailtriage.outbound.ack import OutboundPolicy, cached_policy
from mailtriage.outbound.sla_mail import (
    queue_auto_close,
    queue_breach,
    queue_escalation,
    queue_reminder,
    queue_warning,
)
from mailtriage.sla import SlaRules, evaluate
from mailtriage.store.apply import set_status
from mailtriage.store.models import Event, Ticket, utcnow
from mailtriage.store.sla_store import due_ticket_ids, refresh_sla, ticket_facts

__all__ = ["SlaJobs", "run_sla_jobs", "start_sla_jobs"]

log = logging.getLogger(__name__)
MAX_ROUNDS = 1000  # batches per run; the rest waits for the next run


def run_sla_jobs(
    factory: sessionmaker[Session],
    settings: Settings,
    now: datetime | None = None,
    policy: OutboundPolicy | None = None,
) -> Counter[str]:
    """Take every SLA action due at ``now`` (default: the clock); counts by kind."""
    now = now or utcnow()
    policy = policy or cached_policy(settings)
    rules = policy.sla
    counts: Counter[str] = Counter()
    if rules is None:
        return counts
    batch = settings.sla.batch_size
    seen: set[int] = set()
    for _ in range(MAX_ROUNDS):
        with factory() as session, session.begin():
            ids = due_ticket_ids(session, now, batch)
            fresh = [i for i in ids if i not in seen]
            for ticket_id in fresh:
                seen.add(ticket_id)
                try:
                    with session.begin_nested():
                        for kind in act_on_ticket(session, ticket_id, rules, policy, now):
                            counts[kind] += 1
                except (OperationalError, DBAPIError):
                    raise
                except Exception:  # one broken ticket must not stop the others
                    log.exception(
                        "SLA jobs: %s-%06d failed; retried next run", policy.prefix, ticket_id
                    )
                    counts["failed"] += 1
        if len(ids) < batch or not fresh:
            break
    return counts


def act_on_ticket(
    session: Session, ticket_id: int, rules: SlaRules, policy: OutboundPolicy, now: datetime
) -> list[str]:
    """Take the ticket's due actions and recompute its due times; the kinds taken."""
    facts = ticket_facts(session, ticket_id)
    ticket = session.get(Ticket, ticket_id)
    if facts is None or ticket is None:
        return []
    taken = []
    ev = evaluate(facts, rules, now)
    reminders = sum(1 for e in facts.events if e.kind == "reminder_sent")
    for action in ev.due:
        detail: dict[str, Any] = {"clock": action.clock, "cycle": action.cycle} | dict(
            action.detail
        )
        if action.kind == "sla_warning":
            detail |= {
                "index": action.index,
                "outbox": queue_warning(session, ticket, action, policy),
            }
        elif action.kind == "sla_breach":
            detail |= {"outbox": queue_breach(session, ticket, action, policy)}
        elif action.kind == "escalated":
            moved = session.execute(
                update(Ticket)
                .where(Ticket.id == ticket_id, Ticket.level == "L1")
                .values(level="L2", updated_at=now)
                .execution_options(synchronize_session="fetch")
            )
            if not moved.rowcount:  # type: ignore[attr-defined]
                continue
            detail |= {"from": "L1", "to": "L2"}
            detail |= {"outbox": queue_escalation(session, ticket, action, policy)}
        elif action.kind == "reminder_sent":
            detail |= {"outbox": queue_reminder(session, ticket, action, policy, reminders)}
        elif action.kind == "auto_closed":
            why = f"no answer {action.detail.get('days')} days after the reminder"
            if not _close(session, ticket_id, why, now):
                continue
            detail |= {"outbox": queue_auto_close(session, ticket, action, policy)}
        session.add(
            Event(
                ticket_id=ticket_id, kind=action.kind, actor="system", detail=detail, created_at=now
            )
        )
        session.flush()
        taken.append(action.kind)
        log.info("%s-%06d: %s %s", policy.prefix, ticket_id, action.kind, action.clock)
    refresh_sla(session, ticket_id, rules, now)
    return taken


def _close(session: Session, ticket_id: int, why: str, now: datetime) -> bool:
    return set_status(session, ticket_id, "waiting", "closed", why, "system", None, now)


class SlaJobs:
    """The SLA job of `mailtriage run`: its own APScheduler background scheduler."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self.factory = factory
        self.settings = settings
        self.last_tick: float | None = None  # time.time() of the last round that ran
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        self.scheduler.add_job(
            self.run,
            "interval",
            seconds=self.settings.sla.job_interval_seconds,
            id="sla-jobs",
            next_run_time=utcnow(),
        )
        self.scheduler.start()
        log.info("SLA jobs started (every %gs)", self.settings.sla.job_interval_seconds)

    def run(self) -> None:
        try:
            counts = run_sla_jobs(self.factory, self.settings)
        except (OperationalError, DBAPIError) as exc:
            log.warning("SLA jobs: database unavailable, next round retries: %s", exc)
            return
        self.last_tick = time.time()  # /readyz: the jobs go round
        if counts:
            log.info("SLA jobs: %s", " ".join(f"{k}={v}" for k, v in sorted(counts.items())))

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)


def start_sla_jobs(factory: sessionmaker[Session], settings: Settings) -> SlaJobs | None:
    """Start the SLA jobs unless ``sla.jobs_enabled`` is false."""
    if not settings.sla.jobs_enabled:
        return None
    jobs = SlaJobs(factory, settings)
    jobs.start()
    return jobs
