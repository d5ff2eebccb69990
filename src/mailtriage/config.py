"""TOML config -> frozen, typed settings.

Every section is a frozen dataclass; the loader walks the dataclass fields, so a key
that is not a field is an error and a value of the wrong type names its key:
``storage.max_message_mb: expected a number, got "big"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

ENV_CONFIG = "MAILTRIAGE_CONFIG"
ENV_DATABASE_URL = "MAILTRIAGE_DATABASE_URL"
ENV_STORAGE_DIR = "MAILTRIAGE_STORAGE_DIR"
MIN_SECRET_LENGTH = 16


class ConfigError(Exception):
    """A config file or value is wrong; the message names the key."""


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means SQLite in storage.dir (mailtriage.db).
    url: str = ""
    auto_migrate: bool = True
    echo: bool = False


@dataclass(frozen=True)
class StorageSettings:
    dir: str = "var"
    max_message_mb: float = 64.0
    max_attachment_mb: float = 48.0
    # fsync raw blobs before acknowledging; only tests and benchmarks turn this off.
    fsync: bool = True


@dataclass(frozen=True)
class MailSettings:
    support_address: str = "support@dataandmore.com"
    # Message-ID domains of the mail mailtriage sends (the first one is used for new
    # Message-IDs). Mail carrying such a Message-ID is our own and never a ticket. A
    # subdomain of its own, so a colleague's mail client that writes
    # "@dataandmore.com" Message-IDs is not mistaken for us.
    own_domains: tuple[str, ...] = ("mailtriage.dataandmore.com",)
    ticket_prefix: str = "DM"
    # Address domains that are not an organisation (free mail providers).
    freemail_domains: tuple[str, ...] = (
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "t-online.de",
        "aol.com",
        "mail.de",
        "posteo.de",
        "proton.me",
        "protonmail.com",
        "freenet.de",
    )


@dataclass(frozen=True)
class WorkerSettings:
    enabled: bool = True
    # Parse in this many processes (0 = one per CPU); 1 parses in the worker itself.
    processes: int = 0
    batch_size: int = 32
    lease_seconds: float = 300.0
    max_attempts: int = 5
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 3600.0
    poll_interval_seconds: float = 0.5


@dataclass(frozen=True)
class TriageSettings:
    # Empty: the packaged default rules (src/mailtriage/rules/default.toml).
    rules_file: str = ""
    default_language: str = "de"
    # The category model `mailtriage train` writes (extra [ml]); empty:
    # <storage.dir>/model/category.pkl. Used where the rules are weak, when it exists.
    model_file: str = ""
    use_model: bool = True
    # OCR of screenshots with Tesseract (extra [ocr]); missing Tesseract: one log line.
    ocr: bool = True
    ocr_languages: str = "deu+eng"


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP (or LMTP) listener of `mailtriage run`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    # 0 picks a free port (it is logged); tests use that.
    port: int = 2525
    # Accepted recipients: full addresses (plus-addressed variants match too:
    # support+x@dataandmore.com) or "@domain" for every address of a domain.
    recipients: tuple[str, ...] = ("support@dataandmore.com",)
    # Name in the greeting and the EHLO answer; empty: this machine's FQDN.
    hostname: str = ""
    # Speak LMTP (LHLO, one reply per recipient) for delivery from Postfix/Dovecot.
    lmtp: bool = False
    max_connections: int = 100
    max_recipients: int = 100
    # Close a connection idle for this long.
    timeout_seconds: float = 300.0
    # Threads that run the durable accept (fsync + commit) off the event loop.
    accept_threads: int = 8
    # STARTTLS: both files set = offered.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    require_starttls: bool = False


@dataclass(frozen=True)
class ImapAccount:
    """One mailbox folder polled over IMAP."""

    # Names the account in logs and in the IMAP cursor; empty: "username@host".
    name: str = ""
    host: str = ""
    # 0: 993 for security "tls", else 143.
    port: int = 0
    security: Literal["none", "starttls", "tls"] = "tls"
    # Verify the server certificate (turn off only for a self-signed test server).
    tls_verify: bool = True
    username: str = ""
    auth: Literal["password", "xoauth2"] = "password"
    # The password: $MAILTRIAGE_IMAP_PASSWORD_<N> (N = the account's index, from 0)
    # wins over password_file, which wins over password.
    password: str = ""
    password_file: str = ""
    # auth = "xoauth2": the access token from a file or from a command's output
    # (run without a shell each time we log in, so it may refresh the token).
    token_file: str = ""
    token_command: str = ""
    folder: str = "INBOX"
    # After the durable accept: "move" to processed_folder, or "flag" in place.
    action: Literal["move", "flag"] = "move"
    processed_folder: str = "Processed"
    flag: str = "\\Seen"
    # Where oversize messages go (quarantined with a reason); empty: processed_folder.
    quarantine_folder: str = ""
    # Wait for new mail with IDLE when the server supports it, else poll.
    idle: bool = True
    poll_interval_seconds: float = 60.0
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class ImapSettings:
    enabled: bool = False
    accounts: tuple[ImapAccount, ...] = ()
    # Reconnect after a network error: exponential backoff with jitter.
    reconnect_initial_seconds: float = 1.0
    reconnect_max_seconds: float = 300.0
    # Several instances: one polls a folder at a time, renewing its lease; another takes
    # the folder over this long after the holder died.
    lease_seconds: float = 60.0


@dataclass(frozen=True)
class ServiceSettings:
    # On SIGTERM/SIGINT: stop accepting, finish or release in-flight work, and exit
    # within this many seconds.
    shutdown_grace_seconds: float = 30.0
    # Run the worker (and its parser processes) at this lower CPU priority (Linux nice,
    # 0-19), so that under load accepting mail (senders wait for our 250) goes first.
    worker_nice: int = 5


@dataclass(frozen=True)
class OutboundSettings:
    """Mail we send (acknowledgements): the outbox sender and its relay."""

    # Queue an acknowledgement for every new ticket.
    acknowledge: bool = True
    # Run the outbox sender in `mailtriage run` (a scheduler job).
    sender_enabled: bool = True
    from_name: str = "Data & More Support"
    # MAIL FROM of our mail; empty: mail.support_address (bounces come back to intake).
    envelope_sender: str = ""
    # Reply-To: support+dm-000123@... (plus address of the ticket); false: the bare address.
    reply_to_plus_address: bool = True
    # The SMTP relay. Empty relay_host: no relay, mail goes to the Maildir below.
    relay_host: str = ""
    # 0: 465 for relay_security "tls", 587 for "starttls", 25 otherwise.
    relay_port: int = 0
    relay_security: Literal["auto", "none", "starttls", "tls"] = "auto"
    relay_tls_verify: bool = True
    relay_username: str = ""
    relay_password: str = ""
    relay_password_file: str = ""
    relay_timeout_seconds: float = 30.0
    # Without a relay: a Maildir; empty: <storage.dir>/outbox-maildir.
    maildir: str = ""
    # Templates here override the shipped ones (same names, e.g. de/ack.txt).
    templates_dir: str = ""
    poll_interval_seconds: float = 2.0
    batch_size: int = 20
    lease_seconds: float = 120.0
    # 4xx answers and network errors: retry after retry_base_seconds * 2^(n-1), at most
    # retry_max_seconds, until give_up_after_hours after the mail was queued.
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 1800.0
    give_up_after_hours: float = 24.0
    # Rate limits: at most N mails per window to one ticket and to one address.
    ticket_limit: int = 10
    ticket_window_minutes: float = 10.0
    address_limit: int = 30
    address_window_minutes: float = 60.0
    # A permanent bounce of our mail stops mail to that address for this many days.
    suppress_days: float = 30.0


@dataclass(frozen=True)
class SlaSettings:
    # The answer promised to every customer, in hours after the ticket was created.
    response_hours: float = 24.0
    # Time zone for due times when the customer's Date header has no usable offset.
    timezone: str = "Europe/Berlin"


@dataclass(frozen=True)
class KbSettings:
    # Knowledge-base index (TOML); empty: acknowledgements point to no articles.
    index_file: str = ""
    max_articles: int = 3
    # An article needs at least this score to be suggested (see kb/index.example.toml).
    min_score: float = 3.0


_ADDRESS_RE = re.compile(
    r"[^@\s<>\"(),;:]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}"
)


@dataclass(frozen=True)
class AgentSettings:
    """One agent (``[[agents]]``): notified of new tickets of their level, may answer
    and give commands by email (when the mail is authenticated, see [security])."""

    address: str = ""
    name: str = ""
    level: Literal["L1", "L2", "L3"] = "L1"

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not _ADDRESS_RE.fullmatch(self.address):
            out.append(
                ("address", f"expected an address like anna@example.com, got {_show(self.address)}")
            )
        if not self.name.strip():
            out.append(("name", "required (shown to customers as the one who answers)"))
        return out


@dataclass(frozen=True)
class SecuritySettings:
    # The HMAC secret of reply tokens: secret, else the first line of secret_file, else
    # one generated on first use in <storage.dir>/secret (mode 0600).
    secret: str = ""
    secret_file: str = ""
    # Take a mail's From address as proof that an agent wrote it (small setups only).
    trust_agents_by_address: bool = False
    # authserv-ids of our receiving server's Authentication-Results header.
    authserv_ids: tuple[str, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.secret and self.secret_file:
            out.append(("secret", "set either secret or secret_file, not both"))
        if self.secret and len(self.secret) < MIN_SECRET_LENGTH:
            out.append(("secret", f"at least {MIN_SECRET_LENGTH} characters"))
        for i, authserv_id in enumerate(self.authserv_ids):
            if not authserv_id.strip() or any(c.isspace() or c in ";()" for c in authserv_id):
                out.append((f"authserv_ids[{i}]", f"not an authserv-id: {_show(authserv_id)}"))
        return out


@dataclass(frozen=True)
class ConversationSettings:
    # A customer's reply reopens a resolved ticket within this many days; later (or
    # after closed) it opens a new ticket linked to the old one.
    reopen_days: float = 14.0
    # Anyone from the requester's organisation (mail domain, not a freemail domain)
    # counts as a participant of the requester's tickets.
    organisation_participants: bool = False
    # At most this many new tickets per sender address within the window (0: no cap).
    # Over it, the mail is kept as an article on that address's latest ticket, without
    # an acknowledgement (a mail robot that answers every mail cannot open ticket after
    # ticket, nor get answer after answer).
    new_tickets_per_address: int = 20
    new_tickets_window_minutes: float = 60.0

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.reopen_days < 0:
            out.append(("reopen_days", f"expected a number >= 0, got {_show(self.reopen_days)}"))
        if self.new_tickets_per_address < 0:
            out.append(
                (
                    "new_tickets_per_address",
                    f"expected a number >= 0, got {_show(self.new_tickets_per_address)}",
                )
            )
        if self.new_tickets_window_minutes <= 0:
            out.append(
                (
                    "new_tickets_window_minutes",
                    f"expected a number > 0, got {_show(self.new_tickets_window_minutes)}",
                )
            )
        return out


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    mail: MailSettings = field(default_factory=MailSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    triage: TriageSettings = field(default_factory=TriageSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    kb: KbSettings = field(default_factory=KbSettings)
    agents: tuple[AgentSettings, ...] = ()
    security: SecuritySettings = field(default_factory=SecuritySettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    source: str = ""  # the file these came from ("" for defaults)

    def problems(self) -> list[tuple[str, str]]:
        out = []
        seen: dict[str, int] = {}
        for i, agent in enumerate(self.agents):
            address = agent.address.lower()
            if address in seen:
                out.append(
                    (f"agents[{i}].address", f"{agent.address} is agents[{seen[address]}] already")
                )
            seen.setdefault(address, i)
            local, _, domain = address.partition("@")
            if f"{local.split('+')[0]}@{domain}" == self.mail.support_address.lower():
                out.append((f"agents[{i}].address", "is mail.support_address (our own address)"))
        return out

    @property
    def storage_dir(self) -> Path:
        return Path(self.storage.dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.storage_dir / 'mailtriage.db').as_posix()}"


T = TypeVar("T")


def read_toml(file: Path, error: type[Exception]) -> dict[str, Any]:
    """A TOML file as a dict; any problem is ``error`` naming the file, one line."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{file}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{file}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise error(f"{file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{file}: not UTF-8 text: {exc}") from None


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the config file (argument, else $MAILTRIAGE_CONFIG, else defaults) + env."""
    path = path or os.environ.get(ENV_CONFIG) or None
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"config file not found: {file}")
        data = read_toml(file, ConfigError)
    settings = settings_from_dict(data)
    settings = dataclasses.replace(settings, source=str(path or ""))
    return apply_env(settings, os.environ)


def settings_from_dict(data: dict[str, Any]) -> Settings:
    data = {k: v for k, v in data.items()}
    return _build(Settings, data, prefix="", skip={"source"})


def apply_env(settings: Settings, env: typing.Mapping[str, str]) -> Settings:
    if env.get(ENV_DATABASE_URL):
        settings = dataclasses.replace(
            settings, database=dataclasses.replace(settings.database, url=env[ENV_DATABASE_URL])
        )
    if env.get(ENV_STORAGE_DIR):
        settings = dataclasses.replace(
            settings, storage=dataclasses.replace(settings.storage, dir=env[ENV_STORAGE_DIR])
        )
    return settings


def _build(
    cls: type[T], data: Any, prefix: str, skip: frozenset[str] | set[str] = frozenset()
) -> T:
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - (set(fields) - set(skip)))
    if unknown:
        known = ", ".join(sorted(set(fields) - set(skip)))
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known here: {known})")
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, f"{prefix}{name}")
    built = cls(**values)
    # A section may check what types alone cannot: problems() -> [(key, message)].
    problems = built.problems() if hasattr(built, "problems") else []
    if problems:
        key, message = problems[0]
        raise ConfigError(f"{prefix}{key}: {message}")
    return built


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _build(hint, value, prefix=f"{key}.")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            shown = ", ".join(json.dumps(c) for c in choices)
            raise ConfigError(f"{key}: expected one of {shown}, got {_show(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(args[0], value, key)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # pragma: no cover


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, default=str)
