"""/readyz: is this daemon doing its job? One check per concern, each with a detail.

Ready only if every check passes: the database answers; every enabled role is alive
(the SMTP listener listens, each IMAP account is connected, the worker process runs
and goes round its loop, the outbox scheduler runs its rounds); the oldest message
not processed yet is younger than ``http.max_inbox_age_seconds``; the quarantine did
not grow since the previous /readyz. An IMAP account that cannot log in is backing
off: not ready, with its last error in the detail.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.ops.metrics import inbox_state
from mailtriage.store.models import utcnow

if TYPE_CHECKING:
    from mailtriage.service import Service


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Readiness:
    def __init__(self, service: Service, factory: sessionmaker[Session]) -> None:
        self.service = service
        self.factory = factory
        self.settings = service.settings
        self._lock = threading.Lock()
        self._quarantined: int | None = None  # at the previous check

    def checks(self) -> list[Check]:
        out = self._database()
        out += self._roles()
        return out

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body): ``{"ready": .., "checks": {name: {ok, detail}}}``."""
        checks = self.checks()
        ready = all(c.ok for c in checks)
        return ready, {
            "ready": ready,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
        }

    # -- the database and what it holds --------------------------------------------

    def _database(self) -> list[Check]:
        limit = self.settings.http.max_inbox_age_seconds
        try:
            with self.factory() as session:
                state = inbox_state(session)
        except SQLAlchemyError as exc:
            why = f"unreachable: {type(exc).__name__}: {_first_line(exc)}"
            unknown = "unknown: the database is unreachable"
            return [
                Check("database", False, why),
                Check("inbox_age", False, unknown),
                Check("quarantine", False, unknown),
            ]
        oldest, quarantined = state.oldest, state.quarantined
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        inbox = Check(
            "inbox_age",
            age <= limit,
            f"oldest unprocessed message is {age:.0f}s old (limit {limit:g}s)"
            if oldest is not None
            else "no message waiting",
        )
        with self._lock:
            before, self._quarantined = self._quarantined, quarantined
        if before is not None and quarantined > before:
            quarantine = Check(
                "quarantine",
                False,
                f"grew from {before} to {quarantined} since the last check "
                "(mailtriage quarantine list)",
            )
        else:
            quarantine = Check("quarantine", True, f"{quarantined} message(s), not growing")
        return [Check("database", True, "reachable"), inbox, quarantine]

    # -- the roles of this daemon ---------------------------------------------------

    def _roles(self) -> list[Check]:
        return [Check(r.check, r.ok, r.detail) for r in role_report(self.service)]


@dataclass(frozen=True)
class RoleState:
    """One role of this daemon as /readyz and ``Service.role_states`` see it: ``check``
    its /readyz name, ``role`` its name in role_states ("" : not listed there),
    ``state`` ("running", "failed", "restarting", "standby", "backing off",
    "connecting"), ``ok`` and ``detail`` the /readyz verdict."""

    check: str
    role: str
    state: str
    ok: bool
    detail: str


def role_report(service: Service) -> list[RoleState]:
    """The state of every enabled role (the one source of /readyz's role checks and of
    ``Service.role_states``)."""
    settings = service.settings
    failed = set(service.failed_roles())
    out: list[RoleState] = []
    if settings.smtp.enabled:
        smtp = service.smtp
        if smtp is not None and smtp.running:
            host, port = smtp.address
            out.append(RoleState("smtp", "smtp", "running", True, f"listening on {host}:{port}"))
        else:
            out.append(RoleState("smtp", "smtp", "failed", False, "not listening"))
    now = time.time()
    for role, poller in zip(service.imap_roles(), service.pollers, strict=True):
        name = f"imap:{poller.key}"
        state = poller.state
        if role in failed:
            out.append(RoleState(name, role, "failed", False, "stopped with an error"))
        elif poller.connected.is_set():
            out.append(RoleState(name, role, "running", True, "connected"))
        elif poller.standby_for is not None:  # another instance polls this folder
            detail = f"standing by: polled by {poller.standby_for}"
            out.append(RoleState(name, role, "standby", True, detail))
        elif state.last_error:
            wait = (
                f" (next attempt in {max(0.0, state.retry_at - now):.0f}s)"
                if (state.retry_at)
                else ""
            )
            detail = f"backing off after: {state.last_error}{wait}"
            out.append(RoleState(name, role, "backing off", False, detail))
        else:
            out.append(RoleState(name, role, "connecting", False, "connecting"))
    worker = service.worker
    if worker is not None:
        out.append(RoleState("worker", "worker", worker.state, *worker.health()))
    if service.outbound is not None:
        limit = max(60.0, 10 * settings.outbound.poll_interval_seconds)
        out.append(_rounds("scheduler", "outbox", service.outbound.last_tick, limit, now))
    if service.sla_jobs is not None:
        limit = max(60.0, 3 * settings.sla.job_interval_seconds)
        out.append(_rounds("sla_jobs", "SLA", service.sla_jobs.last_tick, limit, now))
    return out


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else ""


def _rounds(name: str, what: str, tick: float | None, limit: float, now: float) -> RoleState:
    """A role that goes round on a timer: ready while its last round is recent."""
    if tick is None:
        return RoleState(name, "", "starting", False, "no round yet")
    since = now - tick
    detail = f"last {what} round {since:.0f}s ago (limit {limit:.0f}s)"
    return RoleState(name, "", "running", since <= limit, detail)
