"""Prometheus metrics of `mailtriage run` (prometheus-client), all named ``mailtriage_``.

Three kinds, each counted where it is true:

* events counted as they happen: received (daemon: SMTP and IMAP intake), processed
  by outcome and the processing latency (the worker process). These two processes
  share them through prometheus-client's multiprocess mode (:mod:`.multiproc`), so
  /metrics shows their sum whatever process counted;
* the live state of this daemon's roles (IMAP connection, poll errors and lag, the
  worker's restarts), read from the running :class:`~mailtriage.service.Service` at
  scrape time;
* what the database knows (inbox depth and oldest age, outbox states, open tickets
  per level, SLA events), queried at scrape time: several instances on one database
  all report the same figures there, so alert on ``max()`` of them, not ``sum()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.ops import multiproc
from mailtriage.store.models import Event, Feedback, Inbound, InboundStatus, Ticket, utcnow
from mailtriage.store.outbound_models import Outbox, OutboxStatus

if TYPE_CHECKING:
    from mailtriage.service import Service
    from mailtriage.worker import Processed

log = logging.getLogger(__name__)

SOURCES = ("smtp", "imap", "file")
# The kinds of ticket event the SLA clocks write (issue 13: counted from the event table).
SLA_EVENT_KINDS = ("sla_warning", "sla_breach", "escalated")
OPEN_TICKET_STATUSES = ("new", "open", "waiting")
UNPROCESSED = (InboundStatus.RECEIVED, InboundStatus.WAITING, InboundStatus.PROCESSING)

RECEIVED = Counter(
    "mailtriage_messages_received",
    "Messages taken in (durably stored), by intake source; duplicates included",
    ["source"],
)
PROCESSED = Counter(
    "mailtriage_messages_processed",
    "Messages the worker finished, by outcome (created, appended, duplicate, ignored, "
    "quarantined; deferred and lost are retried) and reason (why ignored or quarantined)",
    ["outcome", "reason"],
)
LATENCY = Histogram(
    "mailtriage_processing_latency_seconds",
    "From the durable accept to the ticket filed (or ignored, or quarantined)",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600),
)


def source_label(source: str) -> str:
    """An inbound row's source (``smtp:1.2.3.4``, ``imap:...``, ``mbox:/x#3``) -> label."""
    kind = source.partition(":")[0]
    if kind in ("smtp", "lmtp"):
        return "smtp"
    if kind == "imap":
        return "imap"
    return "file"


def count_received(source: str) -> None:
    RECEIVED.labels(source=source_label(source)).inc()


def count_processed(items: Iterable[Processed], now: datetime | None = None) -> None:
    """The worker's results: outcome counters and, for final ones, the latency."""
    now = now or utcnow()
    for item in items:
        PROCESSED.labels(outcome=item.outcome, reason=item.reason or "").inc()
        if item.outcome not in ("deferred", "lost") and item.received_at is not None:
            LATENCY.observe(max(0.0, (now - item.received_at).total_seconds()))


def _touch_labels() -> None:
    """Every source appears at 0 from the start, so ``rate()`` sees the first message."""
    for source in SOURCES:
        RECEIVED.labels(source=source)


@dataclass(frozen=True)
class InboxState:
    """What /readyz and /metrics say about the inbox, read by one query."""

    depth: dict[str, int]  # messages not processed yet, by status (UNPROCESSED)
    oldest: datetime | None  # when the oldest of them was received
    quarantined: int


def inbox_state(session: Session) -> InboxState:
    """The inbox's depth by status, its oldest unprocessed message and the quarantine's
    size, in one statement (the source of /readyz and /metrics)."""
    rows = session.execute(
        select(Inbound.status, func.count(), func.min(Inbound.received_at))
        .where(Inbound.status.in_((*UNPROCESSED, InboundStatus.QUARANTINED)))
        .group_by(Inbound.status)
    ).all()
    depth = {str(status): int(n) for status, n, _ in rows if status in UNPROCESSED}
    waiting = [first for status, _, first in rows if status in UNPROCESSED and first is not None]
    quarantined = sum(int(n) for status, n, _ in rows if status == InboundStatus.QUARANTINED)
    return InboxState(depth, min(waiting, default=None), quarantined)


class DatabaseCollector(Collector):
    """State that lives in the database, read at scrape time."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mailtriage_database_up", "1 if the database answered this scrape's queries"
        )
        try:
            with self.factory() as session:
                families = list(self._families(session))
        except SQLAlchemyError as exc:
            log.warning("metrics: database unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self, session: Session) -> Iterator[Metric]:
        now = utcnow()
        depth = GaugeMetricFamily(
            "mailtriage_inbox_depth",
            "Messages received but not processed yet, by status",
            labels=["status"],
        )
        inbox = inbox_state(session)
        for status in UNPROCESSED:
            depth.add_metric([status], inbox.depth.get(status, 0))
        yield depth
        age = GaugeMetricFamily(
            "mailtriage_inbox_oldest_age_seconds",
            "Age of the oldest message not processed yet (0: none waiting)",
        )
        age.add_metric([], _age(inbox.oldest, now))
        yield age
        quarantined = GaugeMetricFamily(
            "mailtriage_quarantined_messages", "Messages in quarantine (mailtriage quarantine list)"
        )
        quarantined.add_metric([], inbox.quarantined)
        yield quarantined
        yield self._outbox(session)
        yield self._open_tickets(session)
        sla = CounterMetricFamily(
            "mailtriage_sla_events",
            "SLA clock events written to tickets (sla_warning, sla_breach, escalated)",
            labels=["kind"],
        )
        by_kind = dict(
            session.execute(
                select(Event.kind, func.count())
                .where(Event.kind.in_(SLA_EVENT_KINDS))
                .group_by(Event.kind)
            ).all()
        )
        for kind in SLA_EVENT_KINDS:
            sla.add_metric([kind], by_kind.get(kind, 0))
        yield sla
        yield self._feedback(session)

    def _feedback(self, session: Session) -> Metric:
        family = GaugeMetricFamily(
            "mailtriage_feedback_ratings",
            "Customers' ratings of resolved tickets (1 to 5), by score",
            labels=["score"],
        )
        scores = dict(
            session.execute(select(Feedback.score, func.count()).group_by(Feedback.score)).all()
        )
        for score in range(1, 6):
            family.add_metric([str(score)], scores.get(score, 0))
        return family

    def _outbox(self, session: Session) -> Metric:
        family = GaugeMetricFamily(
            "mailtriage_outbox_messages",
            "Outbound mail by state: queued (first try due), retrying (a try failed, "
            "another is due), sending, sent, failed, skipped",
            labels=["state"],
        )
        states = dict.fromkeys(("queued", "retrying", "sending", "sent", "failed", "skipped"), 0)
        retried = (Outbox.status == OutboxStatus.PENDING) & (Outbox.attempts > 0)
        rows = session.execute(
            select(Outbox.status, retried, func.count()).group_by(Outbox.status, retried)
        )
        for status, is_retry, count in rows:
            if status == OutboxStatus.PENDING:
                state = "retrying" if is_retry else "queued"
            else:
                state = str(status)
            states[state] = states.get(state, 0) + int(count)
        for state, count in states.items():
            family.add_metric([state], count)
        return family

    def _open_tickets(self, session: Session) -> Metric:
        family = GaugeMetricFamily(
            "mailtriage_open_tickets",
            "Tickets not resolved or closed, by support level",
            labels=["level"],
        )
        rows: dict[str | None, int] = dict(
            session.execute(
                select(Ticket.level, func.count())
                .where(Ticket.status.in_(OPEN_TICKET_STATUSES))
                .group_by(Ticket.level)
            ).all()
        )
        for level in ("L1", "L2", "L3"):
            family.add_metric([level], rows.pop(level, 0))
        for other, count in rows.items():
            family.add_metric([other or "none"], count)
        return family


class ServiceCollector(Collector):
    """The live state of this daemon's roles, read at scrape time."""

    def __init__(self, service: Service, clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "mailtriage_imap_connected", "1 while the IMAP account is logged in", labels=["account"]
        )
        errors = CounterMetricFamily(
            "mailtriage_imap_poll_errors",
            "IMAP sessions that ended in an error (login, network, server)",
            labels=["account"],
        )
        lag = GaugeMetricFamily(
            "mailtriage_imap_poll_lag_seconds",
            "Seconds since the folder was last read completely",
            labels=["account"],
        )
        now = self.clock()
        for poller in self.service.pollers:
            state = poller.state
            connected.add_metric([poller.key], 1 if poller.connected.is_set() else 0)
            errors.add_metric([poller.key], state.errors)
            lag.add_metric([poller.key], max(0.0, now - (state.last_sync or state.started)))
        yield connected
        yield errors
        yield lag
        worker = self.service.worker
        if worker is not None:
            up = GaugeMetricFamily("mailtriage_worker_up", "1 while the worker process runs")
            up.add_metric([], 1 if worker.alive() else 0)
            yield up
            restarts = CounterMetricFamily(
                "mailtriage_worker_restarts", "Times the worker process died and was restarted"
            )
            restarts.add_metric([], worker.restarts)
            yield restarts


def _age(when: datetime | None, now: datetime) -> float:
    return max(0.0, (now - when).total_seconds()) if when is not None else 0.0


def registry_for(service: Service, factory: sessionmaker[Session]) -> CollectorRegistry:
    """The registry /metrics serves: the shared counters of every process of this
    daemon, the roles' live state and the database's state."""
    _touch_labels()
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(multiproc.prepare()))
    if multiproc.imported_too_early():
        # run_service called in a process that had imported prometheus-client before
        # (tests): this process's intake counters live in its memory, the worker
        # process's counters in the shared directory.
        registry.register(RECEIVED)
    registry.register(ServiceCollector(service))
    registry.register(DatabaseCollector(factory))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


__all__: list[Any] = [
    "LATENCY",
    "PROCESSED",
    "RECEIVED",
    "DatabaseCollector",
    "InboxState",
    "ServiceCollector",
    "count_processed",
    "count_received",
    "inbox_state",
    "registry_for",
    "render",
]
