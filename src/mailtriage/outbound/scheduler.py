"""The scheduler of `mailtriage run` (APScheduler 3, in a background thread).

One job for now: flush the outbox every ``outbound.poll_interval_seconds``. A job never
runs twice at once (``max_instances=1``) and missed runs collapse into one
(``coalesce``); running it twice still sends every mail once, since rows are leased.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.config import ConfigError, Settings
from mailtriage.outbound.ack import outbound_policy
from mailtriage.outbound.render import RenderError
from mailtriage.outbound.sender import Sender

log = logging.getLogger(__name__)

__all__ = ["OutboundScheduler", "start_outbound"]


class OutboundScheduler:
    def __init__(
        self, factory: sessionmaker[Session], settings: Settings, sender: Sender | None = None
    ) -> None:
        self.settings = settings
        self.sender = sender or Sender(factory, settings)
        self._stop = threading.Event()
        self.last_tick: float | None = None  # time.time() of the last round (/readyz)
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def start(self) -> None:
        # APScheduler logs every run at INFO ("Running job ..."): every few seconds.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self.scheduler.add_job(
            self.send_due,
            "interval",
            seconds=self.settings.outbound.poll_interval_seconds,
            id="outbox-send",
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()
        log.info("outbox sender started (%s)", self.sender.mailer.via)

    def send_due(self) -> None:
        self.last_tick = time.time()
        try:
            report = self.sender.flush(self._stop)
        except (OperationalError, DBAPIError) as exc:
            log.warning("outbox: database unavailable, next round retries: %s", exc)
            return
        if report.total():
            log.info("outbox: %s", " ".join(f"{k}={v}" for k, v in report.to_dict().items() if v))

    def stop(self) -> None:
        """Finish the mail being sent, then release whatever else is leased."""
        self._stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        try:
            self.sender.release()
        except (OperationalError, DBAPIError) as exc:  # the leases expire instead
            log.warning("outbox: could not release leases: %s", exc)


def start_outbound(factory: sessionmaker[Session], settings: Settings) -> OutboundScheduler | None:
    """Start the outbox sender job unless ``outbound.sender_enabled`` is false."""
    if not settings.outbound.sender_enabled:
        return None
    outbound_policy(settings)  # a broken KB index or template dir stops the start
    try:
        scheduler = OutboundScheduler(factory, settings)
    except RenderError as exc:
        raise ConfigError(str(exc)) from None
    scheduler.start()
    return scheduler
