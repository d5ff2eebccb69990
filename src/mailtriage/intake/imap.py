"""IMAP intake: poll (or IDLE on) mailbox folders and take their messages in durably.

For each message, in UID order: fetch ``BODY.PEEK[]`` (reading marks nothing), store
it with ``Inbox.accept`` (blob fsync + committed row), and only then move it to the
processed folder (MOVE, or COPY + ``\\Deleted`` + EXPUNGE where MOVE is missing) or
flag it; finally advance the cursor (account, folder, UIDVALIDITY) -> last UID.

A crash or a dropped connection anywhere in that sequence is harmless: the message is
still in the folder (or still lacks the flag, or sits above the cursor), so the next
session reads it again, and the inbox's idempotency on the raw sha256 turns the second
accept into a no-op. The same holds when UIDVALIDITY changes and every UID is new.

Several instances on one database: a folder is polled by one of them at a time. The
daemon's poller holds a lease on the folder (a row in ``imap_lease``), renewed every
third of ``imap.lease_seconds`` while it polls; the pollers of other instances stand
by quietly and take the folder over once the lease has expired (its holder died or
hangs). A clean stop gives the lease up at once.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import random
import shlex
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imapclient import IMAPClient
from imapclient.imapclient import DELETED
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mailtriage.backoff import backoff_delay
from mailtriage.config import ConfigError, ImapAccount, Settings
from mailtriage.inbox import Accepted, Inbox, Incoming
from mailtriage.store.intake_models import ImapCursor, ImapLease
from mailtriage.store.leases import drop_lease, hold_lease
from mailtriage.store.models import utcnow

log = logging.getLogger(__name__)

ENV_PASSWORD = "MAILTRIAGE_IMAP_PASSWORD_{index}"
# Fetch bodies in batches of at most this many messages / bytes (one commit each).
BATCH_MESSAGES = 25
BATCH_BYTES = 8 * 1024 * 1024
# RFC 2177: re-issue IDLE at least every 29 minutes; servers and NATs drop it sooner.
IDLE_RENEW_SECONDS = 9 * 60
# How often a waiting IDLE looks at the stop event.
STOP_CHECK_SECONDS = 0.25
# System flags have their own SEARCH keys; other flags are keywords.
_UNFLAGGED_SEARCH = {
    "\\seen": ["UNSEEN"],
    "\\flagged": ["UNFLAGGED"],
    "\\answered": ["UNANSWERED"],
    "\\deleted": ["UNDELETED"],
    "\\draft": ["UNDRAFT"],
}
# Errors that end a session and are retried after a backoff, without a traceback.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    imaplib.IMAP4.error,
    EOFError,
    SQLAlchemyError,
)


class FolderTaken(Exception):
    """Our lease on the folder ran out and another instance holds it now."""


@dataclass
class PollerState:
    """What /readyz and /metrics read about a poller (written by its thread only)."""

    started: float = field(default_factory=time.time)
    last_sync: float | None = None  # time.time() of the last complete pass
    last_error: str = ""  # why the last session ended ("" after a good pass)
    errors: int = 0  # sessions that ended in an error
    retry_at: float | None = None  # while backing off: when the next attempt starts


@dataclass
class PollStats:
    fetched: int = 0
    accepted: int = 0  # new inbound rows
    duplicates: int = 0  # bytes we already had (re-read after a crash, UIDVALIDITY change)
    quarantined: int = 0  # over the size limit
    done: int = 0  # moved or flagged
    uidvalidity: int = 0
    last_uid: int = 0
    ids: list[int] = field(default_factory=list)

    def add(self, other: PollStats) -> None:
        self.fetched += other.fetched
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.done += other.done
        self.uidvalidity = other.uidvalidity or self.uidvalidity
        self.last_uid = max(self.last_uid, other.last_uid)
        self.ids.extend(other.ids)


def check_account(account: ImapAccount, index: int) -> None:
    """Raise ConfigError naming the key for settings the loader cannot check alone."""
    key = f"imap.accounts[{index}]"
    if not account.host:
        raise ConfigError(f"{key}.host: required")
    if not account.username:
        raise ConfigError(f"{key}.username: required")
    if not account.folder:
        raise ConfigError(f"{key}.folder: required")
    if account.action == "move":
        if not account.processed_folder:
            raise ConfigError(f'{key}.processed_folder: required when action is "move"')
        if account.processed_folder == account.folder:
            raise ConfigError(f"{key}.processed_folder: must differ from folder")
    elif not account.flag:
        raise ConfigError(f'{key}.flag: required when action is "flag"')
    if account.auth == "xoauth2" and not (account.token_file or account.token_command):
        raise ConfigError(f"{key}.token_file: xoauth2 needs token_file or token_command")
    if not 0 <= account.port <= 65535:
        raise ConfigError(f"{key}.port: expected 0..65535, got {account.port}")


def account_key(account: ImapAccount) -> str:
    return account.name or f"{account.username}@{account.host}"


class ImapPoller:
    """Takes in one account's folder; ``run_forever`` is the thread body in the daemon."""

    def __init__(
        self,
        inbox: Inbox,
        factory: sessionmaker[Session],
        settings: Settings,
        index: int,
        *,
        on_accepted: Callable[[Accepted], None] | None = None,
        use_move: bool | None = None,
        owner: str | None = None,
    ) -> None:
        """``use_move``: None uses MOVE when the server offers it; False forces
        COPY + \\Deleted + EXPUNGE (servers without MOVE, and tests). ``owner``: the
        name this poller holds the folder's lease under."""
        self.inbox = inbox
        self.factory = factory
        self.settings = settings
        self.index = index
        self.account: ImapAccount = settings.imap.accounts[index]
        check_account(self.account, index)
        self.key = account_key(self.account)
        self.on_accepted = on_accepted
        self.use_move = use_move
        self.max_bytes = int(settings.storage.max_message_mb * 1024 * 1024)
        self.connected = threading.Event()  # set while a session is logged in
        self.idling = threading.Event()  # set while waiting in IDLE
        self.state = PollerState()
        self._rng = random.Random()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:imap{uuid.uuid4().hex[:6]}"
        # The lease holder while another instance polls this folder (None: we do).
        self.standby_for: str | None = None
        self._holding = False  # in run_forever with the lease: keep renewing it
        self._renewed = 0.0

    # -- connection -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self.account.port:
            return self.account.port
        return 993 if self.account.security == "tls" else 143

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.account.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def connect(self) -> IMAPClient:
        acc = self.account
        context = self._ssl_context() if acc.security != "none" else None
        client = IMAPClient(
            acc.host,
            port=self.port,
            ssl=acc.security == "tls",
            ssl_context=context,
            timeout=acc.timeout_seconds,
        )
        try:
            if acc.security == "starttls":
                client.starttls(context)
            if acc.auth == "xoauth2":
                client.oauth2_login(acc.username, self._token())
            else:
                client.login(acc.username, self._password())
        except BaseException:
            _close_quietly(client)
            raise
        return client

    def _password(self) -> str:
        env = os.environ.get(ENV_PASSWORD.format(index=self.index))
        if env:
            return env
        if self.account.password_file:
            return _first_line(
                Path(self.account.password_file), f"imap.accounts[{self.index}].password_file"
            )
        return self.account.password

    def _token(self) -> str:
        acc = self.account
        if acc.token_command:
            try:
                done = subprocess.run(
                    shlex.split(acc.token_command),
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise ConfigError(
                    f"imap.accounts[{self.index}].token_command: failed: {exc}"
                ) from None
            token = done.stdout.strip()
            if not token:
                raise ConfigError(f"imap.accounts[{self.index}].token_command: printed no token")
            return token
        return _first_line(Path(acc.token_file), f"imap.accounts[{self.index}].token_file")

    # -- one pass over the folder ---------------------------------------------------

    def poll_once(self) -> PollStats:
        """Connect, take in everything pending, log out (tests and one-shot use)."""
        client = self.connect()
        try:
            self.prepare(client)
            return self.sync(client)
        finally:
            _close_quietly(client)

    def prepare(self, client: IMAPClient) -> None:
        """Create the destination folders when missing."""
        acc = self.account
        wanted = {acc.quarantine_folder} if acc.quarantine_folder else set()
        if acc.action == "move":
            wanted.add(acc.processed_folder)
        for folder in sorted(wanted):
            if not client.folder_exists(folder):
                try:
                    client.create_folder(folder)
                    log.info("imap %s: created folder %s", self.key, folder)
                except imaplib.IMAP4.error:
                    if not client.folder_exists(folder):  # not a concurrent create
                        raise

    def sync(self, client: IMAPClient, stop: threading.Event | None = None) -> PollStats:
        """Take in every pending message of the folder, oldest first."""
        acc = self.account
        info = client.select_folder(acc.folder)
        announced = _untagged(client)
        for kind in _NEWS:  # the SELECT's counts: the SEARCH below sees all of that
            announced.pop(kind, None)
        uidvalidity = int(info[b"UIDVALIDITY"])
        self._keep_lease()  # still ours? (after a long IDLE, say, or a stopped process)
        last = self._cursor(uidvalidity)
        stats = PollStats(uidvalidity=uidvalidity, last_uid=last)
        uids = sorted(int(u) for u in client.search(self._criteria(last)))
        if acc.action == "flag":
            uids = [u for u in uids if u > last]  # "UID n:*" always matches the last message
        if not uids:
            return stats
        # In move mode a UID at or below the cursor was taken in already: only its
        # move is missing (e.g. another instance got there first), so skip the fetch.
        taken = [u for u in uids if u <= last]
        if taken:
            self._finish(client, taken, uidvalidity, acc.processed_folder)
        pending = [u for u in uids if u > last]
        sizes = self._sizes(client, pending)
        for batch, oversize in _batches(pending, sizes, self.max_bytes):
            if stop is not None and stop.is_set():
                break
            self._keep_lease()
            if oversize:
                stats.add(self._quarantine(client, batch[0], sizes[batch[0]], uidvalidity))
            else:
                stats.add(self._take(client, batch, sizes, uidvalidity))
        return stats

    def _criteria(self, last: int) -> list[str]:
        acc = self.account
        if acc.action == "move":
            # \Deleted ones were copied already (COPY path interrupted before EXPUNGE)
            # or were deleted by a person: leave them.
            return ["UNDELETED"]
        criteria = ["UID", f"{last + 1}:*"]
        if last == 0:
            # First look at this folder (or a new UIDVALIDITY): a message with our
            # flag was taken in before. After that, the cursor alone decides, so a
            # person reading a message first does not hide it from us.
            criteria += _UNFLAGGED_SEARCH.get(acc.flag.lower(), ["UNKEYWORD", acc.flag])
        return criteria

    def _sizes(self, client: IMAPClient, uids: Sequence[int]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for start in range(0, len(uids), 500):
            chunk = uids[start : start + 500]
            for uid, data in client.fetch(chunk, ["RFC822.SIZE"]).items():
                sizes[int(uid)] = int(data.get(b"RFC822.SIZE", 0))
        return sizes

    def _take(
        self, client: IMAPClient, uids: Sequence[int], sizes: dict[int, int], uidvalidity: int
    ) -> PollStats:
        stats = PollStats(uidvalidity=uidvalidity)
        data = client.fetch(list(uids), ["BODY.PEEK[]"])
        items: list[tuple[int, bytes]] = []
        for uid in uids:
            raw = data.get(uid, {}).get(b"BODY[]")
            if raw is None:  # expunged meanwhile (another instance moved it)
                continue
            items.append((uid, bytes(raw)))
        stats.fetched = len(items)
        if items:
            accepted = self.inbox.accept_many(
                [
                    Incoming(
                        raw,
                        self._source(uidvalidity, uid),
                        self._envelope(uidvalidity, uid, sizes.get(uid, len(raw))),
                    )
                    for uid, raw in items
                ]
            )
            for acc in accepted:
                if acc.created:
                    stats.accepted += 1
                    stats.ids.append(acc.id)
                else:
                    stats.duplicates += 1
                if self.on_accepted is not None:
                    self.on_accepted(acc)
            log.info(
                "imap %s: took in %d message(s) (%d new), UIDs %d-%d",
                self.key,
                len(items),
                stats.accepted,
                items[0][0],
                items[-1][0],
            )
        target = self.account.processed_folder
        stats.done = self._finish(client, list(uids), uidvalidity, target)
        stats.last_uid = max(uids)
        return stats

    def _quarantine(self, client: IMAPClient, uid: int, size: int, uidvalidity: int) -> PollStats:
        """Over the size limit: store its header with the reason, move it aside."""
        acc = self.account
        data = client.fetch([uid], ["BODY.PEEK[HEADER]"])
        header = data.get(uid, {}).get(b"BODY[HEADER]")
        stats = PollStats(uidvalidity=uidvalidity, last_uid=uid)
        if header is None:
            return stats
        where = acc.quarantine_folder or (
            acc.processed_folder if acc.action == "move" else acc.folder
        )
        reason = (
            f"message is {size} bytes, over storage.max_message_mb "
            f"({self.max_bytes} bytes): only its header was stored; the message "
            f"itself is in IMAP folder {where!r} of {self.key}"
        )
        envelope = self._envelope(uidvalidity, uid, size) | {"oversize": True, "stored": "header"}
        accepted = self.inbox.accept(bytes(header), self._source(uidvalidity, uid), envelope)
        self.inbox.quarantine(accepted.id, None, stage="intake", reason=reason, traceback=None)
        log.warning(
            "imap %s: UID %d quarantined as inbound %d: %s", self.key, uid, accepted.id, reason
        )
        stats.fetched = stats.quarantined = 1
        stats.ids.append(accepted.id)
        target = acc.quarantine_folder or acc.processed_folder
        stats.done = self._finish(client, [uid], uidvalidity, target)
        return stats

    def _finish(self, client: IMAPClient, uids: list[int], uidvalidity: int, target: str) -> int:
        """Move or flag messages already stored durably, then advance the cursor."""
        acc = self.account
        if acc.action == "move" or target != acc.processed_folder:
            self._move(client, uids, target)
        else:
            client.add_flags(uids, [acc.flag.encode()], silent=True)
        self._advance(uidvalidity, max(uids))
        return len(uids)

    def _move(self, client: IMAPClient, uids: list[int], folder: str) -> None:
        if self.use_move is not False and client.has_capability("MOVE"):
            client.move(uids, folder)
            return
        client.copy(uids, folder)
        client.add_flags(uids, [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:  # also removes other \Deleted messages: nothing better exists here
            client.expunge()

    def _source(self, uidvalidity: int, uid: int) -> str:
        return f"imap:{self.key}/{self.account.folder};UIDVALIDITY={uidvalidity};UID={uid}"

    def _envelope(self, uidvalidity: int, uid: int, size: int) -> dict[str, Any]:
        return {
            "imap": {
                "account": self.key,
                "folder": self.account.folder,
                "uidvalidity": uidvalidity,
                "uid": uid,
                "size": size,
            }
        }

    # -- cursor ---------------------------------------------------------------------

    def _where(self, uidvalidity: int) -> Any:
        return (
            (ImapCursor.account == self.key)
            & (ImapCursor.folder == self.account.folder)
            & (ImapCursor.uidvalidity == uidvalidity)
        )

    def _cursor(self, uidvalidity: int) -> int:
        with self.factory() as session:
            last = session.scalar(select(ImapCursor.last_uid).where(self._where(uidvalidity)))
        return int(last or 0)

    def _advance(self, uidvalidity: int, uid: int) -> None:
        """last_uid = max(last_uid, uid); safe with several instances on one folder."""
        for _ in range(3):
            try:
                with self.factory() as session, session.begin():
                    result = session.execute(
                        update(ImapCursor)
                        .where(self._where(uidvalidity), ImapCursor.last_uid < uid)
                        .values(last_uid=uid, updated_at=utcnow())
                        .execution_options(synchronize_session=False)
                    )
                    if result.rowcount:  # type: ignore[attr-defined]
                        return
                    exists = session.scalar(select(ImapCursor.id).where(self._where(uidvalidity)))
                    if exists is not None:
                        return  # already at or past uid
                    session.add(
                        ImapCursor(
                            account=self.key,
                            folder=self.account.folder,
                            uidvalidity=uidvalidity,
                            last_uid=uid,
                        )
                    )
                return
            except IntegrityError:
                continue  # created by another instance just now: update it

    # -- the folder lease (several instances) ----------------------------------------

    def _lease_key(self) -> dict[str, str]:
        return {"account": self.key, "folder": self.account.folder}

    def take_lease(self) -> bool:
        """Take or renew this folder's lease; False while another instance holds it."""
        holder: str | None = "another instance"
        stale: str | None = None
        for _ in range(3):
            try:
                with self.factory() as session, session.begin():
                    holder = hold_lease(
                        session,
                        ImapLease,
                        self._lease_key(),
                        owner=self.owner,
                        now=utcnow(),
                        lease_seconds=self.settings.imap.lease_seconds,
                        stale=stale,
                    )
            except IntegrityError:
                continue  # created by another instance just now: look again
            if holder is None or stale is not None or not _dead_here(holder):
                break
            stale = holder  # a daemon of this host that is gone: no need to wait
        self.standby_for = holder
        if holder is None:
            self._renewed = time.monotonic()
        return holder is None

    def release_lease(self) -> None:
        """Clean stop: another instance may take the folder over at once."""
        try:
            with self.factory() as session, session.begin():
                drop_lease(session, ImapLease, self._lease_key(), owner=self.owner)
        except SQLAlchemyError as exc:  # it expires instead
            log.warning("imap %s: could not give up the folder lease: %s", self.key, exc)

    def _keep_lease(self) -> None:
        """While polling: renew the lease every third of its time; FolderTaken if it
        was lost (we were stuck past its expiry and another instance took over)."""
        if not self._holding:
            return
        if time.monotonic() - self._renewed < self.settings.imap.lease_seconds / 3:
            return
        if not self.take_lease():
            raise FolderTaken(self.standby_for)

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        """``stop.wait(seconds)``, renewing the lease meanwhile."""
        end = time.monotonic() + seconds
        step = max(0.05, self.settings.imap.lease_seconds / 3)
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            stop.wait(min(left, step))
            self._keep_lease()

    # -- the daemon loop ------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """Sessions until ``stop``; reconnect with exponential backoff and jitter.

        Any error ends the session and is retried: the network, the server, the
        database (the message stays in the folder meanwhile), or a bug (logged with
        its traceback; a poller thread that died would silently stop the intake).
        """
        attempt = 0
        standing_by = False
        try:
            while not stop.is_set():
                try:
                    if not self.take_lease():
                        if not standing_by:
                            log.info(
                                "imap %s: %s is polled by %s; standing by",
                                self.key,
                                self.account.folder,
                                self.standby_for,
                            )
                            standing_by = True
                        stop.wait(self.settings.imap.lease_seconds / 3)
                        continue
                except SQLAlchemyError as exc:
                    attempt += 1
                    self._pause(stop, attempt, f"database: {_describe(exc)}")
                    continue
                if standing_by:
                    log.info("imap %s: taking %s over", self.key, self.account.folder)
                    standing_by = False
                self._holding = True
                try:
                    attempt = self._run_session(stop, attempt)
                finally:
                    self._holding = False
        finally:
            self.release_lease()
        log.info("imap %s: stopped", self.key)

    def _run_session(self, stop: threading.Event, attempt: int) -> int:
        """One connection while holding the folder's lease; the next attempt count."""
        try:
            client = self.connect()
        except Exception as exc:
            attempt += 1
            self._pause(stop, attempt, f"cannot log in: {_describe(exc)}")
            return attempt
        try:
            log.info(
                "imap %s: connected to %s:%d (%s), watching %s",
                self.key,
                self.account.host,
                self.port,
                self.account.security,
                self.account.folder,
            )
            self.connected.set()
            self.state.retry_at = None
            self.prepare(client)
            self._renewed = 0.0  # a slow login may have used up the lease: renew or yield
            self._keep_lease()
            for _ in self._session(client, stop):
                attempt = 0  # a full pass worked: the next failure starts small
                self.state.last_sync = time.time()
                self.state.last_error = ""
        except FolderTaken as exc:
            log.warning("imap %s: lease lost; %s took the folder over", self.key, exc)
        except TRANSIENT_ERRORS as exc:
            attempt += 1
            self._pause(stop, attempt, _describe(exc))
        except Exception as exc:
            attempt += 1
            log.exception("imap %s: unexpected error", self.key)
            self._pause(stop, attempt, _describe(exc))
        finally:
            self.connected.clear()
            _close_quietly(client)
        return attempt

    def _pause(self, stop: threading.Event, attempt: int, why: str) -> None:
        imap = self.settings.imap
        delay = backoff_delay(
            attempt, imap.reconnect_initial_seconds, imap.reconnect_max_seconds, self._rng
        )
        self.state.errors += 1
        self.state.last_error = why
        self.state.retry_at = time.time() + delay
        log.warning(
            "imap %s: %s; reconnecting in %.1fs (attempt %d)", self.key, why, delay, attempt
        )
        stop.wait(delay)

    def _session(self, client: IMAPClient, stop: threading.Event) -> Iterator[PollStats]:
        """Sync, wait for news (IDLE or the poll interval), repeat until ``stop``."""
        use_idle = self.account.idle and client.has_capability("IDLE")
        while not stop.is_set():
            yield self.sync(client, stop)
            if stop.is_set():
                return
            if use_idle:
                self._idle(client, stop)
            else:
                self._wait(stop, self.account.poll_interval_seconds)

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """Return when the server reports new mail, on ``stop``, or to re-sync."""
        renew = time.monotonic() + min(IDLE_RENEW_SECONDS, self.account.poll_interval_seconds)
        # Mail that arrived while we were busy is announced ("* 5 EXISTS") along with
        # the answers to our own commands, where imaplib files it away and idle_check()
        # never looks. sync() forgets them after its SELECT; any seen since are news.
        pending = _untagged(client)
        if any(kind in pending for kind in _NEWS):
            return
        client.idle()
        self.idling.set()
        try:
            if any(kind in pending for kind in _NEWS):  # announced before "+ idling"
                return
            while not stop.is_set() and time.monotonic() < renew:
                self._keep_lease()
                started = time.monotonic()
                responses = client.idle_check(timeout=STOP_CHECK_SECONDS)
                if any(_is_news(r) for r in responses):
                    return
                if not responses and time.monotonic() - started < STOP_CHECK_SECONDS / 2:
                    # Readable but no response: imapclient swallows EOF here. End the
                    # IDLE; a dead connection then raises in idle_done().
                    return
        finally:
            self.idling.clear()
            client.idle_done()


_NEWS = ("EXISTS",)  # "* 0 RECENT" follows our own MOVEs: no news


def _untagged(client: IMAPClient) -> dict[str, Any]:
    """imaplib's store of untagged responses not yet consumed (empty if it has none)."""
    store = getattr(getattr(client, "_imap", None), "untagged_responses", None)
    return store if isinstance(store, dict) else {}


def _is_news(response: Any) -> bool:
    return (
        isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")
    )


def _batches(
    uids: Sequence[int], sizes: dict[int, int], max_bytes: int
) -> Iterator[tuple[list[int], bool]]:
    """Group UIDs for FETCH; an oversize message is a batch of its own (True)."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if max_bytes and size > max_bytes:
            if batch:
                yield batch, False
                batch, total = [], 0
            yield [uid], True
            continue
        if batch and (len(batch) >= BATCH_MESSAGES or total + size > BATCH_BYTES):
            yield batch, False
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch, False


def _dead_here(owner: str) -> bool:
    """True when ``owner`` ("host:pid:...") names a process of this host that is gone
    (a daemon killed and restarted here need not wait for its own lease to expire).
    Our own pid under another name is an earlier daemon in this pid (a container's
    pid 1). A reused pid looks alive: then the lease expires as usual."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


def _first_line(path: Path, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:
        with contextlib.suppress(Exception):
            client.shutdown()
