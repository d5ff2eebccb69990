"""`mailtriage import`: accept files into the durable inbox, then process them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

from sqlalchemy import select

from mailtriage.app import App
from mailtriage.inbox import Accepted, Incoming
from mailtriage.intake.files import FileMessage, check_paths, iter_messages
from mailtriage.store.models import Inbound, InboundStatus

ACCEPT_BATCH = 64


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    appended: int = 0
    duplicates: int = 0
    ignored: int = 0
    quarantined: int = 0
    pending: int = 0  # deferred for a retry (transient error) or taken by another instance

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

    Running it twice creates nothing new: the second run finds every raw sha256 in
    the inbox and counts the messages as duplicates.
    """
    check_paths(paths)
    report = ImportReport()
    mine: list[int] = []
    worker = app.worker()
    for batch in _batches(iter_messages(paths), ACCEPT_BATCH):
        accepted = app.inbox.accept_many([Incoming(m.raw, m.source) for m in batch])
        report.read += len(batch)
        _count_accepted(report, accepted, mine)
        if on_read:
            on_read(len(batch))
        # Process as we go, so memory stays bounded and both cores stay busy.
        for item in worker.run_once(limit=max(ACCEPT_BATCH, app.settings.worker.batch_size)):
            if on_processed:
                on_processed(1)
            del item
    worker.drain(on_processed=(lambda _item: on_processed(1)) if on_processed else None)
    _count_outcomes(app, report, mine)
    return report


def _count_accepted(report: ImportReport, accepted: list[Accepted], mine: list[int]) -> None:
    for item in accepted:
        if item.created:
            mine.append(item.id)
        else:
            report.duplicates += 1


def _count_outcomes(app: App, report: ImportReport, ids: list[int]) -> None:
    with app.factory() as session:
        for chunk in _batches(iter(ids), 500):
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


def _batches(items: Iterator[FileMessage] | Iterator[int], size: int) -> Iterable[list]:  # type: ignore[type-arg]
    while batch := list(islice(items, size)):
        yield batch
