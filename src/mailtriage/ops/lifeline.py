"""Child processes die with their parent: no orphans after a kill -9 of the daemon.

The process tree of `mailtriage run`: the main process -> the worker (spawned) -> its
fork server -> the pool processes; beside them multiprocessing's resource tracker.
Killed with SIGKILL (or dead of SIGBUS, the OOM killer), a process cannot stop anyone,
so each child arranges its own end when it starts:

- The worker, ``die_with_parent``: on Linux ``prctl(PR_SET_PDEATHSIG, sig)``, the
  kernel sends ``sig`` the moment the parent exits; everywhere (and should the parent
  have died before the prctl) a daemon thread looks at ``getppid()`` every second: a
  new parent (init, or a subreaper) means ours is gone.
- The pool processes, ``die_with``: a thread waits on the worker's sentinel (their
  parent is the fork server, which lives as long as any of them does: the kernel's
  signal would never come).
- The fork server and the resource tracker exit by themselves once every process
  holding their pipes is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing.process
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_SECONDS = 1.0


def _set_pdeathsig(sig: int) -> bool:
    """Ask the kernel for ``sig`` when the parent dies; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(
    sig: int = signal.SIGKILL,
    *,
    parent: int | None = None,
    grace: float | None = None,
) -> None:
    """Make this process receive ``sig`` when its parent dies.

    ``parent``: the pid the parent should have (default: the current one); if it is
    gone already, ``sig`` is sent at once. ``grace``: after ``sig`` (a polite one whose
    handler finishes the work at hand), exit hard this many seconds later should the
    process still be there.
    """
    expected = os.getppid() if parent is None else parent
    kernel = _set_pdeathsig(sig)
    if os.getppid() != expected:  # died before the prctl: nobody will tell us
        threading.Thread(target=_end, args=(sig, grace), name="lifeline", daemon=True).start()
        return
    if not kernel or grace is not None:  # the thread: fallback, and the hard exit
        threading.Thread(
            target=_watch, args=(expected, sig, grace), name="lifeline", daemon=True
        ).start()


def _watch(parent: int, sig: int, grace: float | None) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    _end(sig, grace)


def _end(sig: int, grace: float | None) -> None:
    with contextlib.suppress(OSError):
        os.kill(os.getpid(), sig)
    if grace is not None:
        time.sleep(grace)
        os._exit(70)  # EX_SOFTWARE: the polite stop did not finish in time


def die_with(
    process: multiprocessing.process.BaseProcess | None, sig: int = signal.SIGKILL
) -> None:
    """Send ``sig`` to this process when ``process`` ends (portable: a thread waits on
    its sentinel). For ``multiprocessing.parent_process()``: the process that asked
    for this one, also through a fork server."""
    if process is None:
        return

    def wait() -> None:
        process.join()
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), sig)

    threading.Thread(target=wait, name="lifeline", daemon=True).start()
