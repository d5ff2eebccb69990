"""IMAP intake against a real Dovecot on loopback (../shared/RECIPES.md section 2)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
from imapclient import IMAPClient
from sqlalchemy import delete, func, select, update

from mailtriage.app import App
from mailtriage.backoff import backoff_delay
from mailtriage.config import ConfigError, settings_from_dict
from mailtriage.intake.imap import ImapPoller, _batches, check_account
from mailtriage.store.intake_models import ImapCursor, ImapLease
from mailtriage.store.models import Inbound, Ticket, utcnow

from conftest import make_settings, stored_raw
from mails import mail
from servers import (
    Dovecot,
    dovecot_server,
    folder_messages,
    folder_uids,
    require_binary,
    wait_for,
)

AppFactory = Callable[..., App]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with dovecot_server() as server:
        yield server


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    return dovecot.add_user()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    """App with an [imap] section for one account; sqlite unless a URL is given."""
    apps: list[App] = []

    def factory(account: dict[str, Any], database_url: str | None = None, **sections: Any) -> App:
        imap = {
            "enabled": True,
            "accounts": [account],
            "reconnect_initial_seconds": 0.05,
            "reconnect_max_seconds": 0.5,
            **sections.pop("imap", {}),
        }
        settings = make_settings(tmp_path, database_url, imap=imap, **sections)
        app = App.from_settings(settings)
        app.prepare_database()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()


def append(server: Dovecot, user: str, *messages: bytes, flags: tuple[bytes, ...] = ()) -> None:
    client = server.client(user)
    try:
        for raw in messages:
            client.append("INBOX", raw, flags=flags)
    finally:
        client.logout()


def poller(app: App, **kwargs: Any) -> ImapPoller:
    return ImapPoller(app.inbox, app.factory, app.settings, 0, **kwargs)


def counts(app: App) -> tuple[int, int]:
    """(inbound rows, tickets)"""
    with app.factory() as session:
        return (
            session.scalar(select(func.count(Inbound.id))) or 0,
            session.scalar(select(func.count(Ticket.id))) or 0,
        )


def subjects(app: App) -> list[str]:
    with app.factory() as session:
        return sorted(session.scalars(select(Ticket.subject)))


def msgs(n: int, tag: str) -> list[bytes]:
    # each from its own address: one address opens at most
    # conversation.new_tickets_per_address tickets an hour
    return [
        mail(
            subject=f"{tag} {i}",
            message_id=f"<{tag}.{i}@kunde.example>",
            sender=f"{tag}.{i}@kunde.example",
        )
        for i in range(n)
    ]


# -- pure parts -----------------------------------------------------------------------


def test_config_errors_name_the_key() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^imap.accounts\[0\].security: expected one of "
        r'"none", "starttls", "tls", got "ssl"',
    ):
        settings_from_dict({"imap": {"accounts": [{"host": "h", "security": "ssl"}]}})
    with pytest.raises(ConfigError, match=r"^imap.accounts\[1\].port: expected an integer"):
        settings_from_dict({"imap": {"accounts": [{}, {"port": "993"}]}})
    with pytest.raises(ConfigError, match=r"^imap.accounts\[0\].passwort: unknown key"):
        settings_from_dict({"imap": {"accounts": [{"passwort": "x"}]}})
    account = settings_from_dict(
        {"imap": {"accounts": [{"host": "h", "username": "u", "action": "flag", "flag": ""}]}}
    )
    with pytest.raises(ConfigError, match=r"^imap.accounts\[0\].flag: required"):
        check_account(account.imap.accounts[0], 0)
    with pytest.raises(ConfigError, match=r"^imap.accounts\[2\].host: required"):
        check_account(settings_from_dict({"imap": {"accounts": [{}]}}).imap.accounts[0], 2)
    oauth = settings_from_dict(
        {"imap": {"accounts": [{"host": "h", "username": "u", "auth": "xoauth2"}]}}
    )
    with pytest.raises(ConfigError, match=r"token_file: xoauth2 needs"):
        check_account(oauth.imap.accounts[0], 0)


def test_batches_keep_oversize_messages_apart() -> None:
    sizes = {1: 10, 2: 10, 3: 500, 4: 10}
    assert list(_batches([1, 2, 3, 4], sizes, 100)) == [([1, 2], False), ([3], True), ([4], False)]


def test_backoff_grows_exponentially_with_jitter() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 30.0, rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        base = min(30.0, 2.0 ** (n - 1))
        assert 0.8 * base <= delay <= 1.2 * base
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered


# -- against Dovecot ------------------------------------------------------------------


def test_poll_moves_messages_and_makes_tickets(
    database_url: str, dovecot: Dovecot, user: str, make_app: AppFactory
) -> None:
    app = make_app(dovecot.account(user), database_url)
    append(dovecot, user, *msgs(3, "Drucker"))
    stats = poller(app).poll_once()
    assert (stats.fetched, stats.accepted, stats.done) == (3, 3, 3)
    assert folder_uids(dovecot, user, "INBOX") == []
    processed = folder_messages(dovecot, user, "Processed")
    assert len(processed) == 3
    # BODY.PEEK[] marks nothing: the moved messages are still unread
    assert all(b"\\Seen" not in data[b"FLAGS"] for data in processed.values())
    app.worker().drain()
    assert subjects(app) == ["Drucker 0", "Drucker 1", "Drucker 2"]
    with app.factory() as session:
        cursor = session.scalars(select(ImapCursor)).one()
        row = session.scalars(select(Inbound).order_by(Inbound.id)).first()
    assert (cursor.folder, cursor.last_uid, cursor.uidvalidity) == ("INBOX", 3, stats.uidvalidity)
    assert row is not None and row.envelope is not None
    assert row.envelope["imap"]["uid"] == 1 and row.source.endswith(";UID=1")
    # nothing new: the second pass does nothing
    assert poller(app).poll_once().fetched == 0


def test_flag_mode_keeps_messages_and_reads_each_once(
    dovecot: Dovecot, user: str, make_app: AppFactory
) -> None:
    app = make_app(dovecot.account(user, action="flag"))
    # already flagged when we first look: taken in before, left alone
    append(dovecot, user, mail(subject="alt"), flags=(b"\\Seen",))
    append(dovecot, user, *msgs(2, "neu"))
    assert poller(app).poll_once().accepted == 2
    inbox = folder_messages(dovecot, user, "INBOX")
    assert len(inbox) == 3 and all(b"\\Seen" in d[b"FLAGS"] for d in inbox.values())
    # a person reads the next message before we get to it: the cursor still takes it
    append(dovecot, user, mail(subject="gelesen"), flags=(b"\\Seen",))
    stats = poller(app).poll_once()
    assert (stats.fetched, stats.accepted) == (1, 1)
    assert poller(app).poll_once().fetched == 0
    app.worker().drain()
    assert subjects(app) == ["gelesen", "neu 0", "neu 1"]


def test_copy_expunge_fallback_without_move(
    dovecot: Dovecot, user: str, make_app: AppFactory
) -> None:
    app = make_app(dovecot.account(user, processed_folder="Support Archiv"))
    append(dovecot, user, *msgs(3, "copy"))
    stats = poller(app, use_move=False).poll_once()
    assert stats.done == 3
    assert folder_uids(dovecot, user, "INBOX") == []  # expunged, not just \Deleted
    moved = folder_messages(dovecot, user, "Support Archiv")
    assert len(moved) == 3 and all(b"\\Deleted" not in d[b"FLAGS"] for d in moved.values())
    assert counts(app)[0] == 3


def test_oversize_message_is_quarantined_and_moved_aside(
    dovecot: Dovecot, user: str, make_app: AppFactory
) -> None:
    app = make_app(
        dovecot.account(user, quarantine_folder="Zu gross"), storage={"max_message_mb": 0.05}
    )
    big = mail(subject="riesig", body="x" * 200_000)
    append(dovecot, user, mail(subject="vorher"), big, mail(subject="nachher"))
    stats = poller(app).poll_once()
    assert (stats.accepted, stats.quarantined, stats.done) == (2, 1, 3)
    assert folder_uids(dovecot, user, "INBOX") == []
    assert len(folder_uids(dovecot, user, "Processed")) == 2
    aside = folder_messages(dovecot, user, "Zu gross")
    assert [d[b"BODY[]"] for d in aside.values()] == [big.replace(b"\n", b"\r\n")]
    with app.factory() as session:
        row = session.scalars(select(Inbound).where(Inbound.status == "quarantined")).one()
    assert row.stage == "intake" and "over storage.max_message_mb" in (row.reason or "")
    assert "Zu gross" in (row.reason or "") and row.envelope and row.envelope["oversize"]
    assert stored_raw(app, row.id).startswith(b"From: ")  # the header was kept
    app.worker().drain()
    assert subjects(app) == ["nachher", "vorher"]


@pytest.mark.parametrize("where", ["fetch", "move"])
def test_connection_dropped_mid_poll_loses_and_duplicates_nothing(
    dovecot: Dovecot,
    user: str,
    make_app: AppFactory,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Kill the client socket in the middle of a FETCH (before the accept) or a MOVE
    (after it); the next session must take in everything exactly once."""
    app = make_app(dovecot.account(user))
    append(dovecot, user, *msgs(60, "drop"))  # three FETCH batches of up to 25
    original = getattr(IMAPClient, where)
    calls = {"n": 0}

    def dying(self: IMAPClient, messages: Any, *args: Any) -> Any:
        wanted = where == "move" or any(b"BODY" in str(a).encode() for a in args)
        if wanted:
            calls["n"] += 1
            if calls["n"] == 2:
                self.socket().shutdown(socket.SHUT_RDWR)
        return original(self, messages, *args)

    monkeypatch.setattr(IMAPClient, where, dying)
    with pytest.raises((OSError, IMAPClient.Error, IMAPClient.AbortError)):
        poller(app).poll_once()
    first = counts(app)[0]
    assert first == (25 if where == "fetch" else 50)
    left = folder_uids(dovecot, user, "INBOX")
    assert len(left) == 35  # the second batch was not moved in either case
    monkeypatch.undo()
    stats = poller(app).poll_once()
    assert stats.accepted == 60 - first
    assert stats.duplicates == (0 if where == "fetch" else 25)
    assert folder_uids(dovecot, user, "INBOX") == []
    assert len(folder_uids(dovecot, user, "Processed")) == 60
    app.worker().drain()
    assert counts(app) == (60, 60)


def test_uidvalidity_change_brings_no_duplicates(
    dovecot: Dovecot, user: str, make_app: AppFactory
) -> None:
    app = make_app(dovecot.account(user, action="flag"))
    append(dovecot, user, *msgs(3, "valid"))
    first = poller(app).poll_once()
    assert first.accepted == 3
    # A person unflags one message; then the server renumbers the folder (a restore,
    # a migration): every UID is new and the old cursor means nothing.
    client = dovecot.client(user)
    client.select_folder("INBOX")
    client.remove_flags([1], [b"\\Seen"])
    client.logout()
    _reset_uidvalidity(dovecot, user, first.uidvalidity + 1000)
    append(dovecot, user, mail(subject="danach"))
    second = poller(app).poll_once()
    assert second.uidvalidity != first.uidvalidity
    # the unflagged one is read again but is no new row; only "danach" is new
    assert (second.fetched, second.accepted, second.duplicates) == (2, 1, 1)
    app.worker().drain()
    assert counts(app) == (4, 4)
    with app.factory() as session:
        cursors = session.scalars(select(ImapCursor).order_by(ImapCursor.id)).all()
    assert [c.uidvalidity for c in cursors] == [first.uidvalidity, second.uidvalidity]


def _reset_uidvalidity(dovecot: Dovecot, user: str, value: int) -> None:
    """Give INBOX a new UIDVALIDITY, as after a restore or a server migration."""
    subprocess.run(
        [
            require_binary("doveadm"),
            "-c",
            str(dovecot.conf),
            "mailbox",
            "update",
            "-u",
            user,
            "--uid-validity",
            str(value),
            "INBOX",
        ],
        check=True,
        timeout=30,
    )


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "poll"])
def test_new_mail_is_taken_in_while_running(
    dovecot: Dovecot, user: str, make_app: AppFactory, idle: bool
) -> None:
    """With IDLE the server pushes: the poll interval (an hour) plays no part."""
    interval = 3600 if idle else 0.2
    app = make_app(dovecot.account(user, idle=idle, poll_interval_seconds=interval))
    p = poller(app)
    stop = threading.Event()
    thread = threading.Thread(target=p.run_forever, args=(stop,))
    thread.start()
    try:
        assert p.connected.wait(10)
        if idle:  # the first pass is over: from now on only a push brings news
            assert p.idling.wait(10)
        append(dovecot, user, mail(subject="gepusht"))
        wait_for(lambda: counts(app)[0] == 1, timeout=5, what="the pushed message")
        wait_for(lambda: folder_uids(dovecot, user, "INBOX") == [], timeout=5, what="the move")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    app.worker().drain()
    assert subjects(app) == ["gepusht"]


def test_reconnects_after_the_server_restarts(make_app: AppFactory) -> None:
    with dovecot_server() as server:
        user = server.add_user()
        app = make_app(server.account(user, poll_interval_seconds=3600))
        p = poller(app)
        stop = threading.Event()
        thread = threading.Thread(target=p.run_forever, args=(stop,))
        thread.start()
        try:
            # Appends wait until the poller idles: Dovecot can miss a message that is
            # committed while IDLE starts, until its next check (the poll interval).
            assert p.idling.wait(10)
            append(server, user, mail(subject="vor dem Neustart"))
            wait_for(lambda: counts(app)[0] == 1, what="the first message")
            server.stop()
            wait_for(lambda: not p.connected.is_set(), what="the poller to notice")
            server.start()
            assert p.connected.wait(10) and p.idling.wait(10)  # it reconnected by itself
            append(server, user, mail(subject="nach dem Neustart"))
            wait_for(lambda: counts(app)[0] == 2, timeout=10, what="the new message")
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()
        assert folder_uids(server, user, "INBOX") == []
        app.worker().drain()
        assert subjects(app) == ["nach dem Neustart", "vor dem Neustart"]


def test_password_from_env_then_file_then_config(
    dovecot: Dovecot,
    user: str,
    make_app: AppFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text("secret\n")
    app = make_app(dovecot.account(user, password="wrong", password_file=str(secret)))
    append(dovecot, user, mail(subject="datei"))
    assert poller(app).poll_once().accepted == 1  # the file beats the config

    secret.write_text("wrong\n")
    monkeypatch.setenv("MAILTRIAGE_IMAP_PASSWORD_0", "secret")
    append(dovecot, user, mail(subject="umgebung"))
    assert poller(app).poll_once().accepted == 1  # the environment beats the file

    monkeypatch.delenv("MAILTRIAGE_IMAP_PASSWORD_0")
    with pytest.raises(IMAPClient.Error, match="AUTHENTICATIONFAILED"):
        poller(app).poll_once()


class _Introspection(BaseHTTPRequestHandler):
    """An OAuth2 token-introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb."""

    tokens: ClassVar[dict[str, str]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = parse_qs(body).get("token", [""])[0]
        user = self.tokens.get(token)
        data = {"active": True, "username": user} if user else {"active": False}
        out = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


def test_xoauth2_login_with_token_file_and_command(make_app: AppFactory, tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Introspection)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    user = "oauth@dataandmore.com"
    _Introspection.tokens = {"token-from-file": user, "token-from-command": user}
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/introspect"
        with dovecot_server(oauth2_introspection_url=url) as server:
            token = tmp_path / "token"
            token.write_text("token-from-file\n")
            account = server.account(user, auth="xoauth2", password="", token_file=str(token))
            app = make_app(account)
            append(server, user, mail(subject="oauth datei"))
            assert poller(app).poll_once().accepted == 1

            command = "printf %s token-from-command"
            app2 = make_app(
                account | {"token_file": "", "token_command": command},
                database_url=app.settings.database_url,
            )
            append(server, user, mail(subject="oauth kommando"))
            assert poller(app2).poll_once().accepted == 1

            token.write_text("expired\n")
            with pytest.raises(IMAPClient.Error, match="AUTHENTICATIONFAILED"):
                poller(app).poll_once()
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- several instances: one poller per folder ------------------------------------------
# Each test with its own Dovecot: the one above delays logins after the failed ones of
# the password test (its auth penalty), which would eat a short lease.


@pytest.fixture
def own_dovecot() -> Iterator[Dovecot]:
    with dovecot_server() as server:
        yield server


def _lease_rows(app: App) -> list[tuple[str, str, str]]:
    with app.factory() as session:
        return [(r.account, r.folder, r.owner) for r in session.scalars(select(ImapLease)).all()]


def test_two_pollers_on_one_folder_take_turns(
    own_dovecot: Dovecot, make_app: AppFactory, database_url: str
) -> None:
    """Two instances' pollers on one folder: only the lease holder logs in; the other
    stands by and takes over when the holder stops."""
    dovecot, user = own_dovecot, own_dovecot.add_user()
    account = dovecot.account(user, idle=False, poll_interval_seconds=0.1)
    app = make_app(account, database_url, imap={"lease_seconds": 2.0})
    first, second = poller(app, owner="first"), poller(app, owner="second")
    logins: dict[str, int] = {"first": 0, "second": 0}
    for p in (first, second):
        connect = p.connect

        def counted(p: ImapPoller = p, connect: Callable[[], IMAPClient] = connect) -> IMAPClient:
            logins[p.owner] += 1
            return connect()

        p.connect = counted  # type: ignore[method-assign]
    stops = {"first": threading.Event(), "second": threading.Event()}
    threads = {
        p.owner: threading.Thread(target=p.run_forever, args=(stops[p.owner],))
        for p in (first, second)
    }
    threads["first"].start()
    try:
        assert first.connected.wait(10)
        threads["second"].start()
        wait_for(lambda: second.standby_for == "first", what="the second poller to stand by")
        append(dovecot, user, *msgs(10, "turns"))
        wait_for(lambda: counts(app)[0] == 10, timeout=10, what="10 messages")
        time.sleep(2.5)  # more than a lease: the holder renews, the other keeps waiting
        assert logins == {"first": 1, "second": 0}
        assert _lease_rows(app) == [(first.key, "INBOX", "first")]
        stops["first"].set()  # a clean stop gives the folder up at once
        threads["first"].join(10)
        assert second.connected.wait(5)
        append(dovecot, user, *msgs(5, "after"))
        wait_for(lambda: counts(app)[0] == 15, timeout=10, what="5 more messages")
    finally:
        for stop in stops.values():
            stop.set()
        for thread in threads.values():
            if thread.is_alive() or thread.ident is not None:
                thread.join(10)
    assert logins == {"first": 1, "second": 1}
    assert _lease_rows(app) == []  # both stopped cleanly
    assert len(folder_uids(dovecot, user, "Processed")) == 15


def test_a_holder_that_stops_renewing_loses_the_folder(
    own_dovecot: Dovecot, make_app: AppFactory, database_url: str
) -> None:
    """A hung holder's lease expires: another instance takes the folder over, and the
    holder, when it wakes up, notices on its next renewal and stands by."""
    dovecot, user = own_dovecot, own_dovecot.add_user()
    account = dovecot.account(user, idle=True, poll_interval_seconds=3600)
    app = make_app(account, database_url, imap={"lease_seconds": 3.0})
    holder = poller(app, owner="hung")
    stop = threading.Event()
    thread = threading.Thread(target=holder.run_forever, args=(stop,))
    thread.start()
    try:
        assert holder.idling.wait(10)
        # The holder hangs: it stops renewing and its lease runs out (another
        # instance finds it expired).
        with app.factory() as session, session.begin():
            session.execute(update(ImapLease).values(expires_at=utcnow() - timedelta(seconds=1)))
        other = poller(app, owner="other")
        assert other.take_lease()
        wait_for(lambda: holder.standby_for == "other", timeout=5, what="the holder to yield")
        wait_for(lambda: not holder.connected.is_set(), timeout=5, what="the holder to log out")
        append(dovecot, user, *msgs(3, "taken"))
        assert other.poll_once().accepted == 3
        assert holder.standby_for == "other" and not holder.connected.is_set()
    finally:
        stop.set()
        thread.join(10)
    assert _lease_rows(app) == [(holder.key, "INBOX", "other")]  # not the holder's to drop


def test_a_lease_of_a_dead_daemon_on_this_host_is_taken_at_once(
    own_dovecot: Dovecot, make_app: AppFactory
) -> None:
    """After a kill -9 and a restart on the same host the folder need not wait for the
    old lease to expire; a live holder elsewhere is waited for."""
    app = make_app(own_dovecot.account(own_dovecot.add_user()), imap={"lease_seconds": 3600})
    gone = subprocess.Popen(["true"])
    gone.wait()
    p = poller(app)
    for holder, taken in (
        (f"{socket.gethostname()}:{gone.pid}:imapdead", True),
        (f"elsewhere.example:{os.getpid()}:imaplive", False),
        (f"{socket.gethostname()}:{os.getppid()}:imaplive", False),  # alive here
    ):
        with app.factory() as session, session.begin():
            session.execute(delete(ImapLease))
            session.add(
                ImapLease(
                    account=p.key,
                    folder="INBOX",
                    owner=holder,
                    expires_at=utcnow() + timedelta(hours=1),
                )
            )
        assert p.take_lease() is taken, holder
        assert p.standby_for == (None if taken else holder)
        expected = p.owner if taken else holder
        assert _lease_rows(app) == [(p.key, "INBOX", expected)]
