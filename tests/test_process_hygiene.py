"""Process hygiene of `mailtriage run` (issue 13): its children die with it, and a
worker that dies is restarted (its state says "restarting" meanwhile)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from mailtriage.app import App
from mailtriage.service import Service, WorkerProcess, run_service
from mailtriage.store.intake_models import ImapLease
from mailtriage.store.models import utcnow
from test_daemon import gone, send, sqlite_url, ticket_subjects, worker_pid, write_config

from conftest import make_settings
from servers import Daemon, _descendants, dovecot_server, wait_for


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pool_config(tmp_path: Path) -> Path:
    """A daemon whose worker parses in 2 pool processes (so it has a fork server)."""
    config = write_config(tmp_path / "c.toml", sqlite_url(tmp_path))
    config.write_text(config.read_text().replace("processes = 1", "processes = 2"))
    return config


def _tree_with_pool(daemon: Daemon) -> list[int]:
    """Every process below the daemon, once the worker's pool is up: the resource
    tracker, the worker, its fork server and the 2 pool processes."""

    def ready() -> list[int] | None:
        tree = _descendants(daemon.proc.pid)
        forked = [p for p in tree if "multiprocessing.forkserver" in _cmdline(p)]
        tracker = [p for p in tree if "resource_tracker" in _cmdline(p)]
        return tree if len(forked) == 3 and tracker else None  # server + 2 in the pool

    return wait_for(ready, timeout=30, interval=0.2, what="the worker's pool")


def test_kill_9_of_the_daemon_leaves_no_process_behind(tmp_path: Path) -> None:
    with Daemon(_pool_config(tmp_path)) as daemon:
        daemon.smtp_port()
        tree = _tree_with_pool(daemon)
        assert len(tree) == 5
        started = time.monotonic()
        daemon.kill()  # SIGKILL: it cannot stop anyone itself
        survivors = wait_for(
            lambda: [p for p in tree if not gone(p)] == [] or None,
            timeout=10,
            interval=0.1,
            what=f"no survivors of {[(p, _cmdline(p)[:80]) for p in tree if not gone(p)]}",
        )
        assert survivors
        assert time.monotonic() - started < 10


def test_a_killed_worker_takes_its_pool_along_and_is_restarted(tmp_path: Path) -> None:
    with Daemon(_pool_config(tmp_path)) as daemon:
        port = daemon.smtp_port()
        tree = _tree_with_pool(daemon)
        worker = worker_pid(daemon)
        below_worker = _descendants(worker)  # its fork server and pool processes
        assert len(below_worker) == 3
        os.kill(worker, signal.SIGKILL)  # a segfault, the OOM killer
        wait_for(
            lambda: all(gone(p) for p in below_worker), timeout=10, what="the old pool to exit"
        )
        send(port, "nach dem Neustart")
        assert worker_pid(daemon, after=worker) != worker
        assert wait_for(lambda: ticket_subjects(daemon.config), timeout=60, what="the ticket") == [
            "nach dem Neustart"
        ]
        # the new worker has its own pool; nothing of the old one is left
        new_tree = _tree_with_pool(daemon)
        assert not set(below_worker) & set(new_tree)
        assert set(tree) - set(new_tree) == {worker, *below_worker}
        assert daemon.terminate(timeout=15) == 0
    assert "died (exit code -9); restarting" in daemon.text()


def test_worker_state_says_restarting_until_the_new_worker_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'm.db'}")
    with App.from_settings(settings) as app:
        app.prepare_database()
    worker = WorkerProcess(settings)
    worker.start()
    try:
        assert worker.state == "running"
        first = worker.process
        assert first is not None and first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        first.join(10)
        assert worker.state == "restarting"
        worker.watch()  # a quick death: restarted after a pause, not at once
        assert worker.state == "restarting" and worker.process is first
        wait_for(lambda: (worker.watch(), worker.state == "running")[1], timeout=10)
        assert worker.process is not first and worker.restarts == 1
    finally:
        assert worker.stop(time.monotonic() + 10)


GRANDCHILD = """
import signal, sys, time
from mailtriage.ops import lifeline
if sys.argv[1] == "no-prctl":
    lifeline._set_pdeathsig = lambda sig: False  # a system without PR_SET_PDEATHSIG
lifeline.die_with_parent(signal.SIGKILL)
print("ready", flush=True)
time.sleep(60)
"""

MIDDLE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["prctl", "no-prctl"])
def test_die_with_parent_ends_a_child_whose_parent_was_killed(how: str) -> None:
    """The kernel's parent-death signal, and the getppid() watcher where there is none."""
    middle = subprocess.Popen(
        [sys.executable, "-c", MIDDLE, GRANDCHILD, how], stdout=subprocess.PIPE, text=True
    )
    try:
        assert middle.stdout is not None
        child = int(middle.stdout.readline())
        assert not gone(child)
    finally:
        middle.kill()
        middle.wait()
    wait_for(lambda: gone(child), timeout=5, what="the orphan to exit")


def test_role_states_show_a_restarting_worker_and_a_standby_poller(tmp_path: Path) -> None:
    """What /readyz reports: SMTP running, the IMAP poller standing by while another
    instance holds its folder, the worker "restarting" after it died, then running."""
    with dovecot_server() as server:
        account = server.account(server.add_user())
        settings = make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'm.db'}",
            smtp={"port": 0},
            imap={"enabled": True, "accounts": [account], "lease_seconds": 3600},
            outbound={"sender_enabled": False},
        )
        with App.from_settings(settings) as app:
            app.prepare_database()
            with app.factory() as session, session.begin():
                session.add(
                    ImapLease(
                        account=account["username"] + "@127.0.0.1",
                        folder="INBOX",
                        owner="elsewhere.example:4242:imapabc",
                        expires_at=utcnow() + timedelta(hours=1),
                    )
                )
        stop = threading.Event()
        ready: queue.Queue[Service] = queue.Queue()
        thread = threading.Thread(
            target=run_service, args=(settings, stop), kwargs={"on_ready": ready.put}
        )
        thread.start()
        try:
            service = ready.get(timeout=60)
            want = {"smtp": "running", "imap-0": "standby", "worker": "running"}
            wait_for(lambda: service.role_states() == want, timeout=10, what=str(want))
            assert service.pollers[0].standby_for == "elsewhere.example:4242:imapabc"
            assert service.worker is not None and service.worker.process is not None
            first = service.worker.process
            assert first.pid is not None
            os.kill(first.pid, signal.SIGKILL)
            first.join(10)
            assert service.role_states()["worker"] == "restarting"
            wait_for(lambda: service.role_states() == want, timeout=30, what="a new worker")
            assert service.worker.process is not first
        finally:
            stop.set()
            thread.join(60)
        assert not thread.is_alive()
