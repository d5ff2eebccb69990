"""`mailtriage doctor`: is this installation able to run? One check per concern.

Each check talks to the real thing (the database, the blob directory, the SMTP port,
each IMAP account, the relay, the templates, the clock) and says in one line what it
found, with a hint on how to fix it when it is wrong. Nothing is changed: no
migration, no database file made, no mail sent, no IMAP message touched, no secret
generated (only the storage directories are created, as the first start would).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from mailtriage.config import ConfigError, Settings, load_settings

Status = Literal["ok", "warn", "fail", "skip"]
MB = 1024 * 1024
# Free space below this fails (a message of the maximum size could not be stored twice).
MIN_FREE_MESSAGES = 4
# Free space below this warns.
LOW_FREE_BYTES = 1024 * MB
MAX_CLOCK_SKEW = timedelta(seconds=5)
# Dates before this mean the clock was never set (no NTP, a dead RTC battery).
EARLIEST_SANE = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks]}


def run_doctor(config: str | None) -> Report:
    """Load the config (a broken one is the first failed check) and check the rest."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        where = config or os.environ.get("MAILTRIAGE_CONFIG") or "defaults"
        return Report(
            (
                Check("config", "fail", str(exc), f"fix {where}; see config.example.toml"),
                Check("the rest", "skip", "not checked: the config does not load"),
            )
        )
    checks = [_config_extras(settings)]
    for check in (
        check_database,
        check_blobs,
        check_secret,
        check_smtp_bind,
        check_imap,
        check_relay,
        check_templates,
        check_clock,
    ):
        checks.extend(_guarded(check, settings))
    return Report(tuple(checks))


def _guarded(check: Callable[[Settings], Iterator[Check]], settings: Settings) -> list[Check]:
    """A check that raises is a failed check (one line), never a traceback."""
    name = check.__name__.removeprefix("check_")
    try:
        return list(check(settings))
    except ConfigError as exc:
        return [Check(name, "fail", str(exc), "fix the config key named")]
    except Exception as exc:
        return [Check(name, "fail", f"{type(exc).__name__}: {_one_line(exc)}")]


# -- config ---------------------------------------------------------------------------


def _config_extras(settings: Settings) -> Check:
    """What the loader leaves to the parts that use a setting: recipients, TLS files,
    IMAP accounts, the relay password file."""
    from mailtriage.intake.imap import check_account
    from mailtriage.intake.smtp import RecipientPolicy, _tls_context
    from mailtriage.outbound.mailer import RelayConfig

    source = settings.source or "defaults (no config file)"
    try:
        if settings.smtp.enabled:
            RecipientPolicy.from_config(settings.smtp.recipients)
            _tls_context(settings.smtp)
        if settings.imap.enabled:
            if not settings.imap.accounts:
                raise ConfigError("imap.accounts: imap.enabled but no [[imap.accounts]]")
            for i, account in enumerate(settings.imap.accounts):
                check_account(account, i)
        if settings.outbound.relay_host:
            RelayConfig.from_settings(settings.outbound)
    except ConfigError as exc:
        return Check("config", "fail", f"{source}: {exc}", "fix the key named")
    return Check("config", "ok", f"{source} loads")


# -- database -------------------------------------------------------------------------


def check_database(settings: Settings) -> Iterator[Check]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from mailtriage.store import db

    url = settings.database_url
    with contextlib.suppress(Exception):  # a bad URL: make_engine says so below
        parsed = make_url(url)
        file = parsed.database or ""
        sqlite = parsed.get_backend_name() == "sqlite" and file not in ("", ":memory:")
        if sqlite and not Path(file).exists():
            yield Check(
                "database",
                "warn" if settings.database.auto_migrate else "fail",
                f"SQLite file {file} does not exist yet",
                "it is made at the first start (database.auto_migrate)"
                if settings.database.auto_migrate
                else "run `mailtriage db upgrade`",
            )
            return
    try:
        engine = db.make_engine(url, durable=False)
    except db.DatabaseError as exc:
        yield Check("database", "fail", str(exc), "set database.url to a SQLAlchemy URL")
        return
    shown = engine.url.render_as_string(hide_password=True)
    try:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except DBAPIError as exc:
            yield Check(
                "database",
                "fail",
                f"{shown}: unreachable: {_one_line(getattr(exc, 'orig', None) or exc)}",
                "start the database or fix database.url / $MAILTRIAGE_DATABASE_URL",
            )
            return
        yield Check("database", "ok", f"{shown} reachable")
        if db.schema_is_current(engine):
            yield Check("migrations", "ok", f"schema at head {sorted(db.script_heads())[0]}")
            return
        current, head = db.current_revision(engine), db.head_revision(engine)
        if settings.database.auto_migrate:
            yield Check(
                "migrations",
                "warn",
                f"schema at {current or 'nothing'}, code expects {head}; "
                "applied at the next start (database.auto_migrate)",
                "or now: mailtriage db upgrade",
            )
        else:
            yield Check(
                "migrations",
                "fail",
                f"schema at {current or 'nothing'}, code expects {head}",
                "run `mailtriage db upgrade` (database.auto_migrate is false)",
            )
    finally:
        engine.dispose()


# -- blobs ----------------------------------------------------------------------------


def check_blobs(settings: Settings) -> Iterator[Check]:
    """The blob directory exists (or can be made), we can write and remove a file in
    it, it is not open to other users (support mail is personal data), and the disk
    has room."""
    root = settings.storage_dir / "blobs"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".doctor-{os.getpid()}"
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        yield Check(
            "blobs",
            "fail",
            f"{root}: cannot write: {exc.strerror or exc}",
            f"create {root} writable by user {_user()} (or set storage.dir)",
        )
        return
    mode = stat.S_IMODE(settings.storage_dir.stat().st_mode)
    if mode & 0o007:
        yield Check(
            "blobs",
            "warn",
            f"{settings.storage_dir} is open to other users (mode {mode:03o})",
            f"chmod o-rwx {settings.storage_dir} (raw mail is personal data)",
        )
    else:
        yield Check("blobs", "ok", f"{root} writable (mode {mode:03o})")
    usage = shutil.disk_usage(root)
    need = int(settings.storage.max_message_mb * MB * MIN_FREE_MESSAGES)
    free = f"{usage.free / MB / 1024:.1f} GiB free of {usage.total / MB / 1024:.1f} GiB"
    if usage.free < need:
        yield Check(
            "disk",
            "fail",
            f"{free} under {root}: less than {MIN_FREE_MESSAGES} messages of "
            f"storage.max_message_mb",
            "free space (mailtriage purge, old logs) or move storage.dir",
        )
    elif usage.free < LOW_FREE_BYTES or usage.free < usage.total * 0.05:
        yield Check("disk", "warn", f"{free} under {root}", "free space soon")
    else:
        yield Check("disk", "ok", free)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover
        return str(os.geteuid())


# -- secret ---------------------------------------------------------------------------


def check_secret(settings: Settings) -> Iterator[Check]:
    """The reply-token secret: readable, private, and shared where instances share a
    database (without it a reply to one instance's mail fails its token on another)."""
    from mailtriage.server_secret import SECRET_FILE_NAME, read_secret_file

    security = settings.security
    if security.secret:
        yield Check("secret", "ok", "security.secret is set")
        return
    if security.secret_file:
        path = Path(security.secret_file)
        read_secret_file(path, "security.secret_file")  # a ConfigError names the key
        yield from _private(path, "security.secret_file")
        return
    path = settings.storage_dir / SECRET_FILE_NAME
    shared_db = not settings.database_url.startswith("sqlite")
    if not path.exists():
        yield Check(
            "secret",
            "warn" if shared_db else "ok",
            f"{path} is generated at the first start",
            "several instances on one database need one secret: set security.secret_file"
            if shared_db
            else "",
        )
        return
    read_secret_file(path, f"security.secret (generated file {path})")
    yield from _private(path, "the generated secret")


def _private(path: Path, what: str) -> Iterator[Check]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        yield Check(
            "secret",
            "fail",
            f"{what} {path} is readable by others (mode {mode:03o})",
            f"chmod 600 {path}",
        )
    else:
        yield Check("secret", "ok", f"{what} {path} readable, mode {mode:03o}")


# -- SMTP -----------------------------------------------------------------------------


def check_smtp_bind(settings: Settings) -> Iterator[Check]:
    """Can `mailtriage run` listen on smtp.host:smtp.port, or does it already?"""
    smtp = settings.smtp
    if not smtp.enabled:
        yield Check("smtp", "skip", "smtp.enabled = false")
        return
    if smtp.port == 0:
        yield Check("smtp", "ok", f"{smtp.host}: port 0, a free port is picked at start")
        return
    where = f"{smtp.host}:{smtp.port}"
    try:
        infos = socket.getaddrinfo(smtp.host, smtp.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        yield Check("smtp", "fail", f"{where}: {exc.strerror}", "set smtp.host to an address")
        return
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the listener does
        try:
            sock.bind(address)
        except OSError as exc:
            bind_error = exc
        else:
            yield Check("smtp", "ok", f"{where} free to listen on")
            return
    if bind_error.errno == errno.EACCES:
        yield Check(
            "smtp",
            "fail",
            f"{where}: permission denied",
            "ports below 1024 need CAP_NET_BIND_SERVICE (or listen on 2525 behind Postfix)",
        )
        return
    if bind_error.errno == errno.EADDRNOTAVAIL:
        yield Check("smtp", "fail", f"{where}: no such address here", "fix smtp.host")
        return
    greeting = _greeting(smtp.host, smtp.port)
    if b"mailtriage" in greeting:
        yield Check("smtp", "ok", f"{where}: mailtriage is listening there already")
    else:
        shown = greeting.decode("utf-8", "replace").strip() or "no greeting"
        yield Check(
            "smtp",
            "fail",
            f"{where}: in use by another program ({shown[:60]})",
            f"stop it or choose another smtp.port (ss -ltnp 'sport = :{smtp.port}')",
        )


def _greeting(host: str, port: int) -> bytes:
    try:
        with socket.create_connection((host, port), timeout=3) as conn:
            conn.settimeout(3)
            data = conn.recv(512)
            with contextlib.suppress(OSError):
                conn.sendall(b"QUIT\r\n")
            return data
    except OSError:
        return b""


# -- IMAP -----------------------------------------------------------------------------


def check_imap(settings: Settings) -> Iterator[Check]:
    """Log in to each account and look at its folders (read-only)."""
    import imaplib

    from mailtriage.intake.imap import ImapPoller, account_key

    if not settings.imap.enabled:
        yield Check("imap", "skip", "imap.enabled = false")
        return
    for i, account in enumerate(settings.imap.accounts):
        name = f"imap[{i}]"
        key = f"imap.accounts[{i}]"
        # Only its account, port and credentials are used: no inbox, no database.
        poller = ImapPoller(cast(Any, None), cast(Any, None), settings, i)
        where = f"{account_key(account)} ({account.host}:{poller.port}, {account.security})"
        try:
            client = poller.connect()
        except imaplib.IMAP4.error as exc:
            yield Check(
                name,
                "fail",
                f"{where}: login failed: {_one_line(exc)}",
                f"check {key}.username and the password ({key}.password, "
                f"password_file or $MAILTRIAGE_IMAP_PASSWORD_{i})",
            )
            continue
        except OSError as exc:
            yield Check(
                name,
                "fail",
                f"{where}: cannot connect: {_one_line(exc)}",
                f"check {key}.host, port and security (tls_verify for a self-signed server)",
            )
            continue
        try:
            if not client.folder_exists(account.folder):
                yield Check(
                    name,
                    "fail",
                    f"{where}: logged in, but folder {account.folder!r} does not exist",
                    f"fix {key}.folder (folders: {', '.join(_folders(client))[:200]})",
                )
                continue
            count = client.select_folder(account.folder, readonly=True).get(b"EXISTS", 0)
            missing = [
                f
                for f in (
                    account.processed_folder if account.action == "move" else "",
                    account.quarantine_folder,
                )
                if f and not client.folder_exists(f)
            ]
            later = f"; {', '.join(missing)} created at the first poll" if missing else ""
            yield Check(
                name, "ok", f"{where}: logged in, {account.folder} has {count} messages{later}"
            )
        finally:
            with contextlib.suppress(Exception):
                client.logout()


def _folders(client: Any) -> list[str]:
    return [str(f[2]) for f in client.list_folders()]


# -- relay ----------------------------------------------------------------------------


def check_relay(settings: Settings) -> Iterator[Check]:
    from mailtriage.outbound.mailer import (
        DeliveryError,
        RelayConfig,
        RelayMailer,
        maildir_path,
    )

    o = settings.outbound
    if not o.relay_host.strip():
        path = Path(maildir_path(settings))
        try:
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            yield Check(
                "relay",
                "fail",
                f"no relay; Maildir {path}: {exc.strerror or exc}",
                "make it writable, or set outbound.maildir / outbound.relay_host",
            )
            return
        yield Check(
            "relay",
            "warn" if o.sender_enabled else "ok",
            f"no relay: outgoing mail is written to the Maildir {path}",
            "set outbound.relay_host to send mail to customers" if o.sender_enabled else "",
        )
        return
    mailer = RelayMailer(RelayConfig.from_settings(o))
    try:
        said = mailer.check()
    except DeliveryError as exc:
        yield Check(
            "relay",
            "fail",
            f"{mailer.via}: {exc.reason}",
            "check outbound.relay_host, relay_port, relay_security and the login",
        )
        return
    yield Check("relay", "ok", f"{mailer.via}: {said}")


# -- templates ------------------------------------------------------------------------


def check_templates(settings: Settings) -> Iterator[Check]:
    """Render an acknowledgement in every language we have one for, as the sender
    does (strict: a variable a template names that does not exist fails)."""
    from mailtriage.outbound.ack import ACK, MailContext, outbound_policy
    from mailtriage.outbound.render import RenderError, Templates

    try:
        templates = Templates(settings.outbound.templates_dir or None)
    except RenderError as exc:
        yield Check("templates", "fail", str(exc), "fix outbound.templates_dir")
        return
    # A stand-in secret: the doctor must not generate the real one.
    outbound_policy(settings, secret=b"doctor-does-not-sign-anything")
    languages = templates.languages(ACK)
    if settings.triage.default_language not in languages:
        yield Check(
            "templates",
            "fail",
            f"no complete {ACK} templates for triage.default_language "
            f"{settings.triage.default_language!r} (have: {', '.join(languages) or 'none'})",
            "add <lang>/ack.subject.txt, ack.txt and ack.html to outbound.templates_dir",
        )
        return
    now = datetime.now(UTC)
    for language in languages:
        ctx = MailContext(
            reference=f"{settings.mail.ticket_prefix}-000123",
            to_address="erika@example.org",
            to_name="Erika Muster",
            language=language,
            subject="Drucker druckt nicht",
            category="general",
            created_at=now.isoformat(),
            due_at=(now + timedelta(hours=settings.sla.response_hours)).isoformat(),
            timezone=settings.sla.timezone,
            response_hours=settings.sla.response_hours,
            articles=({"title": "Example", "url": "https://kb.example/1"},),
        )
        support = settings.mail.support_address
        try:
            templates.render(
                ACK, language, ctx.variables(support_address=support, reply_address=support)
            )
        except RenderError as exc:
            yield Check(
                "templates",
                "fail",
                f"{language}: {exc}",
                "fix the template (`mailtriage outbox show ID` shows a queued one)",
            )
            return
    where = settings.outbound.templates_dir or "shipped templates"
    yield Check("templates", "ok", f"{ACK} renders in {', '.join(languages)} ({where})")


# -- clock ----------------------------------------------------------------------------


def check_clock(settings: Settings) -> Iterator[Check]:
    """Time zones are there (tzdata), the clock is set, and it agrees with the
    database's (SLA due times and leases compare the two)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(settings.sla.timezone)
        ZoneInfo("America/New_York")
    except ZoneInfoNotFoundError as exc:
        yield Check(
            "timezone",
            "fail",
            f"time zone data missing: {_one_line(exc)}",
            "install tzdata (apt-get install tzdata, or pip install tzdata)",
        )
        return
    now = datetime.now(UTC)
    local = now.astimezone(zone)
    yield Check(
        "timezone", "ok", f"{settings.sla.timezone}: {local:%Y-%m-%d %H:%M %Z} (UTC{local:%z})"
    )
    if now < EARLIEST_SANE:
        yield Check(
            "clock", "fail", f"the clock says {now:%Y-%m-%d %H:%M} UTC", "set the clock (NTP)"
        )
        return
    skew = _database_skew(settings)
    if skew is None:
        yield Check("clock", "ok", f"{now:%Y-%m-%d %H:%M:%S} UTC")
    elif abs(skew) > MAX_CLOCK_SKEW:
        yield Check(
            "clock",
            "fail",
            f"this machine and the database differ by {skew.total_seconds():+.1f}s",
            "run NTP (chrony, systemd-timesyncd) on both",
        )
    else:
        yield Check(
            "clock",
            "ok",
            f"{now:%Y-%m-%d %H:%M:%S} UTC, database within {abs(skew.total_seconds()):.1f}s",
        )


def _database_skew(settings: Settings) -> timedelta | None:
    """Database clock minus ours (PostgreSQL); None where the database is this process
    (SQLite) or cannot be asked."""
    from sqlalchemy.exc import DBAPIError

    from mailtriage.store import db

    if settings.database_url.startswith("sqlite"):
        return None
    engine = db.make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            before = time.time()
            theirs = conn.exec_driver_sql("SELECT now()").scalar_one()
            after = time.time()
        ours = datetime.fromtimestamp((before + after) / 2, UTC)
        return cast(datetime, theirs).astimezone(UTC) - ours
    except DBAPIError:
        return None
    finally:
        engine.dispose()


def _one_line(exc: object) -> str:
    text = str(exc).strip()
    return " ".join(text.split())[:300] or type(exc).__name__
