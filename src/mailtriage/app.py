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
    _workers: list[Worker] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings, *, accepts: bool = True) -> App:
        """``accepts``: this process acknowledges mail (SMTP, IMAP, import), so its
        SQLite commits are synced before they return. A worker's commits need not be:
        one lost to a power cut is processed again when its lease expires."""
        engine = db.make_engine(
            settings.database_url,
            echo=settings.database.echo,
            durable=settings.storage.fsync and accepts,
        )
        factory = db.session_factory(engine)
        use_holiday_source(cached_holidays)  # the SLA clocks' holidays from the disk cache
        blobs = BlobStore(settings.storage_dir / "blobs")
        inbox = Inbox(factory, blobs, fsync=settings.storage.fsync)
        return cls(settings, engine, factory, blobs, inbox)

    def prepare_database(self) -> None:
        """Apply pending migrations (database.auto_migrate) or insist the schema is current."""
        if self.settings.database.auto_migrate:
            db.prepare(self.engine)
        else:
            db.check_schema(self.engine)

    def worker(self, owner: str | None = None) -> Worker:
        worker = Worker(
            self.inbox,
            self.factory,
            self.blobs,
            self.settings,
            owner=owner,
            pool_processor=pool_processor,
            single_writer=self.engine.dialect.name == "sqlite",
        )
        self._workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self._workers:
            worker.close()
        self._workers.clear()
        self.engine.dispose()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pool_processor(settings: Settings, owner: str) -> Processor:
    """The Processor of one worker pool process: its own engine and sessions."""
    app = App.from_settings(settings, accepts=False)
    return Processor(app.inbox, app.factory, app.blobs, settings, owner)
