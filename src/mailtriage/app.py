"""Composition root: build the stores, the inbox and the worker from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.blobs import BlobStore
from mailtriage.config import Settings
from mailtriage.holiday_cache import cached_holidays
from mailtriage.inbox import Inbox
from mailtriage.sla.calendar import use_holiday_source
from mailtriage.store import db
from mailtriage.worker import Processor, Worker


@dataclass
class App:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    blobs: BlobStore
    inbox: Inbox
    # SQLite commits reach the disk before they return (this process accepts mail)
    syncs_commits: bool = False
    _workers: list[Worker] = field(default_factory=list)
    _processing: tuple[Engine, sessionmaker[Session]] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, accepts: bool = True) -> App:
        """``accepts``: this process acknowledges mail (SMTP, IMAP, import), so its
        SQLite commits are synced before they return. A worker's commits need not be:
        one lost to a power cut is processed again when its lease expires."""
        durable = settings.storage.fsync and accepts
        engine = db.make_engine(settings.database_url, echo=settings.database.echo, durable=durable)
        factory = db.session_factory(engine)
        use_holiday_source(cached_holidays)  # the SLA clocks' holidays from the disk cache
        blobs = BlobStore(settings.storage_dir / "blobs")
        inbox = Inbox(
            factory,
            blobs,
            fsync=settings.storage.fsync,
            inline_max=settings.storage.inline_max_kb * 1024,
        )
        return cls(settings, engine, factory, blobs, inbox, syncs_commits=durable)

    def prepare_database(self) -> None:
        """Apply pending migrations (database.auto_migrate) or insist the schema is current."""
        if self.settings.database.auto_migrate:
            db.prepare(self.engine)
        else:
            db.check_schema(self.engine)

    def worker(self, owner: str | None = None) -> Worker:
        worker = Worker(
            self.inbox,
            self.processing_factory(),
            self.blobs,
            self.settings,
            owner=owner,
            pool_processor=pool_processor,
            single_writer=self.engine.dialect.name == "sqlite",
        )
        self._workers.append(worker)
        return worker

    def processing_factory(self) -> sessionmaker[Session]:
        """Sessions for filing messages. Their commits need not reach the disk before
        they return (one lost to a power cut leaves the message claimed, and it is
        processed again when the lease expires), so on a SQLite database that syncs
        every commit for intake, processing gets its own engine that does not."""
        if db.sqlite_file(self.engine) is None or not self.syncs_commits:
            return self.factory
        if self._processing is None:
            engine = db.make_engine(
                self.settings.database_url, echo=self.settings.database.echo, durable=False
            )
            self._processing = (engine, db.session_factory(engine))
        return self._processing[1]

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers.clear()
        if self._processing is not None:
            self._processing[0].dispose()
            self._processing = None
        self.engine.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pool_processor(settings: Settings, owner: str) -> Processor:
    """The Processor of one worker pool process: its own engine and sessions."""
    app = App.from_settings(settings, accepts=False)
    return Processor(app.inbox, app.factory, app.blobs, settings, owner)
