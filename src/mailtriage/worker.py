"""The one loop that owns claiming, retries and quarantine.

claim (lease) -> read raw blob -> analyse (pure) -> store_analysis: facts from the
store -> conversation.match (pure) -> store.apply -> outbound mail, one transaction.
The Worker claims; a Processor analyses and stores what was claimed, in this process
or, when there is work for several cores, with a pool of processes: on PostgreSQL each
pool process analyses and stores (own connection, row locks); on SQLite, which has
one writer, the pool only analyses and this process stores in claim order while the
pool works on the next chunks. The Processor is the only place that catches broad
exceptions.

What is retried and what is not: the analysis is a pure function of the raw bytes,
the rules and the model, so an exception from it (other than running out of memory)
happens again on every attempt: the message is quarantined at once with the stage
and reason. Only trouble with the disk (reading the blob, writing attachments) or
the database is retried with backoff; an unexpected error while storing counts as
one attempt, and after ``max_attempts`` the message is quarantined with its stage,
reason and traceback. Nothing is ever dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import socket
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.agent_mail import AgentApplied, apply_agent_reply
from mailtriage.backoff import backoff_delay
from mailtriage.blobs import BlobStore
from mailtriage.config import Settings
from mailtriage.inbox import Claimed, Inbox
from mailtriage.ops.lifeline import die_with
from mailtriage.ops.logs import fields
from mailtriage.outbound.ack import NO_ACK, OutboundPolicy, cached_policy
from mailtriage.outbound.conversation_mail import (
    queue_agent_notices,
    queue_command_error,
    queue_feedback_request,
    queue_relay,
)
from mailtriage.outbound.outbox import note_automated_answer, queue_ack
from mailtriage.pipeline.analyse import Analyser, Analysis, analyse, warm_up
from mailtriage.pipeline.conversation import DEFAULT_POLICY, ConversationPolicy, Decision, match
from mailtriage.pipeline.feedback_reply import rating_in_reply, replies_to_feedback_request
from mailtriage.pipeline.parse import ParseError
from mailtriage.runners.analysis import AnalyserSource
from mailtriage.runners.conversation import conversation_policy
from mailtriage.runners.pool import POOL_THRESHOLD, pool_context, pool_processes
from mailtriage.sla.settings import rules_from_settings
from mailtriage.store.apply import Applied, LeaseLost, NewTicket, apply_decision
from mailtriage.store.lookups import lookup_message
from mailtriage.store.models import Ticket, utcnow
from mailtriage.store.portal import save_feedback
from mailtriage.store.sla_store import refresh_sla

log = logging.getLogger(__name__)

# Messages per pool job; each job stores its results in one transaction.
JOB_SIZE = 8
# While a starting pool loads, how often it is asked again which processes are ready.
POOL_LOAD_POLL_SECONDS = 0.05
# With one writer (SQLite), the pool processes run this much nicer than the writer.
POOL_NICE = 5


@dataclass(frozen=True)
class Processed:
    inbound_id: int
    outcome: str  # created / appended / duplicate / ignored / quarantined / deferred / lost
    ticket_id: int | None = None
    # For logs and metrics: why ignored (the loop guard's kind) or quarantined (the
    # stage), the Message-ID, and when the message was accepted (latency).
    reason: str = ""
    message_id: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class _Analysed:
    analysis: Analysis | None
    stage: str = ""
    reason: str = ""
    traceback: str | None = None
    permanent: bool = False


def store_attachments(blobs: BlobStore, analysis: Analysis) -> Analysis:
    """Attachment bytes -> blob store (idempotent; not fsynced: the raw message is the
    durable record, and ``attachment_data`` cuts a lost one out of it again); the
    analysis is returned without them."""
    stored = []
    for att in analysis.parsed.attachments:
        blobs.put(att.data, durable=False, sha256=att.sha256)
        stored.append(att.without_data())
    parsed = dataclasses.replace(analysis.parsed, attachments=tuple(stored))
    return dataclasses.replace(analysis, parsed=parsed)


def store_analysis(
    session: Session,
    inbound_id: int,
    owner: str | None,
    analysis: Analysis,
    *,
    freemail_domains: Collection[str] = (),
    outbound: OutboundPolicy | None = None,
    conversation: ConversationPolicy | None = None,
    envelope: dict[str, Any] | None = None,
) -> Applied:
    """File one analysed message in the caller's transaction: look up what the store
    knows, match the conversation (pure), write the decision, queue outbound mail.
    ``outbound``: how to acknowledge new tickets (None: no acknowledgements);
    ``conversation``: how to match (None: no secret, no agents); ``envelope``: the SMTP
    envelope (its recipients may carry our plus address)."""
    parsed = analysis.parsed
    cpolicy = conversation or DEFAULT_POLICY
    rcpts = tuple(str(r) for r in (envelope or {}).get("rcpt_tos") or ())
    facts, requester = lookup_message(session, parsed, analysis.loop, cpolicy, rcpts)
    decision = match(parsed, analysis.loop, facts, cpolicy, rcpts)
    policy = outbound or NO_ACK
    rating = feedback_rating(analysis, decision, policy)
    if rating is not None:  # a rating answers our question: it does not reopen the ticket
        decision = dataclasses.replace(decision, status_change=None)
    applied = apply_decision(
        session,
        inbound_id,
        owner,
        analysis,
        decision,
        freemail_domains=freemail_domains,
        sla=policy.sla,
        requester=requester,
    )
    if rating is not None and applied.ticket_id is not None:
        save_feedback(
            session,
            applied.ticket_id,
            parsed.sender,
            rating[0],
            rating[1],
            "mail",
            utcnow(),
            timedelta(days=policy.feedback_change_days),
        )
    if decision.action == "create" and applied.ticket_id is not None:
        ticket, article_id = applied.ticket, applied.article_id
        assert ticket is not None and article_id is not None  # set by apply on create
        if decision.acknowledge:
            # A ticket linked to one the sender may not see: the ack names only the new
            # ticket (its subject without the old tag) and threads to this mail only
            # (none of the References it named, which may be ours about the old one).
            for_ack = parsed
            if decision.link_ticket_id is not None:
                for_ack = dataclasses.replace(
                    parsed, subject=decision.subject or parsed.subject, references=()
                )
            queue_ack(session, ticket, inbound_id, for_ack, analysis.classification, policy)
        notify_agents(session, ticket, inbound_id, analysis, policy, article_id)
    elif decision.role == "agent" and applied.ticket_id is not None:
        done = apply_agent_reply(
            session, applied.ticket_id, inbound_id, parsed, decision, cpolicy.prefix
        )
        agent = decision.agent
        assert agent is not None
        if done.errors:
            command_error(session, applied.ticket_id, inbound_id, agent.address, done, policy)
        elif done.public_article_id is not None and not done.sent_directly:
            relay(session, applied.ticket_id, done.public_article_id, agent.name, policy)
        change = decision.status_change
        if not done.errors and change is not None and change[1] in ("resolved", "closed"):
            resolved = session.get(Ticket, applied.ticket_id)
            assert resolved is not None
            queue_feedback_request(session, resolved, policy)
    elif decision.note and facts.our_mail is not None:
        note_automated_answer(
            session,
            facts.our_mail.ticket_id,
            inbound_id,
            analysis.parsed,
            analysis.loop,
            facts.our_mail,
            policy,
        )
    if policy.sla is not None and decision.action in ("create", "append"):
        # the ticket's clocks follow its history; merged tickets have none any more (a
        # duplicate or an ignored automatic answer changes no clock)
        # a new ticket that adopted no early replies was written with its due times
        new = applied.ticket
        written = new.id if new is not None and not new.adopted else None
        for ticket_id in (applied.ticket_id, *decision.merge_ticket_ids):
            if ticket_id is not None and ticket_id != written:
                refresh_sla(session, ticket_id, policy.sla)
    return applied


def feedback_rating(
    analysis: Analysis, decision: Decision, policy: OutboundPolicy
) -> tuple[int, str] | None:
    """(score, comment) when a customer's reply answers our feedback request with a
    number, else None."""
    if (
        not policy.ask_feedback
        or decision.action != "append"
        or decision.role != "customer"
        or decision.ticket_id is None
    ):
        return None
    parsed = analysis.parsed
    if not replies_to_feedback_request(
        parsed, decision.ticket_id, policy.own_domains, policy.prefix
    ):
        return None
    return rating_in_reply(parsed.text, parsed.subject)


def notify_agents(
    session: Session,
    ticket: NewTicket,
    inbound_id: int,
    analysis: Analysis,
    policy: OutboundPolicy,
    article_id: int,
) -> None:
    """A new ticket: a notice to the agents of its level (``article_id``: its article)."""
    queue_agent_notices(
        session,
        ticket,
        inbound_id,
        article_id,
        analysis.classification,
        policy,
        new=not ticket.adopted,
    )


def relay(
    session: Session, ticket_id: int, article_id: int, agent_name: str, policy: OutboundPolicy
) -> None:
    """An agent's public reply goes to the customer from the support address."""
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None
    queue_relay(session, ticket, article_id, agent_name, policy)


def command_error(
    session: Session,
    ticket_id: int,
    inbound_id: int,
    agent_address: str,
    done: AgentApplied,
    policy: OutboundPolicy,
) -> None:
    """An agent's mail with a bad command: a short error mail back, nothing applied."""
    queue_command_error(session, ticket_id, inbound_id, agent_address, list(done.errors), policy)


class Processor:
    """Analyse and store claimed messages; decide retry or quarantine on failure."""

    def __init__(
        self,
        inbox: Inbox,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        settings: Settings,
        owner: str,
    ) -> None:
        self.inbox = inbox
        self.factory = factory
        self.blobs = blobs
        self.settings = settings
        self.owner = owner
        self._analysers: AnalyserSource | None = None

    @property
    def analysers(self) -> AnalyserSource:
        """Rules and models, loaded when the first message needs them (an import of
        files that are all stored already never does)."""
        if self._analysers is None:
            self._analysers = AnalyserSource(self.settings)
        return self._analysers

    def warm_up(self) -> None:
        """Load rules and language model now rather than on the first message."""
        warm_up(self.analysers.current())

    def process(self, claimed: list[Claimed]) -> list[Processed]:
        """Analyse and store ``claimed`` here."""
        return self.store_analysed(claimed, self.analyse_claimed(claimed))

    def analyse_claimed(self, claimed: list[Claimed]) -> list[_Analysed]:
        """The analysis of each claimed message (or why there is none); it writes
        attachment blobs but nothing to the database, so it may run in a pool process
        while another process stores."""
        # Outside the per-message handling: a broken rules file is not the messages'
        # fault (the caller fails; closing the worker hands the leases back).
        analyser = self.analysers.current() if claimed else None
        results: list[_Analysed] = []
        for item in claimed:
            if item.attempts > self.settings.worker.max_attempts:
                results.append(
                    _Analysed(
                        None,
                        "worker",
                        f"gave up after {item.attempts - 1} attempts "
                        "(the last ones did not finish: crash or kill?)",
                        permanent=True,
                    )
                )
            elif item.raw is None and not self.blobs.exists(item.raw_sha256):
                results.append(_Analysed(None, "read", "raw message missing from the blob store"))
            else:
                assert analyser is not None
                results.append(self._analyse(item, analyser))
        return results

    def store_analysed(self, claimed: list[Claimed], analysed: list[_Analysed]) -> list[Processed]:
        """File what ``analyse_claimed`` gave for ``claimed`` (in the same order)."""
        out = self._store(list(zip(claimed, analysed, strict=True)))
        return [out[item.id] for item in claimed]

    def _analyse(self, item: Claimed, analyser: Analyser) -> _Analysed:
        sender = (item.envelope or {}).get("mail_from")
        try:
            raw = item.raw if item.raw is not None else self.blobs.get(item.raw_sha256)
        except OSError as exc:  # disk trouble: worth another attempt
            return _Analysed(None, "read", f"raw message unreadable: {exc}", traceback.format_exc())
        try:
            analysis = analyse(raw, analyser, sender)
        except ParseError as exc:
            return _Analysed(None, "parse", str(exc), traceback.format_exc(), permanent=True)
        except RecursionError as exc:
            return _Analysed(
                None,
                "parse",
                f"message nested too deeply: {exc}",
                traceback.format_exc(),
                permanent=True,
            )
        except MemoryError as exc:  # may pass when the machine is less busy
            return _Analysed(None, "analyse", f"out of memory: {exc}", traceback.format_exc())
        except Exception as exc:
            # Pure and deterministic: the same bytes fail the same way next time.
            return _Analysed(
                None,
                "analyse",
                f"{type(exc).__name__}: {exc}",
                traceback.format_exc(),
                permanent=True,
            )
        finally:
            del raw
        try:
            return _Analysed(store_attachments(self.blobs, analysis))
        except OSError as exc:
            return _Analysed(None, "store", f"blob store: {exc}", traceback.format_exc())

    def _store(self, group: list[tuple[Claimed, _Analysed]]) -> dict[int, Processed]:
        """One transaction for the group. Usually every message stores, so they are
        first stored together without a savepoint per message (two statements each);
        when one of them fails, that transaction is rolled back and the group stored
        again with a savepoint per message, so the failure stays with its message and
        the others are filed."""
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
        conversation = (
            conversation_policy(self.settings, self.analysers.current().rules) if ready else None
        )
        try:
            together = self._store_together(ready, conversation) if ready else {}
            if together is not None:
                out.update(together)
            else:
                out.update(self._store_each(ready, conversation, concurrent, failed))
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
        return out

    def _store_together(
        self, ready: list[tuple[Claimed, Analysis]], conversation: ConversationPolicy | None
    ) -> dict[int, Processed] | None:
        """Store ``ready`` in one transaction without savepoints; None when a message
        failed (nothing of the group is stored then). Database errors other than an
        IntegrityError (the database, not a message: see _store) pass."""
        out: dict[int, Processed] = {}
        failure: Exception
        try:
            with self.factory() as session, session.begin():
                for item, analysis in ready:
                    # (each message's lookups flush the ones before: lookup_message)
                    out[item.id] = self._store_one(session, item, analysis, conversation)
        except IntegrityError as exc:
            failure = exc
        except (OperationalError, DBAPIError):
            raise
        except Exception as exc:  # LeaseLost, a failing message: see _store_each
            failure = exc
        else:
            return out
        log.debug(
            "storing %d messages together failed (%s): one by one now",
            len(ready),
            type(failure).__name__,
        )
        return None

    def _store_each(
        self,
        ready: list[tuple[Claimed, Analysis]],
        conversation: ConversationPolicy | None,
        concurrent: list[tuple[Claimed, str]],
        failed: list[tuple[Claimed, str, str, str | None, bool]],
    ) -> dict[int, Processed]:
        """Store ``ready`` in one transaction, a savepoint per message: what fails is
        added to ``concurrent`` (retry soon) or ``failed``, the others are stored."""
        out: dict[int, Processed] = {}
        with self.factory() as session, session.begin():
            for item, analysis in ready:
                try:
                    with session.begin_nested():
                        out[item.id] = self._store_one(session, item, analysis, conversation)
                except LeaseLost:
                    log.warning("inbound %s: lease lost; another worker owns it now", item.id)
                    out[item.id] = Processed(item.id, "lost", received_at=item.received_at)
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
        return out

    def _store_one(
        self,
        session: Session,
        item: Claimed,
        analysis: Analysis,
        conversation: ConversationPolicy | None,
    ) -> Processed:
        applied = store_analysis(
            session,
            item.id,
            self.owner,
            analysis,
            freemail_domains=self.settings.mail.freemail_domains,
            outbound=cached_policy(self.settings),
            conversation=conversation,
            envelope=item.envelope,
        )
        return Processed(
            item.id,
            applied.outcome,
            applied.ticket_id,
            reason=(analysis.loop.kind or "other") if applied.outcome == "ignored" else "",
            message_id=analysis.parsed.message_id,
            received_at=item.received_at,
        )

    def _fail(
        self, item: Claimed, stage: str, reason: str, tb: str | None, *, permanent: bool
    ) -> Processed:
        if permanent or item.attempts >= self.settings.worker.max_attempts:
            return self._quarantine(item, stage, reason, tb)
        return self._defer(item, stage, reason, tb, self._backoff(item.attempts))

    def _quarantine(self, item: Claimed, stage: str, reason: str, tb: str | None) -> Processed:
        log.warning(
            "inbound %s quarantined at %s: %s",
            item.id,
            stage,
            reason,
            extra=fields(inbound_id=item.id, outcome="quarantined", reason=stage),
        )
        self.inbox.quarantine(item.id, self.owner, stage=stage, reason=reason, traceback=tb)
        return Processed(item.id, "quarantined", reason=stage, received_at=item.received_at)

    def _defer(
        self, item: Claimed, stage: str, reason: str, tb: str | None, delay: float
    ) -> Processed:
        log.info(
            "inbound %s deferred %.1fs at %s: %s",
            item.id,
            delay,
            stage,
            reason,
            extra=fields(inbound_id=item.id, outcome="deferred", reason=stage),
        )
        with contextlib.suppress(OperationalError, DBAPIError):  # the lease expires instead
            self.inbox.defer(
                item.id, self.owner, stage=stage, reason=reason, traceback=tb, delay_seconds=delay
            )
        return Processed(item.id, "deferred", reason=stage, received_at=item.received_at)

    def _backoff(self, attempts: int) -> float:
        w = self.settings.worker
        return backoff_delay(attempts, w.retry_base_seconds, w.retry_max_seconds)


# -- pool processes -------------------------------------------------------------------

_pool_processor: Processor | None = None

# Builds a Processor with its own engine and sessions (given by the composition root,
# so this module does not import it); module-level, so it can be sent to the pool.
ProcessorFactory = Callable[[Settings, str], Processor]


def _pool_init(
    make_processor: ProcessorFactory, settings: Settings, owner: str, nice: int = 0
) -> None:
    """Each pool process: its own engine and sessions, rules and language model loaded.
    ``nice``: how much lower than the worker's this process's CPU priority is."""
    global _pool_processor
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    # Gone with the worker that asked for us, however it died: the fork server (our
    # parent) lives on as long as any pool process does, so only this ends the pool
    # of a killed worker.
    die_with(multiprocessing.parent_process())
    _pool_processor = make_processor(settings, owner)
    _pool_processor.warm_up()


def _pool_process(claimed: list[Claimed]) -> list[Processed]:
    assert _pool_processor is not None, "pool process not initialised"
    return _pool_processor.process(claimed)


def _pool_analyse(claimed: list[Claimed]) -> list[_Analysed]:
    assert _pool_processor is not None, "pool process not initialised"
    return _pool_processor.analyse_claimed(claimed)


def _pool_pid() -> int:
    """Answered by a pool process once it has loaded."""
    assert _pool_processor is not None, "pool process not initialised"
    return os.getpid()


class Worker:
    def __init__(
        self,
        inbox: Inbox,
        factory: sessionmaker[Session],
        blobs: BlobStore,
        settings: Settings,
        *,
        owner: str | None = None,
        pool_processor: ProcessorFactory | None = None,
        single_writer: bool = False,
    ) -> None:
        """``pool_processor``: builds the Processor of each pool process; without it,
        everything is processed in this process. ``single_writer`` (SQLite: one writer
        at a time): the pool processes only analyse and this process stores what they
        return, while they analyse the next messages; otherwise each pool process
        stores its own messages too."""
        self.inbox = inbox
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.processor = Processor(inbox, factory, blobs, settings, self.owner)
        self._pool_processor = pool_processor
        self._single_writer = single_writer
        # One writer: chunks claimed and sent to the pool, not stored yet, oldest first.
        self._in_flight: deque[tuple[list[Claimed], Future[list[_Analysed]]]] = deque()
        self._pool: Executor | None = None
        self._starter: threading.Thread | None = None  # starting the pool processes
        # The public-holiday tables take about half a second on first use: load them
        # now, not inside the first ticket's transaction (its acknowledgement's clock
        # is running then).
        rules_from_settings(settings.sla).calendar.warm_up()

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        if self._starter is not None:  # (its submits would fail after the shutdown)
            self._starter.join()
            self._starter = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        # chunks analysed but not stored: their leases are handed back below
        self._in_flight.clear()
        self.inbox.release(self.owner)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _processes(self) -> int:
        return pool_processes(self.settings.worker.processes)

    def _executor(self) -> Executor | None:
        if self._processes() <= 1 or self._pool_processor is None:
            return None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self._processes(),
                mp_context=pool_context(),
                initializer=_pool_init,
                # One writer: it is the bottleneck, so it goes before the analysis
                # that only feeds it.
                initargs=(
                    self._pool_processor,
                    self.settings,
                    self.owner,
                    POOL_NICE if self._single_writer else 0,
                ),
            )
        return self._pool

    def start_pool(self, *, wait_seconds: float = 0.0) -> None:
        """Start the pool processes now (they take a moment to load), not on the
        first batch. ``wait_seconds``: wait up to that long until every pool process
        has loaded (the daemon: ready means ready to work at full speed); without
        it, this returns at once and a thread starts them (each start waits for the
        fork server's imports), so an import reads its first files meanwhile."""
        if self._pool is not None:
            return
        executor = self._executor()
        if executor is None:
            return
        if wait_seconds <= 0:
            self._starter = threading.Thread(
                target=self._start_processes, args=(executor,), name="pool-start", daemon=True
            )
            self._starter.start()
            return
        self._start_processes(executor)
        deadline = time.monotonic() + wait_seconds
        loaded: set[int] = set()
        while len(loaded) < self._processes() and time.monotonic() < deadline:
            # a process takes tasks only after loading; the pids tell them apart
            job = executor.submit(_pool_pid)
            try:
                pid = job.result(max(deadline - time.monotonic(), 0.0))
            except FuturesTimeout:
                return  # still loading: the first batches wait for it instead
            if pid in loaded:  # a loaded one answered again: let the others load
                time.sleep(POOL_LOAD_POLL_SECONDS)
            loaded.add(pid)

    def _start_processes(self, executor: Executor) -> None:
        try:
            for _ in range(self._processes()):
                executor.submit(_pool_pid)  # a process per task until there are enough
        except Exception as exc:  # the first batch meets it again, in the worker's thread
            log.warning("worker: starting the pool processes failed: %s", exc)

    # -- work -----------------------------------------------------------------------

    def run_once(self, limit: int | None = None) -> list[Processed]:
        """Claim a batch and process it; [] when nothing is due (and, with one writer,
        nothing is in flight: see _run_pipelined)."""
        limit = limit or self.settings.worker.batch_size
        if self._single_writer and (self._in_flight or self._pool is not None):
            return self._run_pipelined(limit)
        claimed = self.inbox.claim(self.owner, limit, self.settings.worker.lease_seconds)
        executor = self._executor() if len(claimed) >= POOL_THRESHOLD else None
        if executor is None:
            return self.processor.process(claimed)
        if self._single_writer:
            self._submit(executor, claimed)
            return self._store_ready()
        jobs = [
            executor.submit(_pool_process, claimed[i : i + JOB_SIZE])
            for i in range(0, len(claimed), JOB_SIZE)
        ]
        return [processed for job in jobs for processed in job.result()]

    def _run_pipelined(self, limit: int) -> list[Processed]:
        """One writer: keep up to ``limit`` claimed messages in the pool while this
        process stores, so the pool never waits for the writer to finish a round.
        Stores at least the oldest chunk, in claim order (a reply claimed after its
        first message is filed after it)."""
        waiting = sum(len(chunk) for chunk, _ in self._in_flight)
        # top up in large steps: every claim is a write transaction of its own
        if waiting <= limit // 2:
            claimed = self.inbox.claim(
                self.owner, limit - waiting, self.settings.worker.lease_seconds
            )
            if claimed:
                executor = self._executor()
                assert executor is not None  # the pool exists on this path
                self._submit(executor, claimed)
        return self._store_ready()

    def _submit(self, executor: Executor, claimed: list[Claimed]) -> None:
        for i in range(0, len(claimed), JOB_SIZE):
            chunk = claimed[i : i + JOB_SIZE]
            self._in_flight.append((chunk, executor.submit(_pool_analyse, chunk)))

    def _store_ready(self) -> list[Processed]:
        """Store the oldest chunk in flight (waiting for its analysis), then every
        further one whose analysis is back already."""
        out: list[Processed] = []
        while self._in_flight and (not out or self._in_flight[0][1].done()):
            chunk, analysis = self._in_flight.popleft()
            out.extend(self.processor.store_analysed(chunk, analysis.result()))
        return out

    def drain(self, on_processed: Callable[[Processed], None] | None = None) -> Counter[str]:
        """Process until nothing is due; returns counts per outcome."""
        counts: Counter[str] = Counter()
        while batch := self.run_once():
            for item in batch:
                counts[item.outcome] += 1
                if on_processed:
                    on_processed(item)
        return counts

    def run_forever(
        self,
        stop: threading.Event,
        on_batch: Callable[[list[Processed]], None] | None = None,
        between_rounds: Callable[[], None] | None = None,
    ) -> None:
        """The daemon loop: poll, process, sleep when idle, until ``stop`` is set.
        ``on_batch`` sees every round's results (also an empty round: a heartbeat);
        ``between_rounds`` runs after a round that did work (it may pause the loop)."""
        while not stop.is_set():
            try:
                batch = self.run_once()
            except (OperationalError, DBAPIError) as exc:
                log.warning("worker: database unavailable, retrying: %s", exc)
                stop.wait(min(30.0, self.settings.worker.retry_base_seconds))
                continue
            if on_batch is not None:
                on_batch(batch)
            if not batch:
                stop.wait(self.settings.worker.poll_interval_seconds)
            elif between_rounds is not None:
                between_rounds()
