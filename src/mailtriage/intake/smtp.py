"""SMTP/LMTP intake: aiosmtpd owns the protocol, we check recipients and store durably.

The listener runs its own asyncio loop in a thread. Receiving happens on the loop; the
durable accept runs off it: the raw blob is written and fsynced in a thread pool (many
at once), then its row is committed by one committer thread, which puts every row that
arrived meanwhile into the same transaction (group commit: one commit per batch, not
per message, and no writers queueing for SQLite's lock). The reply goes out only after
that commit: ``250 2.0.0 queued as <id>``, or ``451 4.3.0`` when it failed (database or
disk down), so the sending server keeps the message and retries.
We never answer 5xx for our own faults; 5xx is for the sender's (unknown recipient
``550 5.1.1``, too big ``552``, bad commands ``5xx`` from aiosmtpd).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from mailtriage.config import ConfigError, Settings, SmtpSettings
from mailtriage.inbox import Accepted, Inbox, Incoming, Stored
from mailtriage.ops.logs import fields

log = logging.getLogger(__name__)

MB = 1024 * 1024
# aiosmtpd rejects a DATA line longer than this with a permanent 500; real mail
# (HTML without line breaks) can break RFC 5321's 1000 characters, and refusing it
# would lose it. Commands stay limited by aiosmtpd's command_size_limit.
DATA_LINE_LIMIT = 1 * MB

# aiosmtpd's own replies, given enhanced status codes (RFC 3463) where they lack one.
_REWRITES = {
    b"552 Error: Too much mail data": b"552 5.3.4 Message too big for system",
    b"552 Error: message size exceeds fixed maximum message size": (
        b"552 5.3.4 Message size exceeds fixed maximum message size"
    ),
}


# -- recipients (pure) ----------------------------------------------------------------


POSTMASTER = "postmaster"


@dataclass(frozen=True)
class RecipientPolicy:
    """Which envelope recipients we take mail for; everything else is refused.

    ``postmaster@`` every domain we take mail for (and the bare ``<Postmaster>``) is
    accepted too, as RFC 5321 section 4.5.1 requires. Such mail is stored and processed
    like any other: a person's mail becomes a ticket, a bounce or an auto-reply is
    caught by the loop guard; its envelope keeps the postmaster recipient.
    """

    addresses: frozenset[str]
    domains: frozenset[str]

    @classmethod
    def from_config(cls, entries: Iterable[str], key: str = "smtp.recipients") -> RecipientPolicy:
        addresses: set[str] = set()
        domains: set[str] = set()
        for i, entry in enumerate(entries):
            value = entry.strip().lower()
            local, at, domain = value.rpartition("@")
            if not at or not domain or "@" in local:
                raise ConfigError(f"{key}[{i}]: expected an address or @domain, got {entry!r}")
            if local:
                addresses.add(value)
            else:
                domains.add(domain)
        if not addresses and not domains:
            raise ConfigError(f"{key}: no recipients: the listener would refuse every message")
        return cls(frozenset(addresses), frozenset(domains))

    @property
    def our_domains(self) -> frozenset[str]:
        return self.domains | {a.rpartition("@")[2] for a in self.addresses}

    def describe(self) -> str:
        listed = sorted(self.addresses) + sorted(f"@{d}" for d in self.domains)
        return ", ".join(listed) + ", postmaster"

    def allows(self, address: str) -> bool:
        """``support+x@dataandmore.com`` matches ``support@dataandmore.com``;
        an ``@domain`` entry matches every local part of that domain.

        Matching is case-insensitive (every mail system we deliver to treats local
        parts that way). A source route or an address without a domain never matches.
        """
        local, at, domain = address.strip().lower().rpartition("@")
        if not at and domain == POSTMASTER:  # RCPT TO:<Postmaster>, no domain
            return True
        if not at or not local or not domain or ":" in local or "@" in local:
            return False
        if local == POSTMASTER and domain in self.our_domains:
            return True
        if domain in self.domains:
            return True
        base = local.split("+", 1)[0]
        return f"{local}@{domain}" in self.addresses or f"{base}@{domain}" in self.addresses


# -- the aiosmtpd handler -------------------------------------------------------------


class _Gate:
    """State shared by every connection of one listener (touched on the loop only)."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.sessions: set[_IntakeMixin] = set()
        self.busy = 0  # sessions between DATA and its reply
        self.stopping = False
        self.idle: asyncio.Event | None = None  # set when busy drops to 0 while stopping


class IntakeHandler:
    """aiosmtpd hooks: recipient check at RCPT, durable accept at DATA."""

    def __init__(
        self,
        inbox: Inbox,
        policy: RecipientPolicy,
        executor: ThreadPoolExecutor,
        committer: GroupCommitter,
        *,
        max_recipients: int = 100,
        listener: str = "",
        on_accepted: Callable[[Accepted], None] | None = None,
    ) -> None:
        self.inbox = inbox
        self.policy = policy
        self.executor = executor
        self.committer = committer
        self.max_recipients = max_recipients
        self.listener = listener
        self.on_accepted = on_accepted

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler with this hook
        # We read commands as a stream, so pipelining works: say so (RFC 2920). AUTH
        # is not offered: this is an MX-style intake, not a submission server.
        kept = [r for r in responses if not r[4:].startswith("AUTH")]
        kept.insert(1, "250-PIPELINING")
        return kept

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.policy.allows(address):
            # The address may be a customer's (a typo): only at DEBUG.
            log.info("smtp %s: refused a recipient not accepted here", _peer(session))
            log.debug("smtp %s: refused recipient %s", _peer(session), address)
            return f"550 5.1.1 <{address}>: Recipient address rejected: not accepted here"
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        lmtp = isinstance(server, LMTP)
        meta = envelope_record(session, envelope, lmtp=lmtp, listener=self.listener)
        source = f"{'lmtp' if lmtp else 'smtp'}:{meta['client_address']}"
        loop = asyncio.get_running_loop()
        item = Incoming(raw, source, meta)
        self.committer.announce()
        try:
            try:
                if self.inbox.inline(len(raw)):
                    stored = self.inbox.prepare(item)  # a hash: the row takes the bytes
                else:  # a blob file and its fsyncs, off the event loop
                    stored = await loop.run_in_executor(self.executor, self.inbox.prepare, item)
            except BaseException:
                self.committer.withdraw()
                raise
            accepted = await asyncio.wrap_future(self.committer.submit(stored))
        except Exception as exc:  # our fault, whatever it is: the sender must retry
            log.error(
                "smtp %s: could not store a %d byte message: %s: %s",
                _peer(session),
                len(raw),
                type(exc).__name__,
                exc,
            )
            reply = "451 4.3.0 Temporary failure storing the message, please try again later"
            return _per_recipient(reply, envelope, lmtp)
        log.info(
            "smtp %s: %s inbound %d (%d bytes)",
            _peer(session),
            "queued" if accepted.created else "already had",
            accepted.id,
            len(raw),
            extra=fields(inbound_id=accepted.id),
        )
        if self.on_accepted is not None:
            self.on_accepted(accepted)
        return _per_recipient(f"250 2.0.0 queued as {accepted.id}", envelope, lmtp)


def _per_recipient(reply: str, envelope: Envelope, lmtp: bool) -> str:
    """LMTP answers DATA once per accepted recipient (RFC 2033 4.2)."""
    if not lmtp:
        return reply
    return "\r\n".join(reply for _ in envelope.rcpt_tos)


def envelope_record(
    session: Session, envelope: Envelope, *, lmtp: bool = False, listener: str = ""
) -> dict[str, Any]:
    """What the SMTP dialogue told us, stored with the inbound row.

    ``mail_from`` is "" for the null sender ``<>`` (bounces); the worker's loop guard
    reads it as the envelope sender.
    """
    mail_from = envelope.mail_from or ""
    if mail_from == "<>":
        mail_from = ""
    host, port = _split_peer(session.peer)
    return {
        "mail_from": mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "client_address": host,
        "client_port": port,
        "helo": session.host_name or "",
        "protocol": "lmtp" if lmtp else ("esmtp" if session.extended_smtp else "smtp"),
        "tls": session.ssl is not None,
        "mail_options": list(envelope.mail_options),
        "smtputf8": bool(envelope.smtp_utf8),
        "listener": listener,
    }


def _split_peer(peer: Any) -> tuple[str, int | None]:
    if isinstance(peer, tuple | list) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return (str(peer) if peer else "unknown"), None


def _peer(session: Session) -> str:
    host, port = _split_peer(session.peer)
    return f"{host}:{port}" if port is not None else host


class GroupCommitter:
    """Commits inbound rows from one thread, many messages per transaction.

    Sessions ``announce`` a message when they start writing its blob (in parallel,
    each fsync in its own thread) and ``submit`` its row when the blob is durable. The
    committer takes what is queued, and while announced blobs are still being written
    it waits for them up to ``max_wait`` seconds: under load one commit covers many
    messages (a commit costs about as much as the rows in it); idle, a message is
    committed alone at once (``Inbox.record``: the second half of ``accept_many``).
    """

    def __init__(self, inbox: Inbox, max_batch: int = 64, max_wait: float = 0.005) -> None:
        self.inbox = inbox
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._coming = 0  # announced, not yet submitted
        self._queue: queue.SimpleQueue[tuple[Stored, Future[Accepted]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="smtp-commit", daemon=True)
        self._thread.start()

    def announce(self) -> None:
        with self._lock:
            self._coming += 1

    def withdraw(self) -> None:
        """An announced message will not come (its blob could not be written)."""
        with self._lock:
            self._coming -= 1

    def submit(self, item: Stored) -> Future[Accepted]:
        future: Future[Accepted] = Future()
        with self._lock:
            self._coming = max(0, self._coming - 1)
        self._queue.put((item, future))
        return future

    def close(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            more: tuple[Stored, Future[Accepted]] | None = first
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if self._coming <= 0 or remaining <= 0:
                        break
                    try:
                        more = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if more is None:
                    break
                batch.append(more)
            self._commit(batch)
            if more is None:
                return

    def _commit(self, batch: list[tuple[Stored, Future[Accepted]]]) -> None:
        try:
            results = self.inbox.record([item for item, _ in batch])
        except BaseException as exc:  # handed to each waiting session: 451 there
            for _, future in batch:
                _settle(future, exception=exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)  # the same bytes twice: both get the one row


def _settle(
    future: Future[Accepted], result: Accepted | None = None, exception: BaseException | None = None
) -> None:
    """Resolve unless the session gave up waiting (connection gone: no reply owed)."""
    if future.cancelled():
        return
    with contextlib.suppress(InvalidStateError):
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)  # type: ignore[arg-type]


# -- DATA -----------------------------------------------------------------------------


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> bytes | None:
    """Read an SMTP DATA section up to its lone ``.`` line (RFC 5321 4.1.1.4).

    Returns the message with dot-stuffing removed (4.5.2), or None when it was over
    ``limit`` bytes (then it is read to its end and dropped, so the session goes on).
    """
    parts: list[bytes] = []
    size = 0
    tail = b"\r\n"  # the two bytes before the next chunk: DATA starts at a line start
    while True:
        try:
            chunk = await reader.readuntil(b".\r\n")
            last = True
        except asyncio.LimitOverrunError as exc:  # no ".\r\n" within the reader's limit
            chunk = await reader.readexactly(exc.consumed)
            last = False
        body = chunk[:-3] if last else chunk
        # ".\r\n" ends DATA only as a line of its own: right after a CRLF
        done = last and (tail + body)[-2:] == b"\r\n"
        size += len(chunk)
        if limit is None or size <= limit:
            parts.append(body if done else chunk)
        else:
            parts.clear()
        if done:
            break
        tail = (tail + chunk)[-2:]
    if limit is not None and size > limit:
        return None
    return unstuff(b"".join(parts))


def unstuff(data: bytes) -> bytes:
    """Remove the leading dot a sender added to every line starting with one."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", b"\r\n")


# -- the protocol: aiosmtpd plus connection limit and graceful stop -------------------


class _IntakeMixin:
    """Adds to aiosmtpd's SMTP/LMTP: a connection limit, a count of sessions busy in
    DATA (a graceful stop waits for them), and enhanced codes on its canned replies."""

    line_length_limit = DATA_LINE_LIMIT
    gate: _Gate
    _counted: bool = False
    _refused: bool = False
    in_data: bool = False  # receiving or storing a message right now

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = getattr(self, "_original_transport", None) is None and not self._counted
        if first:
            gate = self.gate
            if gate.stopping or len(gate.sessions) >= gate.max_connections:
                self._refused = True
                reason = "shutting down" if gate.stopping else "too many connections"
                log.warning(
                    "smtp: refusing a connection from %s: %s",
                    transport.get_extra_info("peername"),
                    reason,
                )
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(
                    f"421 4.3.2 Service not available ({reason}), try again later\r\n".encode()
                )
                transport.close()
                return
            gate.sessions.add(self)
            self._counted = True
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self.gate.sessions.discard(self)
            self._counted = False
        super().connection_lost(error)  # type: ignore[misc]

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()  # type: ignore[misc]

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        gate = self.gate
        gate.busy += 1
        self.in_data = True
        try:
            await self._data(arg)
        finally:
            self.in_data = False
            gate.busy -= 1
            if gate.stopping:
                if gate.busy == 0 and gate.idle is not None:
                    gate.idle.set()
                await self.goodbye()

    async def _data(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the message in chunks instead of line by line.

        The protocol is unchanged (354, the lone dot, dot-unstuffing, 552 over the size
        limit after reading to the end); reading a 5 KB message takes one or two
        ``readuntil`` calls instead of one per line, which was most of the listener's
        CPU time.
        """
        smtp: Any = self
        if await smtp.check_helo_needed() or await smtp.check_auth_needed("DATA"):
            return
        envelope = smtp.envelope
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        raw = await read_data(smtp._reader, smtp.data_size_limit)
        if raw is None:
            smtp._set_post_data_state()
            await self.push("552 5.3.4 Message too big for system")
            return
        envelope.content = envelope.original_content = raw
        status = await smtp._call_handler_hook("DATA")
        smtp._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def goodbye(self) -> None:
        """421 and close: the client retries later (RFC 5321 3.8)."""
        transport = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError, AssertionError):
            await self.push("421 4.3.2 Service shutting down, try again later")
        transport.close()

    async def push(self, status: str | bytes) -> None:
        raw = status.encode("utf-8") if isinstance(status, str) else status
        await super().push(_REWRITES.get(raw, raw))  # type: ignore[misc]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's MAIL FROM / RCPT TO address parse, remembered: it builds a class
        and runs the email header parser on every command (a sixth of the listener's
        CPU time), and the same few addresses come again and again."""
        head, space, params = arg.partition(" ")
        if space and head != "<>" and head.endswith(">") and '"' not in head and "\\" not in head:
            # "<address> SIZE=5120": the parameters differ from message to message
            address, rest = _parse_address(head, self.local_part_limit)  # type: ignore[attr-defined]
            if address is not None and rest == "":
                return address, params.lstrip()
        return _parse_address(arg, self.local_part_limit)  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=4096)
def _parse_address(arg: str, local_part_limit: int) -> tuple[str | None, str | None]:
    return SMTP._getaddr(_AddressLimits(local_part_limit), arg)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _AddressLimits:
    """What aiosmtpd's address parse reads of its SMTP instance."""

    local_part_limit: int


class IntakeSMTP(_IntakeMixin, SMTP):
    pass


class IntakeLMTP(_IntakeMixin, LMTP):
    pass


# -- the listener ---------------------------------------------------------------------


class SmtpListener:
    """Owns one asyncio loop in a thread with one aiosmtpd server on it.

    ``start()`` returns once the socket is bound (or raises ``OSError``);
    ``stop(grace)`` stops accepting connections, waits up to ``grace`` seconds for
    messages in DATA to be stored and answered, then says 421 to everyone left.
    """

    def __init__(
        self,
        inbox: Inbox,
        settings: Settings,
        *,
        on_accepted: Callable[[Accepted], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config: SmtpSettings = settings.smtp
        self.policy = RecipientPolicy.from_config(self.config.recipients)
        self.tls_context = _tls_context(self.config)
        self.inbox = inbox
        self.on_accepted = on_accepted
        self.executor = ThreadPoolExecutor(
            max_workers=max(1, self.config.accept_threads), thread_name_prefix="smtp-blob"
        )
        self.committer = GroupCommitter(inbox)
        self.loop = asyncio.new_event_loop()
        self.gate = _Gate(self.config.max_connections)
        self.address: tuple[str, int] = (self.config.host, self.config.port)
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        if not log.isEnabledFor(logging.DEBUG):
            # aiosmtpd logs every command at INFO.
            logging.getLogger("mail.log").setLevel(logging.WARNING)

    @property
    def data_size_limit(self) -> int:
        return int(self.settings.storage.max_message_mb * MB)

    def _protocol(self) -> SMTP:
        cls: type[IntakeSMTP] | type[IntakeLMTP] = IntakeLMTP if self.config.lmtp else IntakeSMTP
        handler = IntakeHandler(
            self.inbox,
            self.policy,
            self.executor,
            self.committer,
            max_recipients=self.config.max_recipients,
            listener=f"{self.address[0]}:{self.address[1]}",
            on_accepted=self.on_accepted,
        )
        proto = cls(
            handler,
            data_size_limit=self.data_size_limit,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.config.hostname or None,
            ident="mailtriage ESMTP",
            tls_context=self.tls_context,
            require_starttls=self.config.require_starttls,
            timeout=self.config.timeout_seconds,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
            loop=self.loop,
        )
        proto.gate = self.gate
        return proto

    def start(self) -> tuple[str, int]:
        self._thread = threading.Thread(target=self._run_loop, name="smtp", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        try:
            self.address = future.result(timeout=30)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.executor.shutdown(wait=False)
            self.committer.close(1)
            raise
        kind = "LMTP" if self.config.lmtp else "SMTP"
        tls = " (STARTTLS offered)" if self.tls_context else ""
        log.info(
            "%s listening on %s:%d%s for %s, max %d bytes",
            kind,
            *self.address,
            tls,
            self.policy.describe(),
            self.data_size_limit,
        )
        return self.address

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def _serve(self) -> tuple[str, int]:
        self._server = await self.loop.create_server(
            self._protocol,
            host=self.config.host,
            port=self.config.port,
            reuse_address=True,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, grace: float) -> bool:
        """Stop gracefully; True if every message in DATA was answered within ``grace``."""
        if self._thread is None or not self._thread.is_alive():
            return True
        deadline = time.monotonic() + max(0.0, grace)
        clean = True
        future = asyncio.run_coroutine_threadsafe(self._shutdown(grace), self.loop)
        try:
            clean = future.result(timeout=grace + 5)
        except Exception as exc:  # pragma: no cover - the loop itself is broken
            log.warning("smtp: shutdown did not complete: %s", exc)
            clean = False
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(max(0.1, deadline - time.monotonic()) + 1)
        # A store still running after the grace period finishes in its thread; its
        # sender got no 250 and retries (the raw sha256 makes that a no-op).
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.committer.close(max(0.1, deadline - time.monotonic()))
        log.info("SMTP listener stopped%s", "" if clean else " (grace period expired)")
        return clean

    async def _shutdown(self, grace: float) -> bool:
        gate = self.gate
        gate.stopping = True
        gate.idle = asyncio.Event()
        if self._server is not None:
            self._server.close()  # no new connections
        # Idle sessions (between commands) are told 421 now; busy ones after DATA.
        for session in list(gate.sessions):
            if not session.in_data:
                await session.goodbye()
        clean = True
        if gate.busy:
            try:
                await asyncio.wait_for(gate.idle.wait(), timeout=grace)
            except TimeoutError:
                clean = False
        for session in list(gate.sessions):
            transport = getattr(session, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()
        return clean

    def __enter__(self) -> SmtpListener:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(self.settings.service.shutdown_grace_seconds)


def _tls_context(config: SmtpSettings) -> ssl.SSLContext | None:
    cert, key = config.tls_cert_file, config.tls_key_file
    if not cert and not key:
        if config.require_starttls:
            raise ConfigError(
                "smtp.require_starttls: needs smtp.tls_cert_file and smtp.tls_key_file"
            )
        return None
    if not cert or not key:
        missing = "smtp.tls_key_file" if cert else "smtp.tls_cert_file"
        raise ConfigError(f"{missing}: STARTTLS needs both a certificate and a key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp.tls_cert_file: cannot load {cert} / {key}: {exc}") from None
    return context
