"""The worker pool's processes, importable without the pipeline or the database: the
import command starts the fork server before its own heavy imports, so the server
imports the pipeline (see runners.preload) on the other core meanwhile."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

# Below this many claimed messages, processing in this process beats a pool round trip.
POOL_THRESHOLD = 4
# What the fork server imports once, before it forks the pool processes.
PRELOAD = ["mailtriage.app", "mailtriage.runners.preload"]


def pool_processes(wanted: int) -> int:
    """worker.processes: 0 means one per core."""
    return wanted if wanted > 0 else (os.cpu_count() or 1)


def pool_context() -> ForkServerContext:
    """forkserver: pool processes fork from a clean server that has already imported
    the pipeline, not from the worker with its threads and connections."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_fork_server() -> None:
    """Start the fork server now and return at once: it imports PRELOAD while this
    process goes on; the first pool process then forks without waiting for that.
    (It ends with this process; starting it again is a no-op.)"""
    pool_context()
    forkserver.ensure_running()
