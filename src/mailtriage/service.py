"""`mailtriage run`: start the enabled roles, stop cleanly on SIGTERM/SIGINT.

Roles: the SMTP/LMTP listener (its own asyncio loop in a thread) and one thread per
IMAP account in this process; the worker in a child process. Intake only does the
durable accept; every accept wakes the worker (a byte down a pipe) so a message
becomes a ticket without waiting for a poll interval.

Why a process for the worker: parsing, classifying and storing tickets is CPU work in
Python; in the listener's process it would hold the GIL while senders wait for their
250. In its own process (at a lower CPU priority, ``service.worker_nice``) it cannot
slow intake down, and if it dies (a parser bug, a segfault, the OOM killer) intake goes
on and the worker is restarted; what it held is claimed again when its lease expires.

Stopping (signal, or ``stop`` set by the caller): every role is told at once; the
listener refuses new connections and answers the messages it is receiving, pollers
finish the batch they hold, the worker finishes its batch and releases its leases.
Whatever is still busy when ``service.shutdown_grace_seconds`` is over is abandoned:
nothing was acknowledged for it, so nothing is lost (a sender retries, an IMAP
message is still in its folder, a leased row's lease expires).

Killed instead (kill -9, SIGBUS), the daemon leaves no process behind: the worker,
its fork server and pool processes end with it (ops/lifeline.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import FrameType
from typing import TYPE_CHECKING, Any

from mailtriage.app import App
from mailtriage.config import ConfigError, Settings
from mailtriage.inbox import Accepted
from mailtriage.intake.imap import ImapPoller, check_account
from mailtriage.intake.smtp import SmtpListener
from mailtriage.ops import metrics, multiproc
from mailtriage.ops.lifeline import die_with_parent
from mailtriage.ops.logs import fields
from mailtriage.outbound.scheduler import OutboundScheduler, start_outbound
from mailtriage.runners.conversation import warn_about_trust
from mailtriage.runners.sla_jobs import SlaJobs, start_sla_jobs
from mailtriage.store.queries import ticket_reference
from mailtriage.worker import Processed

if TYPE_CHECKING:
    from mailtriage.ops.http import HttpServer

log = logging.getLogger(__name__)

# How often the main thread looks whether a role died.
WATCH_SECONDS = 1.0
# How long a starting worker waits for its parser processes to load before it takes
# mail (then "ready"; it goes on anyway after this long).
POOL_LOAD_SECONDS = 60.0


class WorkerProcess:
    """The worker role in a child process (see the module docstring for why)."""

    # A worker that dies within this many seconds of its start is restarted only
    # after a growing pause (a crash loop must not spin).
    QUICK_DEATH_SECONDS = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self.process: multiprocessing.process.BaseProcess | None = None
        self.owner = ""
        self.restarts = 0
        self._wake_w: Connection | None = None
        self._wake_lock = threading.Lock()  # wake() runs on intake threads, restarts here
        self._started = 0.0
        self._next_start = 0.0
        # time.time() of the worker's last round, written by the worker (/readyz).
        self.heartbeat = self._ctx.Value("d", 0.0, lock=False)

    def start(self) -> None:
        # The lease owner names host, this daemon's pid and the child: ops can see
        # whose leases these are; a restarted child gets a new name.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:w{uuid.uuid4().hex[:6]}"
        reader, writer = self._ctx.Pipe(duplex=False)
        self.heartbeat.value = 0.0
        self.process = self._ctx.Process(
            target=worker_main,
            args=(
                self.settings,
                self.owner,
                reader,
                logging.getLogger().getEffectiveLevel(),
                self.heartbeat,
            ),
            name="mailtriage-worker",
        )
        self.process.start()
        reader.close()
        os.set_blocking(writer.fileno(), False)
        with self._wake_lock:
            self._wake_w = writer
        self._started = time.monotonic()
        log.info("worker %s started (pid %s)", self.owner, self.process.pid)

    def wake(self) -> None:
        """Never blocks: a full pipe means the worker has a wake-up pending anyway."""
        with self._wake_lock, contextlib.suppress(OSError, ValueError):
            if self._wake_w is not None:  # full, or the worker is gone: nothing to do
                os.write(self._wake_w.fileno(), b"w")

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def health(self) -> tuple[bool, str]:
        """(ok, detail) for /readyz: alive and going round its loop."""
        if not self.alive():
            code = self.process.exitcode if self.process is not None else None
            return False, f"not running (exit code {code}); restart {self.restarts + 1} pending"
        beat = self.heartbeat.value
        if not beat:
            return False, f"starting (restart {self.restarts})" if self.restarts else "starting"
        limit = max(60.0, self.settings.worker.lease_seconds)
        since = time.time() - beat
        detail = f"last round {since:.0f}s ago (limit {limit:.0f}s)"
        if self.restarts:
            detail += f"; restarted {self.restarts} time(s)"
        return since <= limit, detail

    @property
    def state(self) -> str:
        """The worker's state: "running", or "restarting" from its death until the
        new one runs."""
        process = self.process
        if process is None or not process.is_alive() or self._next_start:
            return "restarting"
        return "running"

    def watch(self) -> None:
        """Restart the worker if it died (called by the main thread, not while stopping:
        on Linux a child is told of its parent's death when the *thread* that started it
        ends)."""
        process = self.process
        if process is None or process.is_alive():
            return
        now = time.monotonic()
        if not self._next_start:
            quick = now - self._started < self.QUICK_DEATH_SECONDS
            pause = min(60.0, 2.0 ** min(self.restarts, 6)) if quick else 0.0
            log.error(
                "worker %s died (exit code %s); restarting%s; messages it held are "
                "claimed again when their lease expires",
                self.owner,
                process.exitcode,
                f" in {pause:.0f}s" if pause else "",
            )
            self._close_pipe()
            self._next_start = now + pause
        if now >= self._next_start:
            self._next_start = 0.0
            self.restarts += 1
            self.start()

    def request_stop(self) -> None:
        """SIGTERM: the worker finishes its batch, releases its leases and exits."""
        if self.process is not None and self.process.is_alive():
            self.process.terminate()

    def stop(self, deadline: float) -> bool:
        """Stop; wait until ``deadline`` (monotonic), then SIGKILL."""
        process = self.process
        if process is None:
            return True
        clean = True
        if process.is_alive():
            process.terminate()
            process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            clean = False
            log.warning(
                "worker %s still busy after the grace period: killed; its leases expire "
                "after worker.lease_seconds",
                self.owner,
            )
            process.kill()
            process.join(5)
        self._close_pipe()
        return clean

    def _close_pipe(self) -> None:
        with self._wake_lock:
            if self._wake_w is not None:
                self._wake_w.close()
                self._wake_w = None


# While mail floods in, the worker looks this often whether the flood has eased.
FLOOD_CHECK_SECONDS = 0.25


class _ChildStop(threading.Event):
    """``stop`` for ``Worker.run_forever`` in the worker process.

    Set by SIGTERM (from the daemon) or when the daemon is gone (killed: an orphaned
    worker must not run on). Its idle waits end early when intake wakes the worker.
    """

    def __init__(self, wake: Connection) -> None:
        super().__init__()
        self._stopping = False
        self._wake = wake
        os.set_blocking(wake.fileno(), False)  # read only after select, or to count
        self._arrived = 0  # wake-ups (one per accepted message) since _counted_at
        self._counted_at = time.monotonic()
        self._rate = 0.0
        self._flooding = False
        parent = multiprocessing.parent_process()
        self._parent = parent
        self._signal_r, signal_w = os.pipe()
        os.set_blocking(signal_w, False)
        signal.set_wakeup_fd(signal_w)  # a signal ends a select() at once

    def on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def is_set(self) -> bool:
        return self._stopping or (self._parent is not None and not self._parent.is_alive())

    def set(self) -> None:
        self._stopping = True

    def wait(self, timeout: float | None = None) -> bool:
        if self.is_set():
            return True
        fds: list[int] = [self._wake.fileno(), self._signal_r]
        if self._parent is not None:
            fds.append(self._parent.sentinel)
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError):
            return self.is_set()
        if self._wake.fileno() in ready:
            self._drain_wake()  # one pass serves every wake-up so far
        if self._signal_r in ready:
            with contextlib.suppress(OSError):
                os.read(self._signal_r, 4096)
        return self.is_set()

    def _drain_wake(self) -> None:
        """Read every pending wake-up, counting them (one byte per accepted message)."""
        while True:
            try:
                data = os.read(self._wake.fileno(), 65536)
            except OSError:  # (BlockingIOError: nothing more)
                return
            if not data:  # the daemon closed its end: it is stopping or gone
                self._stopping = True
                return
            self._arrived += len(data)

    def arrival_rate(self) -> float:
        """Messages accepted a second lately (intake's wake-ups: one byte each)."""
        self._drain_wake()
        now = time.monotonic()
        if now - self._counted_at >= 0.1:  # shorter spans say little
            self._rate = self._arrived / (now - self._counted_at)
            self._arrived, self._counted_at = 0, now
        return self._rate

    def yield_to_intake(self, per_second: float, longest: float) -> None:
        """Between the worker's rounds: while mail floods in (``per_second`` or more),
        wait, at most ``longest`` seconds in a row (a stop ends the wait at once)."""
        if per_second <= 0 or longest <= 0:
            return
        fds: list[int] = [self._signal_r]
        if self._parent is not None:
            fds.append(self._parent.sentinel)
        deadline = time.monotonic() + longest
        while (rate := self.arrival_rate()) >= per_second and not self.is_set():
            if not self._flooding:
                self._flooding = True
                log.info(
                    "worker: %.0f messages a second arriving: filing waits while the flood "
                    "lasts (at most %g s at a time)",
                    rate,
                    longest,
                )
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                select.select(fds, [], [], min(FLOOD_CHECK_SECONDS, left))
            except (OSError, ValueError):
                return
        self.flood_over(per_second)

    def flood_over(self, per_second: float) -> None:
        """Say once that a flood has eased: after the wait above, or after any round
        (also an empty one) once the wait ended at its cap and the rate fell later."""
        if self._flooding and self.arrival_rate() < per_second:
            self._flooding = False
            log.info("worker: the flood has eased, filing the backlog")


def worker_main(
    settings: Settings, owner: str, wake: Connection, log_level: int, heartbeat: Any = None
) -> None:
    """Body of the worker process: run the worker until SIGTERM or the daemon is gone.
    ``heartbeat``: a shared double the worker sets to time.time() every round."""
    from mailtriage.ops.logs import setup_logging, wants_json

    # Ctrl-C reaches the whole process group; the daemon decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = _ChildStop(wake)
    signal.signal(signal.SIGTERM, stop.on_signal)
    # The daemon killed (kill -9, SIGBUS): SIGTERM, so the batch at hand is finished
    # and the leases are handed back, but gone within the grace period in any case.
    parent = multiprocessing.parent_process()
    die_with_parent(
        signal.SIGTERM,
        parent=parent.pid if parent is not None else None,
        grace=settings.service.shutdown_grace_seconds,
    )
    setup_logging(logging.getLevelName(log_level), wants_json(settings.logging))
    _lower_priority(settings.service.worker_nice)
    with App.from_settings(settings, accepts=False) as app:
        worker = app.worker(owner)
        try:
            # Load rules, language model and parser processes now: the first messages
            # should not wait seconds for them.
            worker.processor.warm_up()
            worker.start_pool(wait_seconds=POOL_LOAD_SECONDS)
            log.info("worker %s ready", owner)
            worker.run_forever(
                stop,
                functools.partial(_after_round, settings, heartbeat, stop),
                between_rounds=functools.partial(
                    stop.yield_to_intake,
                    settings.worker.flood_per_second,
                    settings.worker.flood_pause_seconds,
                ),
            )
        finally:
            worker.close()  # releases whatever it still leases
    log.info("worker %s stopped", owner)


def _after_round(
    settings: Settings, heartbeat: Any, stop: _ChildStop, batch: list[Processed]
) -> None:
    """In the worker process after each round: heartbeat, the end of a flood, metrics,
    one line per message."""
    if heartbeat is not None:
        heartbeat.value = time.time()
    stop.flood_over(settings.worker.flood_per_second)
    if not batch:
        return
    metrics.count_processed(batch)
    prefix = settings.mail.ticket_prefix
    for item in batch:
        if item.outcome in ("deferred", "quarantined", "lost"):
            continue  # the Processor logged these with their reason
        ticket = ticket_reference(prefix, item.ticket_id) if item.ticket_id else None
        log.info(
            "inbound %d %s%s",
            item.inbound_id,
            item.outcome,
            f" ({item.reason})" if item.reason else f" {ticket}" if ticket else "",
            extra=fields(
                inbound_id=item.inbound_id,
                ticket=ticket,
                message_id=item.message_id,
                outcome=item.outcome,
                reason=item.reason,
            ),
        )


@dataclass
class _Role:
    name: str
    thread: threading.Thread
    failed: list[BaseException] = field(default_factory=list)


class Service:
    """The roles of one `mailtriage run`, started and stopped together."""

    def __init__(self, app: App, *, use_move: bool | None = None) -> None:
        self.app = app
        self.settings = app.settings
        self.use_move = use_move
        self.smtp: SmtpListener | None = None
        self.pollers: list[ImapPoller] = []
        self.worker: WorkerProcess | None = None
        self._intake_stop = threading.Event()
        self._roles: list[_Role] = []
        self.outbound: OutboundScheduler | None = None  # outbound mail (issue 6)
        self.http: HttpServer | None = None  # /healthz, /readyz, /metrics (issue 13)
        self.sla_jobs: SlaJobs | None = None  # SLA clocks (issue 12)
        self._check()

    def _check(self) -> None:
        s = self.settings
        if s.imap.enabled:
            if not s.imap.accounts:
                raise ConfigError(
                    "imap.accounts: imap.enabled is true but no [[imap.accounts]] is configured"
                )
            for index, account in enumerate(s.imap.accounts):
                check_account(account, index)
        if not (s.smtp.enabled or s.imap.enabled or s.worker.enabled):
            log.warning("smtp, imap and worker are all disabled: nothing to run")

    def on_accepted(self, accepted: Accepted, source: str = "") -> None:
        if source:
            metrics.count_received(source)
        if accepted.created and self.worker is not None:
            self.worker.wake()

    def start(self) -> None:
        s = self.settings
        if s.worker.enabled:  # first: it takes a moment to import and connect
            self.worker = WorkerProcess(s)
            self.worker.start()
        if s.smtp.enabled:
            self.smtp = SmtpListener(
                self.app.inbox, s, on_accepted=functools.partial(self.on_accepted, source="smtp")
            )
            try:
                self.smtp.start()
            except OSError as exc:
                raise ConfigError(
                    f"smtp.port: cannot listen on {s.smtp.host}:{s.smtp.port}: "
                    f"{exc.strerror or exc}"
                ) from None
        if s.imap.enabled:
            for index in range(len(s.imap.accounts)):
                poller = ImapPoller(
                    self.app.inbox,
                    self.app.factory,
                    s,
                    index,
                    on_accepted=functools.partial(self.on_accepted, source="imap"),
                    use_move=self.use_move,
                )
                self.pollers.append(poller)
                self._spawn(
                    f"imap-{index}", functools.partial(poller.run_forever, self._intake_stop)
                )
        # Outbound mail (issue 6): the outbox sender, a job of the APScheduler scheduler.
        self.outbound = start_outbound(self.app.factory, s)
        # SLA clocks (issue 12): warnings, breaches, escalation, reminders, auto-close.
        self.sla_jobs = start_sla_jobs(self.app.factory, s)
        if s.http.enabled:  # last: /readyz reads the roles started above
            # Imported here: the worker process (which imports this module) and a
            # daemon without the HTTP role need no web server.
            from mailtriage.ops.http import HttpServer, make_app

            self.http = HttpServer(s.http, make_app(self, self.app.factory))
            self.http.start()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        failed: list[BaseException] = []

        def body() -> None:
            try:
                target()
            except BaseException as exc:
                failed.append(exc)
                log.exception("%s stopped with an error", name)

        role = _Role(name, threading.Thread(target=body, name=name, daemon=True), failed)
        self._roles.append(role)
        role.thread.start()

    def restart_dead(self) -> None:
        """Restart a worker that died (main thread only, see ``WorkerProcess.watch``)."""
        if self.worker is not None and not self._intake_stop.is_set():
            self.worker.watch()

    def role_states(self) -> dict[str, str]:
        """Each enabled role's state (what /readyz reports, ``ops.health.role_report``):
        "running"; "failed" (ended although nobody asked: the daemon stops); the worker
        "restarting" (it died and is restarted; what it held is claimed again when its
        lease expires); an IMAP poller "standby" (another instance polls its folder),
        "backing off" or "connecting"."""
        from mailtriage.ops.health import role_report

        return {r.role: r.state for r in role_report(self) if r.role}

    def imap_roles(self) -> list[str]:
        """The names of the IMAP pollers' threads, in the order of ``pollers``."""
        return [r.name for r in self._roles if r.name.startswith("imap-")]

    def failed_roles(self) -> list[str]:
        """Roles that ended although nobody asked them to (a dead worker is restarted,
        see ``restart_dead``; ``role_states`` says "restarting" meanwhile)."""
        dead = [
            r.name
            for r in self._roles
            if not r.thread.is_alive() and not self._intake_stop.is_set()
        ]
        if self.smtp is not None and not self.smtp.running and not self._intake_stop.is_set():
            dead.append("smtp")
        if self.http is not None and not self.http.running and not self._intake_stop.is_set():
            dead.append("http")
        return dead

    def stop(self, grace: float) -> bool:
        """Stop every role; True if all of them finished within ``grace`` seconds."""
        deadline = time.monotonic() + grace
        self._intake_stop.set()
        if self.http is not None:
            self.http.stop()
        if self.worker is not None:
            self.worker.request_stop()
        if self.sla_jobs is not None:  # SLA clocks (issue 12): finish the running round
            self.sla_jobs.stop()
        if self.outbound is not None:  # outbound mail (issue 6): finish the mail being sent
            self.outbound.stop()
        clean = True
        if self.smtp is not None:
            clean = self.smtp.stop(grace)
        if self.worker is not None:
            clean = self.worker.stop(deadline) and clean
        for role in self._roles:
            role.thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [r.name for r in self._roles if r.thread.is_alive()]
        if stuck:
            clean = False
            log.warning(
                "still busy after the %.0fs grace period: %s; leaving them "
                "(nothing they hold was acknowledged)",
                grace,
                ", ".join(stuck),
            )
        return clean


def run_service(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    on_ready: Callable[[Service], None] | None = None,
    use_move: bool | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); 0 after a clean or timed-out stop,
    1 when a role died on its own."""
    multiproc.prepare()  # before the worker process starts: it counts there too
    own_process = stop is None
    stop = stop or threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.info("received %s again; still stopping", signal.Signals(signum).name)
            return
        log.info(
            "received %s, stopping (grace %.0fs)",
            signal.Signals(signum).name,
            settings.service.shutdown_grace_seconds,
        )
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    failed: list[str] = []
    with App.from_settings(settings) as app:
        app.prepare_database()
        log.info(
            "database ready (%s); storage in %s",
            app.engine.url.render_as_string(hide_password=True),
            settings.storage_dir,
        )
        warn_about_trust(settings)
        service = Service(app, use_move=use_move)
        try:
            service.start()
            log.info("mailtriage running (pid %d): %s", os.getpid(), _summary(service))
            if on_ready is not None:
                on_ready(service)
            while not stop.wait(WATCH_SECONDS):
                service.restart_dead()
                failed = service.failed_roles()
                if failed:
                    log.error("role(s) ended unexpectedly: %s; stopping", ", ".join(failed))
                    break
        finally:
            clean = service.stop(settings.service.shutdown_grace_seconds)
        if not clean and own_process:
            # A role thread is stuck (a long parse, a hung socket): do not let the
            # interpreter wait for it at exit.
            log.info("stopped (grace period expired)")
            logging.shutdown()
            sys.stdout.flush()
            os._exit(1 if failed else 0)
    log.info("stopped")
    return 1 if failed else 0


def _lower_priority(nice: int) -> None:
    """Lower this process's CPU priority; its parser pool inherits it."""
    if nice <= 0:
        return
    try:
        os.nice(min(19, nice))
    except (AttributeError, OSError) as exc:  # not allowed here
        log.info("could not lower the worker's priority: %s", exc)


def _summary(service: Service) -> str:
    parts = []
    if service.smtp is not None:
        kind = "lmtp" if service.settings.smtp.lmtp else "smtp"
        parts.append(f"{kind} on {service.smtp.address[0]}:{service.smtp.address[1]}")
    for poller in service.pollers:
        parts.append(f"imap {poller.key} {poller.account.folder}")
    if service.worker is not None:
        parts.append("worker")
    if service.http is not None:
        parts.append(f"http on {service.http.address[0]}:{service.http.address[1]}")
    return ", ".join(parts) or "no roles"
