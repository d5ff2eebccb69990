"""`mailtriage import`: accept files into the durable inbox, then process them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from mailtriage.app import App
from mailtriage.inbox import Accepted, Incoming
from mailtriage.intake.files import FileMessage, check_paths, iter_messages, may_hold_many
from mailtriage.runners.pool import POOL_THRESHOLD
from mailtriage.store.models import Inbound, InboundStatus, utcnow

ACCEPT_BATCH = 64
ACCEPT_BATCH_BYTES = 16 * 1024 * 1024
# Claimed per round while importing: enough for the parser pool to run ahead while
# this process writes the results of earlier messages.
IMPORT_CLAIM = 128
# Longest sleep while messages of this import wait for a retry (backoff, a concurrent
# write, a lease of another instance): then look again.
MAX_RETRY_WAIT = 1.0


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    appended: int = 0
    duplicates: int = 0
    ignored: int = 0
    quarantined: int = 0
    # not finished when import returned: only when it was interrupted
    pending: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def import_paths(
    app: App,
    paths: list[Path],
    *,
    on_read: Callable[[int], None] | None = None,
    on_processed: Callable[[int], None] | None = None,
) -> ImportReport:
    """Accept every message under ``paths`` durably, then process them all.

    Reading and accepting run in this thread while a worker thread processes what
    is already accepted, so disk, database and the parser pool overlap. It returns
    when every message it accepted is done or quarantined: messages deferred for a
    retry (a concurrent write, a database hiccup) are waited for and processed again
    (a retry that keeps failing ends in quarantine after worker.max_attempts).
    Running it twice creates nothing new: the second run finds every raw sha256 in
    the inbox and counts the messages as duplicates.
    """
    check_paths(paths)
    worker = app.worker()
    if may_hold_many(paths, POOL_THRESHOLD):
        # Many messages to come: let the pool processes load (rules, language model)
        # before this thread reads and accepts the first files. (One file: no pool,
        # it is processed here.)
        worker.start_pool()
    report = ImportReport()
    mine: list[int] = []
    reading_done = threading.Event()
    failure: list[BaseException] = []

    def process() -> None:
        try:
            while True:
                finished = reading_done.is_set()
                batch = worker.run_once(limit=IMPORT_CLAIM)
                if on_processed and batch:
                    on_processed(len(batch))
                if not batch:
                    if finished:
                        due = _next_retry(app, mine)
                        if due is None:
                            return
                        wait = (due - utcnow()).total_seconds()
                        reading_done.wait(min(max(wait, 0.01), MAX_RETRY_WAIT))
                        continue
                    reading_done.wait(0.02)
        except BaseException as exc:  # re-raised in the calling thread below
            failure.append(exc)

    thread = threading.Thread(target=process, name="import-worker", daemon=True)
    thread.start()
    try:
        for batch in _batches_by_size(iter_messages(paths)):
            stored = app.inbox.write_blobs([Incoming(m.raw, m.source) for m in batch])
            report.read += len(batch)
            # The raw bytes are durable now; drop them before the rows are committed
            # and the worker starts on them (the generator still holds this list
            # until it resumes, so empty it in place).
            batch.clear()
            accepted = app.inbox.record(stored)
            if report.read >= POOL_THRESHOLD:
                worker.start_pool()  # no-op when it is already running
            _count_accepted(report, accepted, mine)
            if on_read:
                on_read(len(accepted))
            if failure:
                break
    finally:
        reading_done.set()
        thread.join()
    if failure:
        raise failure[0]
    _count_outcomes(app, report, mine)
    return report


def _batches_by_size(messages: Iterator[FileMessage]) -> Iterator[list[FileMessage]]:
    """Batches of at most ACCEPT_BATCH messages or ACCEPT_BATCH_BYTES bytes."""
    batch: list[FileMessage] = []
    size = 0
    for message in messages:
        batch.append(message)
        size += len(message.raw)
        del message  # do not keep the last raw message alive while the batch is used
        if len(batch) >= ACCEPT_BATCH or size >= ACCEPT_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _count_accepted(report: ImportReport, accepted: list[Accepted], mine: list[int]) -> None:
    for item in accepted:
        if item.created:
            mine.append(item.id)
        else:
            report.duplicates += 1


def _next_retry(app: App, ids: list[int]) -> datetime | None:
    """When the first unfinished message of ``ids`` is due again; None: all finished.

    A row another instance holds is due when its lease expires."""
    unfinished = Inbound.status.not_in((InboundStatus.DONE, InboundStatus.QUARANTINED))
    due = func.min(func.coalesce(Inbound.lease_until, Inbound.next_attempt_at))
    first: datetime | None = None
    found = False
    with app.factory() as session:
        for chunk in _chunks(ids, 500):
            count, when = session.execute(
                select(func.count(), due).where(Inbound.id.in_(chunk), unfinished)
            ).one()
            if count:
                found = True
                if when is not None and (first is None or _aware(when) < first):
                    first = _aware(when)
    if not found:
        return None
    return first or utcnow()


def _aware(when: datetime) -> datetime:
    """SQLite gives naive datetimes back (stored in UTC)."""
    return when if when.tzinfo else when.replace(tzinfo=utcnow().tzinfo)


def _count_outcomes(app: App, report: ImportReport, ids: list[int]) -> None:
    with app.factory() as session:
        for chunk in _chunks(ids, 500):
            rows = session.execute(
                select(Inbound.status, Inbound.outcome).where(Inbound.id.in_(chunk))
            )
            for status, outcome in rows:
                if status == InboundStatus.QUARANTINED:
                    report.quarantined += 1
                elif status != InboundStatus.DONE:
                    report.pending += 1
                elif outcome == "created":
                    report.created += 1
                elif outcome == "appended":
                    report.appended += 1
                elif outcome == "duplicate":
                    report.duplicates += 1
                elif outcome == "ignored":
                    report.ignored += 1


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
