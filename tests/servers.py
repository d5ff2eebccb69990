"""Real servers and tools for the intake tests: Dovecot, swaks, `mailtriage run`.

Dovecot follows the verified recipe in ../shared/RECIPES.md section 2 (own config in a
short temp dir, Maildir), with a static passdb so that each test can use a fresh user.
A missing binary skips the test, except in CI (``CI=true``), where it fails: there
these tests must run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from imapclient import IMAPClient

ROOT = Path(__file__).parent.parent
PASSWORD = "secret"
T = TypeVar("T")


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path:
        return path
    cannot_run(f"`{name}` is not installed (apt-get install {_PACKAGES.get(name, name)})")
    raise AssertionError("unreachable")  # pragma: no cover


def cannot_run(why: str) -> None:
    """Skip, except in CI (``CI=true``): there these tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}, and in CI these tests must run")
    pytest.skip(why)


_PACKAGES = {"dovecot": "dovecot-imapd", "swaks": "swaks", "openssl": "openssl"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- Dovecot --------------------------------------------------------------------------

DOVECOT_CONF = """base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login{extra_mechanisms}
auth_failure_delay = 0
first_valid_uid = 100
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
{extra_passdb}passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""

OAUTH2_PASSDB = """passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}}
"""

OAUTH2_CONF = """introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""


class Dovecot:
    """One Dovecot on a loopback port; users are added while it runs."""

    def __init__(self, *, oauth2_introspection_url: str = "") -> None:
        self.binary = require_binary("dovecot")
        if os.geteuid() != 0:
            cannot_run("the Dovecot fixture runs Dovecot as root (it switches to its users)")
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-", dir="/tmp"))  # short: sockets
        os.chmod(self.dir, 0o755)
        for sub in ("run", "state", "home"):
            (self.dir / sub).mkdir()
        shutil.chown(self.dir / "home", "dovecot", "dovecot")
        self.port = free_port()
        extra_passdb = extra_mech = ""
        if oauth2_introspection_url:
            (self.dir / "dovecot-oauth2.conf.ext").write_text(
                OAUTH2_CONF.format(url=oauth2_introspection_url)
            )
            extra_passdb = OAUTH2_PASSDB.format(d=self.dir)
            extra_mech = " xoauth2 oauthbearer"
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(
            DOVECOT_CONF.format(
                d=self.dir,
                port=self.port,
                extra_passdb=extra_passdb,
                password=PASSWORD,
                extra_mechanisms=extra_mech,
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._users = 0

    def start(self) -> None:
        with open(self.dir / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.conf)], stdout=err, stderr=subprocess.STDOUT
            )
        if not self._greets(15):
            log = (self.dir / "dovecot.log").read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"dovecot did not start on port {self.port}:\n{log}")

    def _greets(self, seconds: float) -> bool:
        """True once *our* Dovecot (still running) sends '* OK' on the port."""
        assert self.proc is not None
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.proc.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1) as s,
            ):
                s.settimeout(2)
                if s.recv(512).startswith(b"* OK") and self.proc.poll() is None:
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the master and every process it started.

        Dovecot's imap processes outlive their master: a client connected before the
        stop would keep being served. Killing them (by PID) drops those connections too.
        """
        if self.proc is None:
            return
        children = _descendants(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def add_user(self) -> str:
        """A fresh mailbox (the static passdb takes any user with PASSWORD)."""
        self._users += 1
        return f"u{self._users}@dataandmore.com"

    def client(self, user: str, password: str = PASSWORD) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(user, password)
        return client

    def account(self, user: str, **overrides: Any) -> dict[str, Any]:
        """An [[imap.accounts]] table for ``user`` on this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "security": "none",
            "username": user,
            "password": PASSWORD,
            "folder": "INBOX",
            "processed_folder": "Processed",
            **overrides,
        }


def _descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def folder_uids(server: Dovecot, user: str, folder: str) -> list[int]:
    with contextlib.closing(_Logout(server.client(user))) as c:
        if not c.client.folder_exists(folder):
            return []
        c.client.select_folder(folder, readonly=True)
        return sorted(c.client.search(["ALL"]))


def folder_messages(server: Dovecot, user: str, folder: str) -> dict[int, dict[bytes, Any]]:
    with contextlib.closing(_Logout(server.client(user))) as c:
        if not c.client.folder_exists(folder):
            return {}
        c.client.select_folder(folder, readonly=True)
        uids = c.client.search(["ALL"])
        if not uids:
            return {}
        return dict(c.client.fetch(uids, ["FLAGS", "BODY.PEEK[]"]))


class _Logout:
    def __init__(self, client: IMAPClient) -> None:
        self.client = client

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.logout()


# -- swaks ----------------------------------------------------------------------------


def swaks(port: int, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the real swaks against 127.0.0.1:port; stdout has the whole dialogue."""
    binary = require_binary("swaks")
    return subprocess.run(
        [binary, "--server", f"127.0.0.1:{port}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- `mailtriage run` as a child process ----------------------------------------------


def _inherited_env() -> dict[str, str]:
    """This process's environment for a daemon, without the metrics directory that an
    in-process service of an earlier test set here: a daemon started as ops start it
    makes its own (a test that wants a shared one passes it in ``env``)."""
    return {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


class Daemon:
    """``python -m mailtriage --config FILE run`` with its log read on a thread."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailtriage", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**_inherited_env(), **(env or {})},
            cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.log:
            if needle in line:
                return line
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                raise AssertionError(f"no log line with {needle!r}; log:\n{self.text()}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if needle in line:
                return line

    def smtp_port(self) -> int:
        line = self.wait_for_line("listening on")
        return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])

    def text(self) -> str:
        return "".join(self.log)

    def terminate(self, timeout: float) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(5)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def cli_json(config: Path, *args: str) -> Any:
    """Run the mailtriage CLI in a child process and parse its --json output."""
    import json

    done = subprocess.run(
        [sys.executable, "-m", "mailtriage", "--config", str(config), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@contextlib.contextmanager
def dovecot_server(**kwargs: Any) -> Iterator[Dovecot]:
    server = Dovecot(**kwargs)
    try:
        server.start()
        yield server
    finally:
        server.close()
