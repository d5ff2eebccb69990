"""Intake first: SQLite's one write lock goes to accepting mail before processing it.

SQLite lets one connection write at a time, and a connection that finds the lock taken
polls for it with growing sleeps (1, 2, 5 ... 100 ms). A worker that stores batch after
batch holds the lock nearly all the time, so an SMTP commit or an import's next rows
would sleep through many of those polls while the sender waits for its 250.

The gate is a lock file next to the database. Every transaction that is not intake
holds it exclusively from its BEGIN until its COMMIT or ROLLBACK has returned (the
connection class below lets go right after either), and it takes the gate only when no
intake holds it or waits for it: processing waits for the mail it is about to process.
Whoever accepts mail holds it shared while its transaction runs (several intakes at
once), so its own BEGIN never meets a writer inside SQLite's lock; it waits for the gate
instead, in short steps, and is in within a fraction of a millisecond of the writer's
commit. While it waits it holds a second lock file shared, which a writer must take
before the gate: a writer that commits and begins again cannot take the gate back from
waiting intake. (PostgreSQL has row locks and needs no gate.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from pathlib import Path

_local = threading.local()

# A transaction waits at most this long for the gate (SQLite's busy_timeout).
WAIT_SECONDS = 30.0
# ... looking again after 0.1 ms, then doubling up to this step.
_MAX_STEP = 0.001


class GateTimeout(sqlite3.OperationalError):
    """A transaction could not get in: another one held the database too long. A
    SQLite OperationalError like "database is locked", so SQLAlchemy wraps it as one
    and every caller treats it as the database being unavailable for now."""


class GatedConnection(sqlite3.Connection):
    """A SQLite connection that lets go of the write gate when its transaction ends."""

    _gate_fd: int | None = None

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_gate()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_gate()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_gate()

    def release_gate(self) -> None:
        fd, self._gate_fd = self._gate_fd, None
        if fd is not None:
            os.close(fd)  # releases the lock


class WriteGate:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.waiting_path = Path(f"{path}-intake")  # held shared by intake waiting

    def _open(self, path: Path | None = None) -> int:
        return os.open(path or self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def intake(self, wait_seconds: float | None = None) -> Iterator[None]:
        """Hold the gate for an intake transaction (several intakes may hold it).

        Raises GateTimeout when a transaction in progress keeps it past ``wait_seconds``
        (default WAIT_SECONDS).
        """
        if wait_seconds is None:
            wait_seconds = WAIT_SECONDS
        fd = self._open()
        try:
            waiting = self._open(self.waiting_path)
            try:
                deadline = time.monotonic() + wait_seconds
                # (a writer holds this while it waits for intake inside to finish)
                _poll_shared(waiting, wait_seconds, deadline)
                _poll_shared(fd, wait_seconds, deadline)
            finally:
                os.close(waiting)
            _local.intake = getattr(_local, "intake", 0) + 1
            try:
                yield
            finally:
                _local.intake -= 1
        finally:
            os.close(fd)  # releases the lock

    def hold(self, connection: GatedConnection) -> None:
        """Before a transaction that is not intake: wait until no intake holds the gate
        or waits for it, then keep it until ``connection``'s transaction ends."""
        if getattr(_local, "intake", 0):
            return  # inside intake on this thread: intake goes first anyway
        if connection._gate_fd is not None:
            return
        fd = self._open()
        try:
            waiting = self._open(self.waiting_path)
            try:
                deadline = time.monotonic() + WAIT_SECONDS
                _lock_exclusive(waiting, deadline)  # no intake waiting for the gate
                _lock_exclusive(fd, deadline)  # none inside
            finally:
                os.close(waiting)
        except BaseException:
            os.close(fd)
            raise
        connection._gate_fd = fd


# Where a writer's flock blocks while its thread waits with a deadline (a few: one per
# writer blocked at once; more wait in the queue, and time out the same). One per
# process: a forked child must not inherit the parent's threads in it.
_blocked: tuple[int, ThreadPoolExecutor] | None = None


def _blocking_threads() -> ThreadPoolExecutor:
    global _blocked
    if _blocked is None or _blocked[0] != os.getpid():
        _blocked = (os.getpid(), ThreadPoolExecutor(4, thread_name_prefix="write-gate"))
    return _blocked[1]


def _lock_exclusive(fd: int, deadline: float) -> None:
    """flock(LOCK_EX) by the monotonic ``deadline``, like SQLite's busy timeout: a
    holder that never lets go (a process stopped in its transaction) is an error, not
    a hang. A writer waits for intake, which is over in moments; the kernel wakes a
    blocked flock the instant the lock is free, where polling would wake late on a
    busy machine (it made an import a second slower). So the flock blocks in a helper
    thread and this one waits for it; given up, the descriptor is closed by the caller
    and the lock the helper may still get goes with it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    # The helper locks through its own duplicate of the descriptor (one open file, one
    # lock): the caller may close ``fd`` when it gives up, and its number may be reused
    # before the helper even starts.
    job = _blocking_threads().submit(_flock_and_close, os.dup(fd))
    try:
        job.result(timeout=max(0.0, deadline - time.monotonic()))
    except FuturesTimeout:
        raise _timeout(WAIT_SECONDS) from None


def _flock_and_close(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)  # the lock stays with the caller's descriptor, if it is still open


def _poll_shared(fd: int, seconds: float, deadline: float) -> None:
    """flock(LOCK_SH) by the monotonic ``deadline`` (``seconds`` after the wait began):
    poll in steps of 0.1 ms growing to _MAX_STEP (intake is in right after a writer's
    commit); GateTimeout after it."""
    step = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _timeout(seconds) from None
            time.sleep(step)
            step = min(step * 2, _MAX_STEP)


def _timeout(seconds: float) -> GateTimeout:
    return GateTimeout(f"the database stayed busy for {seconds:g} s (write gate)")


def gate_for(database: Path) -> WriteGate:
    """The gate of one SQLite database file (the lock file is its whole state)."""
    return WriteGate(Path(str(database.resolve()) + "-gate"))


@contextlib.contextmanager
def intake_first(gate: WriteGate | None) -> Iterator[None]:
    """Run the enclosed transaction as intake (no gate: nothing to do)."""
    if gate is None:
        yield
    else:
        with gate.intake():
            yield
