"""Delivery: an SMTP relay (host, port, STARTTLS/TLS, auth) or a local Maildir.

``deliver`` returns when the relay accepted the message (``250`` after DATA) or the
file is in the Maildir; otherwise it raises ``DeliveryError`` that says whether trying
again can help: a 4xx answer, a refused connection, a timeout or a TLS problem is
temporary; a 5xx answer to MAIL FROM, RCPT TO or DATA is permanent. A failed login is
treated as temporary: it is our configuration, not the recipient, and the mail should
go out once the password is fixed (until the deadline).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Protocol

from mailtriage.config import ConfigError, OutboundSettings, Settings

__all__ = [
    "DeliveryError",
    "MaildirMailer",
    "Mailer",
    "RelayMailer",
    "classify_smtp_error",
    "mailer_from_settings",
]

ENV_RELAY_PASSWORD = "MAILTRIAGE_RELAY_PASSWORD"
log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code


class Mailer(Protocol):
    #: where mail goes, for the record ("relay mx.example:587", "maildir /var/...")
    via: str
    #: False: a mail is delivered once ``deliver`` returns, also inside ``batch()``
    #: (the relay: the sender records each mail at once). True: inside ``batch()`` a
    #: mail is delivered only after the next ``sync()`` (the Maildir, which a repeated
    #: delivery cannot duplicate: the sender records the batch after one sync).
    synced_per_batch: bool

    def deliver(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        message_id: str,
        cc: Sequence[str] = (),
    ) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Deliveries inside share what they can (a connection, a sync)."""
        ...

    def sync(self) -> None:
        """Make the deliveries of the batch so far durable."""
        ...


def classify_smtp_error(exc: BaseException) -> DeliveryError:
    """Any exception from talking to the relay -> a DeliveryError (pure)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [(code, _text(msg)) for code, msg in exc.recipients.values()]
        code, text = codes[0] if codes else (0, "refused")
        return DeliveryError(f"recipient refused: {code} {text}", permanent=code >= 500, code=code)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError(
            f"relay login failed: {exc.smtp_code} {_text(exc.smtp_error)}",
            permanent=False,
            code=exc.smtp_code,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code = int(exc.smtp_code)
        what = "sender refused" if isinstance(exc, smtplib.SMTPSenderRefused) else "relay said"
        return DeliveryError(
            f"{what}: {code} {_text(exc.smtp_error)}", permanent=500 <= code < 600, code=code
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"relay: {exc}", permanent=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(f"relay disconnected: {exc}", permanent=False)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return DeliveryError(f"relay TLS: {exc}", permanent=False)
    if isinstance(exc, TimeoutError | socket.timeout):
        return DeliveryError("relay timed out", permanent=False)
    if isinstance(exc, OSError):
        return DeliveryError(f"relay unreachable: {exc.strerror or exc}", permanent=False)
    if isinstance(exc, smtplib.SMTPException):
        return DeliveryError(f"relay: {exc}", permanent=False)
    return DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False)


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())[:500]


@dataclass(frozen=True)
class RelayConfig:
    host: str
    port: int
    security: str  # auto | none | starttls | tls
    tls_verify: bool = True
    username: str = ""
    password: str = ""
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, s: OutboundSettings) -> RelayConfig:
        port = s.relay_port or {"tls": 465, "starttls": 587}.get(s.relay_security, 25)
        return cls(
            host=s.relay_host,
            port=port,
            security=s.relay_security,
            tls_verify=s.relay_tls_verify,
            username=s.relay_username,
            password=_password(s) if s.relay_username else "",
            timeout=s.relay_timeout_seconds,
        )


def _password(s: OutboundSettings) -> str:
    if os.environ.get(ENV_RELAY_PASSWORD):
        return os.environ[ENV_RELAY_PASSWORD]
    if s.relay_password_file:
        try:
            lines = Path(s.relay_password_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"outbound.relay_password_file: cannot read {s.relay_password_file}: {exc.strerror}"
            ) from None
        return lines[0].strip() if lines else ""
    return s.relay_password


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RelayMailer:
    """One SMTP connection per message, or per batch inside ``batch()`` (the sender's
    claimed batch: after a flood, hundreds of mails, each one a connection, EHLO and
    TLS handshake otherwise)."""

    synced_per_batch = False

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.via = f"relay {config.host}:{config.port}"
        self._keep = False
        self._kept: smtplib.SMTP | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Deliveries inside share one connection: a kept connection must answer NOOP
        before each mail (else a new one is opened), any error closes it, and it is
        closed with QUIT at the end."""
        self._keep = True
        try:
            yield
        finally:
            self._keep = False
            kept, self._kept = self._kept, None
            if kept is not None:
                with suppress(smtplib.SMTPException, OSError):
                    kept.quit()
                kept.close()

    def sync(self) -> None:
        """Nothing to do: each mail was delivered at its 250."""

    def _connection(self) -> smtplib.SMTP:
        """The kept connection if it still answers, else a new session."""
        kept, self._kept = self._kept, None
        if kept is not None:
            try:
                if kept.noop()[0] == 250:
                    return kept
            except (smtplib.SMTPException, OSError):
                pass
            kept.close()
        return self._session()

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.config.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _session(self) -> smtplib.SMTP:
        """Connected, EHLO'd, encrypted as configured and logged in (use with ``with``)."""
        c = self.config
        smtp: smtplib.SMTP
        if c.security == "tls":
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self._context())
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            smtp.ehlo()
            encrypted = c.security == "tls"
            if c.security == "starttls" or (c.security == "auto" and smtp.has_extn("starttls")):
                smtp.starttls(context=self._context())
                smtp.ehlo()
                encrypted = True
            if c.username:
                if not encrypted and not (c.security == "none" or _is_loopback(c.host)):
                    raise DeliveryError(
                        "refusing to send the relay password without TLS "
                        "(the relay offers no STARTTLS; set outbound.relay_security)",
                        permanent=False,
                    )
                smtp.login(c.username, c.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def check(self) -> str:
        """Connect, (STARTTLS,) log in and quit without sending: what the relay said
        it is, for `mailtriage doctor`. Raises DeliveryError like ``deliver``."""
        try:
            with self._session() as smtp:
                greeting = _text(smtp.ehlo_resp or b"").split(" ")[0]
                tls = " over TLS" if smtp.sock is not None and hasattr(smtp.sock, "cipher") else ""
                login = f", logged in as {self.config.username}" if self.config.username else ""
                return f"{greeting or self.config.host} answered{tls}{login}"
        except Exception as exc:
            raise classify_smtp_error(exc) from exc

    def deliver(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        message_id: str,
        cc: Sequence[str] = (),
    ) -> None:
        """``cc``: more envelope recipients (a relayed reply's participants); when only
        some of them are refused, the mail counts as delivered and the refusal is
        logged (sending again would give the others a second copy)."""
        try:
            smtp = self._connection()
            try:
                refused = smtp.sendmail(sender, [recipient, *cc], message)
            except BaseException:
                smtp.close()  # in whatever state the error left it: never used again
                raise
            if self._keep:
                self._kept = smtp
            else:
                with suppress(smtplib.SMTPException, OSError):
                    smtp.quit()
                smtp.close()
            if recipient in refused:
                raise smtplib.SMTPRecipientsRefused({recipient: refused[recipient]})
            for address, answer in refused.items():
                log.warning("relay refused Cc %s of <%s>: %s", address, message_id, answer)
        except Exception as exc:
            raise classify_smtp_error(exc) from exc


class MaildirMailer:
    """Writes each mail into a Maildir's ``new/`` (tmp, fsync, rename).

    The file name is derived from the Message-ID, so delivering the same mail twice
    (a resend after a crash) leaves one file: the Maildir is exactly-once. That lets
    the sender ``write`` a batch of mails and make their renames durable with one
    ``sync`` of the directory before it records them as sent: a crash before the
    record leaves the rows leased, and sending them again finds or rewrites the same
    files.
    """

    synced_per_batch = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.via = f"maildir {self.path}"
        self._made = False
        self._batching = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Deliveries inside write their files; one ``sync`` makes them durable."""
        self._batching = True
        try:
            yield
        finally:
            self._batching = False

    def file_name(self, message_id: str) -> str:
        return f"{sha256(message_id.encode()).hexdigest()[:32]}.mailtriage"

    def deliver(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        message_id: str,
        cc: Sequence[str] = (),
    ) -> None:
        """One file per Message-ID, durable when this returns (inside ``batch()``: after
        the next ``sync``); ``cc`` changes nothing (the headers name them)."""
        self.write(sender, message, message_id)
        if not self._batching:
            self.sync()

    def write(self, sender: str, message: bytes, message_id: str) -> None:
        """The file, written and fsynced, in ``new/``; its rename is durable after the
        next ``sync``."""
        try:
            if not self._made:
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(parents=True, exist_ok=True)
                self._made = True
            name = self.file_name(message_id)
            if self._has(name):
                return
            tmp = self.path / "tmp" / f"{name}.{os.getpid()}.{time.monotonic_ns()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                # Maildir files use LF line ends (what an MDA writes).
                data = b"Return-Path: <" + sender.encode() + b">\r\n" + message
                view = memoryview(data.replace(b"\r\n", b"\n"))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path / "new" / name)
        except OSError as exc:
            self._made = False  # the directory may have gone: make it again next time
            raise DeliveryError(
                f"maildir {self.path}: {exc.strerror or exc}", permanent=False
            ) from exc

    def _has(self, name: str) -> bool:
        """The file is in ``new/``, or in ``cur/`` (read by a mail client, with flags)."""
        if (self.path / "new" / name).exists():
            return True
        with os.scandir(self.path / "cur") as entries:
            return any(entry.name.split(":")[0] == name for entry in entries)

    def sync(self) -> None:
        """Make the renames into ``new/`` durable (one fsync of the directory)."""
        try:
            dir_fd = os.open(self.path / "new", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise DeliveryError(
                f"maildir {self.path}: {exc.strerror or exc}", permanent=False
            ) from exc


def maildir_path(settings: Settings) -> Path:
    return Path(settings.outbound.maildir or settings.storage_dir / "outbox-maildir")


def mailer_from_settings(settings: Settings) -> Mailer:
    """The relay when ``outbound.relay_host`` is set, else the Maildir."""
    s = settings.outbound
    if s.relay_host.strip():
        return RelayMailer(RelayConfig.from_settings(s))
    return MaildirMailer(maildir_path(settings))
