"""The one loop that owns claiming, retries and quarantine.

claim (lease) -> read raw blob -> analyse (pure; in a process pool when there is
work for several cores) -> store.apply in one transaction -> done.
This is the only place that catches broad exceptions: an unexpected error counts as
one attempt, and after ``max_attempts`` the message is quarantined with its
stage, reason and traceback. Nothing is ever dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import random
import socket
import threading
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.blobs import BlobStore
from mailtriage.config import Settings
from mailtriage.inbox import Claimed, Inbox
from mailtriage.pipeline.analyse import Analysis, AnalysisOptions, analyse
from mailtriage.pipeline.parse import ParseError, ParseLimits
from mailtriage.store.apply import LeaseLost, apply_analysis

log = logging.getLogger(__name__)

# Below this many claimed messages, parsing in-process beats shipping bytes to a pool.
POOL_THRESHOLD = 4
# At most this many results are written in one transaction.
STORE_GROUP = 32


@dataclass(frozen=True)
class Processed:
    inbound_id: int
    outcome: str  # created / appended / duplicate / ignored / quarantined / deferred / lost
    ticket_id: int | None = None


@dataclass(frozen=True)
class _JobResult:
    analysis: Analysis | None
    stage: str = ""
    reason: str = ""
    traceback: str | None = None
    permanent: bool = False


def analysis_options(settings: Settings) -> AnalysisOptions:
    mb = 1024 * 1024
    return AnalysisOptions(
        limits=ParseLimits(
            max_message_bytes=int(settings.storage.max_message_mb * mb),
            max_attachment_bytes=int(settings.storage.max_attachment_mb * mb),
        ),
        own_domains=settings.mail.own_domains,
        rules_file=settings.triage.rules_file,
    )


def _analyse_job(
    raw_path: Path, options: AnalysisOptions, envelope_sender: str | None, blob_root: Path
) -> _JobResult:
    """Analyse one stored message and put its attachments into the blob store.

    Runs in a pool process: it reads the raw file itself and returns the analysis
    without attachment bytes, so no megabytes cross the process boundary.
    """
    try:
        analysis = analyse(raw_path, options, envelope_sender)
    except ParseError as exc:
        return _JobResult(None, "parse", str(exc), traceback.format_exc(), permanent=True)
    except RecursionError as exc:
        return _JobResult(
            None,
            "parse",
            f"message nested too deeply: {exc}",
            traceback.format_exc(),
            permanent=True,
        )
    except OSError as exc:
        return _JobResult(None, "read", f"raw message unreadable: {exc}", traceback.format_exc())
    except Exception as exc:
        return _JobResult(None, "analyse", f"{type(exc).__name__}: {exc}", traceback.format_exc())
    try:
        return _JobResult(store_attachments(BlobStore(blob_root), analysis))
    except OSError as exc:
        return _JobResult(None, "store", f"blob store: {exc}", traceback.format_exc())


def warm_up(options: AnalysisOptions) -> None:
    """Load what every analysis needs (rules, language model) once per process."""
    from mailtriage.pipeline.analyse import warm_up as warm_analysis

    warm_analysis(options)


def store_attachments(blobs: BlobStore, analysis: Analysis) -> Analysis:
    """Attachment bytes -> blob store (idempotent; derived from the raw message, so
    not fsynced); the analysis is returned without them."""
    stored = []
    for att in analysis.parsed.attachments:
        blobs.put(att.data, durable=False)
        stored.append(att.without_data())
    parsed = dataclasses.replace(analysis.parsed, attachments=tuple(stored))
    return dataclasses.replace(analysis, parsed=parsed)


class Worker:
    def __init__(
        self,
        inbox: Inbox,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        settings: Settings,
        *,
        owner: str | None = None,
    ) -> None:
        self.inbox = inbox
        self.factory = factory
        self.blobs = blobs
        self.settings = settings
        self.options = analysis_options(settings)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool: Executor | None = None

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.inbox.release(self.owner)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _processes(self) -> int:
        wanted = self.settings.worker.processes
        return wanted if wanted > 0 else (os.cpu_count() or 1)

    def _executor(self) -> Executor | None:
        if self._processes() <= 1:
            return None
        if self._pool is None:
            # forkserver: children fork from a clean server that has already imported
            # the pipeline, not from this process with its threads and connections.
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["mailtriage.pipeline.analyse"])
            self._pool = ProcessPoolExecutor(
                max_workers=self._processes(),
                mp_context=ctx,
                initializer=warm_up,
                initargs=(self.options,),
            )
        return self._pool

    def start_pool(self) -> None:
        """Start the parser processes now (they take a moment to load), not on the
        first batch."""
        if self._pool is not None:
            return
        executor = self._executor()
        if executor is not None:
            for _ in range(self._processes()):
                executor.submit(warm_up, self.options)

    # -- work -----------------------------------------------------------------------

    def run_once(self, limit: int | None = None) -> list[Processed]:
        """Claim one batch and process it; [] when nothing is due."""
        claimed = self.inbox.claim(
            self.owner,
            limit or self.settings.worker.batch_size,
            self.settings.worker.lease_seconds,
        )
        return list(self._process(claimed))

    def drain(self, on_processed: Callable[[Processed], None] | None = None) -> Counter[str]:
        """Process until nothing is due; returns counts per outcome."""
        counts: Counter[str] = Counter()
        while batch := self.run_once():
            for item in batch:
                counts[item.outcome] += 1
                if on_processed:
                    on_processed(item)
        return counts

    def run_forever(self, stop: threading.Event) -> None:
        """The daemon loop: poll, process, sleep when idle, until ``stop`` is set."""
        while not stop.is_set():
            try:
                batch = self.run_once()
            except (OperationalError, DBAPIError) as exc:
                log.warning("worker: database unavailable, retrying: %s", exc)
                stop.wait(min(30.0, self.settings.worker.retry_base_seconds))
                continue
            if not batch:
                stop.wait(self.settings.worker.poll_interval_seconds)

    def _process(self, claimed: list[Claimed]) -> Iterator[Processed]:
        jobs: list[Claimed] = []
        for item in claimed:
            if item.attempts > self.settings.worker.max_attempts:
                yield self._quarantine(
                    item,
                    "worker",
                    f"gave up after {item.attempts - 1} "
                    "attempts (the last ones did not finish: crash or kill?)",
                    None,
                )
            elif not self.blobs.exists(item.raw_sha256):
                yield self._fail(
                    item, "read", "raw message missing from the blob store", None, permanent=False
                )
            else:
                jobs.append(item)
        futures = self._submit(jobs)
        i = 0
        while i < len(futures):
            # Store the next result together with every later one that is already
            # done: one transaction for a group, one savepoint per message.
            group = [(jobs[i], futures[i].result())]
            i += 1
            while i < len(futures) and len(group) < STORE_GROUP and futures[i].done():
                group.append((jobs[i], futures[i].result()))
                i += 1
            yield from self._store_group(group)

    def _submit(self, jobs: list[Claimed]) -> list[Future[_JobResult]]:
        executor = self._executor() if len(jobs) >= POOL_THRESHOLD else None
        futures: list[Future[_JobResult]] = []
        for claimed in jobs:
            args = (
                self.blobs.path(claimed.raw_sha256),
                self.options,
                (claimed.envelope or {}).get("mail_from"),
                self.blobs.root,
            )
            if executor is not None:
                futures.append(executor.submit(_analyse_job, *args))
            else:
                done: Future[_JobResult] = Future()
                done.set_result(_analyse_job(*args))
                futures.append(done)
        return futures

    def _store_group(self, group: list[tuple[Claimed, _JobResult]]) -> list[Processed]:
        out: dict[int, Processed] = {}
        failed: list[tuple[Claimed, str, str, str | None, bool]] = []
        ready: list[tuple[Claimed, Analysis]] = []
        for item, result in group:
            if result.analysis is None:
                failed.append(
                    (item, result.stage, result.reason, result.traceback, result.permanent)
                )
            else:
                ready.append((item, result.analysis))
        concurrent: list[tuple[Claimed, str]] = []
        try:
            with self.factory() as session, session.begin():
                for item, analysis in ready:
                    try:
                        with session.begin_nested():
                            applied = apply_analysis(
                                session,
                                item.id,
                                self.owner,
                                analysis,
                                freemail_domains=self.settings.mail.freemail_domains,
                            )
                        out[item.id] = Processed(item.id, applied.outcome, applied.ticket_id)
                    except LeaseLost:
                        log.warning("inbound %s: lease lost; another worker owns it now", item.id)
                        out[item.id] = Processed(item.id, "lost")
                    except IntegrityError as exc:
                        # Someone else stored the same thing concurrently: a retry sees it.
                        concurrent.append((item, f"concurrent write: {exc.orig}"))
                    except (OperationalError, DBAPIError):
                        raise
                    except Exception as exc:
                        failed.append(
                            (
                                item,
                                "store",
                                f"{type(exc).__name__}: {exc}",
                                traceback.format_exc(),
                                False,
                            )
                        )
        except (OperationalError, DBAPIError) as exc:
            # The transaction is gone: every message of the group is retried later.
            reason = f"database error: {exc.orig}"
            db_tb = traceback.format_exc()
            out.clear()
            concurrent.clear()
            for item, _analysis in ready:
                out[item.id] = self._defer(
                    item, "store", reason, db_tb, self._backoff(item.attempts)
                )
            failed = [f for f in failed if f[0].id not in out]
        for item, reason in concurrent:
            out[item.id] = self._defer(item, "store", reason, None, 0.2)
        for item, stage, reason, tb, permanent in failed:
            out[item.id] = self._fail(item, stage, reason, tb, permanent=permanent)
        return [out[item.id] for item, _ in group]

    def _fail(
        self, item: Claimed, stage: str, reason: str, tb: str | None, *, permanent: bool
    ) -> Processed:
        if permanent or item.attempts >= self.settings.worker.max_attempts:
            return self._quarantine(item, stage, reason, tb)
        return self._defer(item, stage, reason, tb, self._backoff(item.attempts))

    def _quarantine(self, item: Claimed, stage: str, reason: str, tb: str | None) -> Processed:
        log.warning("inbound %s quarantined at %s: %s", item.id, stage, reason)
        self.inbox.quarantine(item.id, self.owner, stage=stage, reason=reason, traceback=tb)
        return Processed(item.id, "quarantined")

    def _defer(
        self, item: Claimed, stage: str, reason: str, tb: str | None, delay: float
    ) -> Processed:
        log.info("inbound %s deferred %.1fs at %s: %s", item.id, delay, stage, reason)
        with contextlib.suppress(OperationalError, DBAPIError):  # the lease expires instead
            self.inbox.defer(
                item.id, self.owner, stage=stage, reason=reason, traceback=tb, delay_seconds=delay
            )
        return Processed(item.id, "deferred")

    def _backoff(self, attempts: int) -> float:
        w = self.settings.worker
        delay = min(w.retry_max_seconds, w.retry_base_seconds * 2 ** max(0, attempts - 1))
        return delay * random.uniform(0.8, 1.2)
