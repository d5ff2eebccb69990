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
from typing import Annotated, Any, Literal, TypeVar

ENV_CONFIG = "MAILTRIAGE_CONFIG"
ENV_DATABASE_URL = "MAILTRIAGE_DATABASE_URL"
ENV_STORAGE_DIR = "MAILTRIAGE_STORAGE_DIR"
MIN_SECRET_LENGTH = 16


class ConfigError(Exception):
    """A config file or value is wrong; the message names the key."""


@dataclass(frozen=True)
class Range:
    """A bound on a number setting, declared with the field:
    ``port: Annotated[int, Range(1, 65535)]``; the loader checks it."""

    ge: float | None = None
    le: float | None = None
    gt: float | None = None

    def problem(self, value: Any) -> str | None:
        if (
            (self.ge is None or value >= self.ge)
            and (self.le is None or value <= self.le)
            and (self.gt is None or value > self.gt)
        ):
            return None
        kind = "an integer" if isinstance(value, int) else "a number"
        if self.ge is not None and self.le is not None:
            wanted = f"{kind} in {_num(self.ge)}..{_num(self.le)}"
        elif self.gt is not None:
            wanted = f"{kind} > {_num(self.gt)}"
        elif self.ge is not None:
            wanted = f"{kind} >= {_num(self.ge)}"
        else:
            wanted = f"{kind} <= {_num(self.le or 0)}"
        return f"expected {wanted}, got {_show(value)}"


@dataclass(frozen=True)
class Choice:
    """One of a few strings, case-insensitive (a Literal is exact)."""

    choices: tuple[str, ...]

    def problem(self, value: Any) -> str | None:
        if value.upper() in (c.upper() for c in self.choices):
            return None
        shown = ", ".join(json.dumps(c) for c in self.choices)
        return f"expected one of {shown}, got {_show(value)}"


# The constrained kinds of setting, named once.
Port = Annotated[int, Range(1, 65535)]
PortOrDefault = Annotated[int, Range(0, 65535)]  # 0: the protocol's port (or any free one)
Count = Annotated[int, Range(ge=1)]
CountOrZero = Annotated[int, Range(ge=0)]
Seconds = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Positive = Annotated[float, Range(gt=0)]
Fraction = Annotated[float, Range(0, 1)]  # shares, thresholds, confidences
# The languages we write mail in (templates/<lang>/).
Language = Literal["de", "en"]


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means SQLite in storage.dir (mailtriage.db).
    url: str = ""
    auto_migrate: bool = True
    echo: bool = False


@dataclass(frozen=True)
class StorageSettings:
    dir: str = "var"
    max_message_mb: Positive = 64.0
    max_attachment_mb: Positive = 48.0
    # fsync raw blobs before acknowledging; only tests and benchmarks turn this off.
    fsync: bool = True
    # Messages up to this size (KiB) are kept in the database row that records them:
    # that commit makes them durable, so no file and no fsyncs of their own (SMTP's
    # group commit covers many messages with one). Larger ones are files in the blob
    # store. 0: every message a file.
    inline_max_kb: Annotated[int, Range(0, 16384)] = 256


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

    @property
    def message_domain(self) -> str:
        """The domain of the Message-IDs we make: the first of own_domains, else the
        support address's."""
        own = self.own_domains
        return own[0] if own else self.support_address.rpartition("@")[2]

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not _ADDRESS_RE.fullmatch(self.support_address):
            wanted = "an address like support@example.com"
            out.append(("support_address", f"expected {wanted}, got {_show(self.support_address)}"))
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,9}", self.ticket_prefix):
            wanted = "1-10 letters and digits, starting with a letter"
            out.append(("ticket_prefix", f"expected {wanted}, got {_show(self.ticket_prefix)}"))
        for i, domain in enumerate(self.own_domains):
            if not _DOMAIN_RE.fullmatch(domain):
                wanted = "a domain like mailtriage.example.com"
                out.append((f"own_domains[{i}]", f"expected {wanted}, got {_show(domain)}"))
        return out


@dataclass(frozen=True)
class WorkerSettings:
    enabled: bool = True
    # Parse in this many processes (0 = one per CPU); 1 parses in the worker itself.
    processes: CountOrZero = 0
    batch_size: Count = 32
    lease_seconds: Seconds = 300.0
    max_attempts: Count = 5
    retry_base_seconds: NonNegative = 5.0
    retry_max_seconds: Seconds = 3600.0
    poll_interval_seconds: Seconds = 0.5
    # Intake first: while mail arrives faster than this (messages a second), the
    # daemon's worker waits between its rounds, leaving the CPU and the database to
    # accepting it, at most flood_pause_seconds in a row; it files the backlog as the
    # flood eases. 0: never wait.
    flood_per_second: NonNegative = 100.0
    flood_pause_seconds: NonNegative = 5.0

    def problems(self) -> list[tuple[str, str]]:
        return _not_above(self, "retry_base_seconds", "retry_max_seconds")


@dataclass(frozen=True)
class TriageSettings:
    # Empty: the packaged default rules (src/mailtriage/rules/default.toml).
    rules_file: str = ""
    default_language: Language = "de"
    # The category model `mailtriage train` writes (extra [ml]); empty:
    # <storage.dir>/model/category.pkl. Used where the rules are weak, when it exists.
    model_file: str = ""
    use_model: bool = True
    # OCR of screenshots with Tesseract (extra [ocr]); missing Tesseract: one log line.
    ocr: bool = True
    ocr_languages: str = "deu+eng"


@dataclass(frozen=True)
class LoggingSettings:
    level: Annotated[str, Choice(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))] = "INFO"
    # "text": readable lines; "json": one JSON object per line (log collectors);
    # "auto": JSON unless stderr is a terminal. ``json = true`` is the older spelling
    # of format = "json".
    format: Literal["text", "json", "auto"] = "text"
    json: bool = False


@dataclass(frozen=True)
class HttpSettings:
    """`mailtriage run`'s HTTP role: /healthz, /readyz, /metrics (issue 13).

    Off unless configured: a fixed default port would clash between two daemons on
    one machine; config.example.toml and the container config turn it on."""

    enabled: bool = False
    host: str = "127.0.0.1"
    # 0 picks a free port (it is logged); tests use that.
    port: PortOrDefault = 8025
    # /readyz fails when the oldest message not yet processed is older than this.
    max_inbox_age_seconds: Seconds = 900.0


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP (or LMTP) listener of `mailtriage run`."""

    enabled: bool = True
    host: str = "127.0.0.1"
    # 0 picks a free port (it is logged); tests use that.
    port: PortOrDefault = 2525
    # Accepted recipients: full addresses (plus-addressed variants match too:
    # support+x@dataandmore.com) or "@domain" for every address of a domain.
    recipients: tuple[str, ...] = ("support@dataandmore.com",)
    # Name in the greeting and the EHLO answer; empty: this machine's FQDN.
    hostname: str = ""
    # Speak LMTP (LHLO, one reply per recipient) for delivery from Postfix/Dovecot.
    lmtp: bool = False
    max_connections: Count = 100
    max_recipients: Count = 100
    # Close a connection idle for this long.
    timeout_seconds: Seconds = 300.0
    # Threads that run the durable accept (fsync + commit) off the event loop.
    accept_threads: Count = 8
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
    port: PortOrDefault = 0
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
    poll_interval_seconds: Seconds = 60.0
    timeout_seconds: Seconds = 60.0


@dataclass(frozen=True)
class ImapSettings:
    enabled: bool = False
    accounts: tuple[ImapAccount, ...] = ()
    # Reconnect after a network error: exponential backoff with jitter.
    reconnect_initial_seconds: Seconds = 1.0
    reconnect_max_seconds: Seconds = 300.0
    # Several instances: one polls a folder at a time, renewing its lease; another takes
    # the folder over this long after the holder died.
    lease_seconds: Seconds = 60.0

    def problems(self) -> list[tuple[str, str]]:
        return _not_above(self, "reconnect_initial_seconds", "reconnect_max_seconds")


@dataclass(frozen=True)
class ServiceSettings:
    # On SIGTERM/SIGINT: stop accepting, finish or release in-flight work, and exit
    # within this many seconds.
    shutdown_grace_seconds: NonNegative = 30.0
    # Run the worker (and its parser processes) at this lower CPU priority (Linux nice,
    # 0-19), so that under load accepting mail (senders wait for our 250) goes first.
    worker_nice: Annotated[int, Range(0, 19)] = 5


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
    relay_port: PortOrDefault = 0
    relay_security: Literal["auto", "none", "starttls", "tls"] = "auto"
    relay_tls_verify: bool = True
    relay_username: str = ""
    relay_password: str = ""
    relay_password_file: str = ""
    relay_timeout_seconds: Seconds = 30.0
    # Without a relay: a Maildir; empty: <storage.dir>/outbox-maildir.
    maildir: str = ""
    # Templates here override the shipped ones (same names, e.g. de/ack.txt).
    templates_dir: str = ""
    poll_interval_seconds: Seconds = 2.0
    batch_size: Count = 20
    lease_seconds: Seconds = 120.0
    # 4xx answers and network errors: retry after retry_base_seconds * 2^(n-1), at most
    # retry_max_seconds, until give_up_after_hours after the mail was queued.
    retry_base_seconds: NonNegative = 30.0
    retry_max_seconds: Seconds = 1800.0
    give_up_after_hours: Positive = 24.0
    # Rate limits: at most N mails per window to one ticket and to one address.
    ticket_limit: Count = 10
    ticket_window_minutes: Positive = 10.0
    address_limit: Count = 30
    address_window_minutes: Positive = 60.0
    # A permanent bounce of our mail stops mail to that address for this many days.
    suppress_days: NonNegative = 30.0

    def problems(self) -> list[tuple[str, str]]:
        out = _not_above(self, "retry_base_seconds", "retry_max_seconds")
        if self.envelope_sender and not _ADDRESS_RE.fullmatch(self.envelope_sender):
            wanted = "an address like bounces@example.com (or empty)"
            out.append(("envelope_sender", f"expected {wanted}, got {_show(self.envelope_sender)}"))
        if self.relay_host != self.relay_host.strip() or " " in self.relay_host:
            out.append(("relay_host", f"expected a host name, got {_show(self.relay_host)}"))
        return out


_PRIORITIES = ("low", "normal", "high", "urgent")
_HOURS_RE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _fractions_problem(values: tuple[float, ...]) -> str | None:
    if any(not 0 < f < 1 for f in values):
        return f"expected numbers between 0 and 1 (exclusive), got {json.dumps(list(values))}"
    return None


@dataclass(frozen=True)
class SlaWorkingHours:
    """``"08:00-18:00"`` per weekday (local time of ``sla.timezone``); ``""``: day off.
    ``"00:00-24:00"``: the whole day."""

    monday: str = "08:00-18:00"
    tuesday: str = "08:00-18:00"
    wednesday: str = "08:00-18:00"
    thursday: str = "08:00-18:00"
    friday: str = "08:00-18:00"
    saturday: str = ""
    sunday: str = ""

    def problems(self) -> list[tuple[str, str]]:
        out = []
        for day in WEEKDAYS:
            value = getattr(self, day)
            if value and parse_hours(value) is None:
                out.append(
                    (day, f'expected "HH:MM-HH:MM" (start before end) or "", got {_show(value)}')
                )
        if not any(getattr(self, day) for day in WEEKDAYS):
            out.append(("monday", "no working hours on any weekday"))
        return out


def parse_hours(value: str) -> tuple[int, int] | None:
    """``"08:00-18:00"`` -> (480, 1080) minutes after midnight; None when malformed."""
    match = _HOURS_RE.fullmatch(value.strip())
    if not match:
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60 or end <= start:
        return None
    return start, end


@dataclass(frozen=True)
class SlaPolicySettings:
    """One ``[[sla.policies]]`` entry: targets for some priorities (and optionally some
    organisations); a key left out takes the value of ``[sla]``."""

    name: str = ""
    # Ticket priorities it applies to (low, normal, high, urgent); empty: any.
    priorities: tuple[str, ...] = ()
    # Organisation (sender) domains it applies to; empty: any. A policy naming the
    # ticket's domain wins over one that names none.
    domains: tuple[str, ...] = ()
    response_hours: NonNegative | None = None
    next_update_hours: NonNegative | None = None
    solution_hours: NonNegative | None = None
    business_time: bool | None = None
    warn_at: tuple[float, ...] | None = None
    escalate_after_days: CountOrZero | None = None
    reminder_days: NonNegative | None = None
    auto_close_days: NonNegative | None = None

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not self.name.strip():
            out.append(("name", "required (named in events and notices)"))
        for i, priority in enumerate(self.priorities):
            if priority not in _PRIORITIES:
                shown = ", ".join(_PRIORITIES)
                out.append((f"priorities[{i}]", f"expected one of {shown}, got {_show(priority)}"))
        if self.warn_at is not None and (problem := _fractions_problem(self.warn_at)):
            out.append(("warn_at", problem))
        return out


@dataclass(frozen=True)
class SlaSettings:
    """SLA clocks: the targets of the fallback policy, the business calendar, the jobs."""

    # The first answer promised to every customer, in hours (business hours when
    # business_time); the acknowledgement gives the due time.
    response_hours: Positive = 24.0
    # Time zone of the business calendar, and of due times in mail when the customer's
    # Date header has no usable offset.
    timezone: str = "Europe/Berlin"
    # Hours after a customer's reply within which an agent answers it (0: no target).
    next_update_hours: NonNegative = 24.0
    # Hours from creation to resolved (0: no target).
    solution_hours: NonNegative = 0.0
    # The targets count business time (working hours, no holidays); false: calendar time.
    business_time: bool = True
    # Warn the agents when these fractions of a target have passed.
    warn_at: tuple[float, ...] = (0.5, 0.8)
    # An L1 ticket not resolved after this many business days goes to L2 (0: never).
    escalate_after_days: CountOrZero = 2
    # A ticket waiting for the customer this many days gets a reminder, and is closed
    # auto_close_days after the reminder (0: no reminder / never closed).
    reminder_days: NonNegative = 3.0
    auto_close_days: NonNegative = 4.0
    working_hours: SlaWorkingHours = field(default_factory=SlaWorkingHours)
    # Public holidays of this country and state ("DE", "BY"; "" country: none).
    holidays_country: str = "DE"
    holidays_subdiv: str = "BY"
    # More days off, "YYYY-MM-DD".
    extra_holidays: tuple[str, ...] = ()
    # Breach notices go here ("" : no breach mail; the event is written anyway).
    team_lead_address: str = ""
    # Run the SLA jobs in `mailtriage run`, every this many seconds.
    jobs_enabled: bool = True
    job_interval_seconds: Seconds = 60.0
    batch_size: Count = 100
    policies: tuple[SlaPolicySettings, ...] = (
        SlaPolicySettings(name="high", priorities=("high", "urgent"), escalate_after_days=1),
    )

    def problems(self) -> list[tuple[str, str]]:
        from datetime import date
        from zoneinfo import ZoneInfo

        out = []
        try:
            ZoneInfo(self.timezone)
        except (ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            wanted = "a time zone name like Europe/Berlin"
            out.append(("timezone", f"not {wanted}: {_show(self.timezone)}"))
        except KeyError:
            out.append(("timezone", f"unknown time zone {_show(self.timezone)} (tzdata?)"))
        if problem := _fractions_problem(self.warn_at):
            out.append(("warn_at", problem))
        for i, value in enumerate(self.extra_holidays):
            try:
                date.fromisoformat(value)
            except ValueError:
                out.append((f"extra_holidays[{i}]", f"expected YYYY-MM-DD, got {_show(value)}"))
        if self.holidays_country:
            from mailtriage.holiday_cache import region_problem

            if region := region_problem(self.holidays_country, self.holidays_subdiv):
                out.append(region)
        lead = self.team_lead_address
        if lead and not _ADDRESS_RE.fullmatch(lead):
            out.append(
                (
                    "team_lead_address",
                    f"expected an address like lead@example.com, got {_show(lead)}",
                )
            )
        return out


@dataclass(frozen=True)
class KbSettings:
    # Knowledge-base index (TOML); empty: acknowledgements point to no articles.
    index_file: str = ""
    max_articles: CountOrZero = 3
    # An article needs at least this score to be suggested (see kb/index.example.toml).
    min_score: NonNegative = 3.0


_DOMAIN_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}")
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
    reopen_days: NonNegative = 14.0
    # Anyone from the requester's organisation (mail domain, not a freemail domain)
    # counts as a participant of the requester's tickets.
    organisation_participants: bool = False
    # At most this many new tickets per sender address within the window (0: no cap).
    # Over it, the mail is kept as an article on that address's latest ticket, without
    # an acknowledgement (a mail robot that answers every mail cannot open ticket after
    # ticket, nor get answer after answer).
    new_tickets_per_address: CountOrZero = 20
    new_tickets_window_minutes: Positive = 60.0


@dataclass(frozen=True)
class RetentionSettings:
    # `mailtriage purge` deletes the raw messages and attachments of tickets closed and
    # untouched for this many days (the ticket, its text and events stay); 0: never.
    purge_closed_after_days: CountOrZero = 0


@dataclass(frozen=True)
class PortalOrganisation:
    """A large customer (``[[portal.organisations]]``): the addresses that may see all
    tickets of the organisation with this mail domain."""

    domain: str = ""
    addresses: tuple[str, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if not re.fullmatch(r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}", self.domain):
            out.append(("domain", f"expected a lower-case mail domain, got {_show(self.domain)}"))
        if not self.addresses:
            out.append(("addresses", "at least one address that may sign in"))
        for i, address in enumerate(self.addresses):
            if not _ADDRESS_RE.fullmatch(address):
                out.append((f"addresses[{i}]", f"expected an address, got {_show(address)}"))
        return out


@dataclass(frozen=True)
class PortalSettings:
    """The customer pages: ticket pages reached by signed links, the organisation view
    for large customers, and feedback."""

    enabled: bool = True
    # How customers reach the HTTP role, e.g. "https://support.dataandmore.com"; empty:
    # http://<http.host>:<http.port> (right for a local test, not behind a proxy).
    base_url: str = ""
    # A ticket link in a mail stays valid this long.
    link_days: Positive = 180.0
    # A sign-in link of the organisation view stays valid this long.
    signin_link_minutes: Positive = 30.0
    # Sign-in mails per address, and requests per client address, per hour.
    signin_per_address_per_hour: Count = 3
    signin_per_client_per_hour: Count = 20
    # Ask for feedback when a ticket is resolved; the answer may be changed this long.
    feedback: bool = True
    feedback_change_days: Positive = 14.0
    organisations: tuple[PortalOrganisation, ...] = ()

    def admins(self, domain: str | None) -> frozenset[str]:
        """The addresses (lower-cased) that may see every ticket of ``domain``."""
        return next(
            (frozenset(a.lower() for a in o.addresses) for o in self.organisations
             if o.domain == domain),
            frozenset(),
        )  # fmt: skip

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.base_url and not re.fullmatch(r"https?://[^\s/?#]+(?:/[^\s?#]*)?", self.base_url):
            out.append(("base_url", f"expected http(s)://host[/path], got {_show(self.base_url)}"))
        seen: dict[str, int] = {}
        for i, org in enumerate(self.organisations):
            if org.domain in seen:
                out.append(
                    (
                        f"organisations[{i}].domain",
                        f"{org.domain} is organisations[{seen[org.domain]}] already",
                    )
                )
            seen.setdefault(org.domain, i)
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
    http: HttpSettings = field(default_factory=HttpSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    kb: KbSettings = field(default_factory=KbSettings)
    agents: tuple[AgentSettings, ...] = ()
    security: SecuritySettings = field(default_factory=SecuritySettings)
    conversation: ConversationSettings = field(default_factory=ConversationSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
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
        freemail = {d.lower() for d in self.mail.freemail_domains}
        for i, org in enumerate(self.portal.organisations):
            if org.domain in freemail:  # its "organisation" would be every user of it
                out.append(
                    (
                        f"portal.organisations[{i}].domain",
                        f"{org.domain} is a freemail domain (mail.freemail_domains), "
                        "not an organisation",
                    )
                )
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
    hints = typing.get_type_hints(cls, include_extras=True)
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
    if origin is Annotated:
        base, *checks = typing.get_args(hint)
        value = _convert(base, value, key)
        for check in checks:
            problem = check.problem(value)
            if problem:
                raise ConfigError(f"{key}: {problem}")
        return value
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


def _not_above(section: Any, low: str, high: str) -> list[tuple[str, str]]:
    a, b = getattr(section, low), getattr(section, high)
    if a > b:
        return [(low, f"{_num(a)} is more than {high} ({_num(b)})")]
    return []


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return json.dumps(value, default=str)
