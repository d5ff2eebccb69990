"""Intake first: SQLite's one write lock goes to accepting mail before processing it.

SQLite lets one connection write at a time, and a connection that finds the lock taken
polls for it with growing sleeps (1, 2, 5 ... 100 ms). A worker that stores batch after
batch holds the lock nearly all the time, so an SMTP commit or an import's next rows
poll through many sleeps while the sender waits for its 250. The gate is a lock file
next to the database: whoever accepts mail holds it shared while its transaction runs,
and every other transaction waits at BEGIN until no intake holds it. So intake waits at
most for the transaction in progress; processing waits for the mail it is about to
process. (PostgreSQL has row locks and needs no gate.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

_local = threading.local()


class WriteGate:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def intake(self) -> Iterator[None]:
        """Hold the gate for an intake transaction (several intakes may hold it)."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            _local.intake = getattr(_local, "intake", 0) + 1
            try:
                yield
            finally:
                _local.intake -= 1
        finally:
            os.close(fd)  # releases the lock

    def wait_for_intake(self) -> None:
        """Before a transaction that is not intake: let pending intake go first."""
        if getattr(_local, "intake", 0):
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)


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
