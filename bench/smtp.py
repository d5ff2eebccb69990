"""SMTP intake throughput of `mailtriage run` next to a bare aiosmtpd server, and latency.

Usage: python bench/smtp.py [--clients N] [--small-count N] [--large-count N] [--rounds N]
                            [--rate R] [--seconds S] [--database-url URL] [--no-worker]

In one run, on loopback, one server at a time:
  1. a bare aiosmtpd server (its own process) that writes each message to a file,
     fsyncs it (in a thread pool) and answers 250: the baseline;
  2. `mailtriage run` (its own process; SMTP + worker as `make run` starts it, on a
     fresh SQLite database unless --database-url is given);
both fed by N client processes that each keep one SMTP connection and send 5 KB, then
1 MB messages. It prints the median messages/s of each server and the ratio (machines
here are noisy: compare ratios). Then it sends at a steady --rate msg/s to `mailtriage
run` and reports the p50/p95/max time from the 250 reply to the ticket's commit
(inbound.processed_at, written in the same transaction as the ticket).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import random
import re
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

SUPPORT = "support@dataandmore.com"
ROOT = Path(__file__).resolve().parent.parent


# -- messages -------------------------------------------------------------------------


def message(size: int, n: int, tag: str) -> bytes:
    """A support mail of about ``size`` bytes (text body; unique per tag and n)."""
    msg = EmailMessage()
    msg["From"] = f"Kunde {n} <kunde{n % 97}@firma{n % 13}.example>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"{tag} {n}: Export bricht mit Timeout ab"
    msg["Message-ID"] = make_msgid(idstring=f"{tag}.{n}", domain="firma.example")
    msg.set_content(f"Hallo Support, Nachricht {tag} {n}.\n\n{_filler(size)}\nGruss\n")
    return msg.as_bytes().replace(b"\n", b"\r\n")


@functools.cache
def _filler(size: int) -> str:
    rng = random.Random(size)
    words = ["Export", "Fehler", "Server", "Timeout", "Bericht", "bitte", "heute", "Modul"]
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(11))
        lines.append(line)
        total += len(line) + 2
    return "\n".join(lines)


# -- the bare baseline server ---------------------------------------------------------


def bare_server(directory: str) -> None:
    """aiosmtpd: write + fsync each message in a thread, answer 250. Prints its port."""
    from concurrent.futures import ThreadPoolExecutor

    from aiosmtpd.smtp import SMTP

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    executor = ThreadPoolExecutor(8)
    counter = iter(range(1 << 62))

    def store(data: bytes) -> None:
        path = out / f"{os.getpid()}-{next(counter)}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
            data = envelope.original_content  # type: ignore[attr-defined]
            await asyncio.get_running_loop().run_in_executor(executor, store, data)
            return "250 OK"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                Handler(),
                data_size_limit=64 * 1024 * 1024,
                hostname="bare",
                enable_SMTPUTF8=True,
                loop=loop,
            ),
            host="127.0.0.1",
            port=0,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


# -- load -----------------------------------------------------------------------------


def _client(args: tuple[int, int, int, int, str]) -> tuple[int, float, float]:
    """One client: build its messages, then send them over one connection."""
    port, size, count, first, tag = args
    raws = [message(size, n, tag) for n in range(first, first + count)]
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.ehlo("bench.example")
        start = time.time()
        for raw in raws:
            client.sendmail("bench@firma.example", [SUPPORT], raw)
        end = time.time()
    return len(raws), start, end


def throughput(port: int, clients: int, size: int, count: int, tag: str) -> float:
    """messages/s for ``count`` messages spread over ``clients`` processes."""
    per = max(1, count // clients)
    jobs = [(port, size, per, i * per, tag) for i in range(clients)]
    with multiprocessing.get_context("fork").Pool(clients) as pool:
        results = pool.map(_client, jobs)
    sent = sum(r[0] for r in results)
    return sent / (max(r[2] for r in results) - min(r[1] for r in results))


# -- mailtriage run -------------------------------------------------------------------


class Daemon:
    def __init__(
        self, workdir: Path, database_url: str, worker: bool, nice: int | None = None
    ) -> None:
        config = workdir / "bench.toml"
        service = "" if nice is None else f"[service]\nworker_nice = {nice}\n"
        config.write_text(
            f'[database]\nurl = "{database_url}"\n'
            f'[storage]\ndir = "{workdir / "var"}"\n'
            f"[worker]\nenabled = {'true' if worker else 'false'}\n"
            f"[smtp]\nport = 0\nmax_connections = 200\n{service}",
            encoding="utf-8",
        )
        self.log = workdir / "daemon.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mailtriage", "--config", str(config), "run"],
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=ROOT,
            )
        self.config = config
        self.port = self._port()
        if worker:
            # Steady state: the worker and its parser processes loaded (they take a
            # second or two of both cores), not the start-up.
            self._wait_for(r"worker \S+ ready", "the worker did not get ready")

    def _port(self) -> int:
        found = self._wait_for(r"listening on 127\.0\.0\.1:(\d+)", "did not start listening")
        return int(found.group(1))

    def _wait_for(self, pattern: str, failure: str) -> re.Match[str]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"mailtriage run exited:\n{self.log.read_text()}")
            found = re.search(pattern, self.log.read_text())
            if found:
                return found
            time.sleep(0.05)
        raise SystemExit(f"mailtriage run {failure}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def latency(
    port: int, database_url: str, rate: float, seconds: float, tag: str = "steady"
) -> list[float]:
    """Send at a steady ``rate``; seconds from each 250 to its ticket's commit."""
    import sqlalchemy as sa

    total = int(rate * seconds)
    acked: dict[int, float] = {}
    lock = threading.Lock()
    start = time.time() + 0.2

    def sender(offset: int, step: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("steady.example")
            for n in range(offset, total, step):
                delay = start + n / rate - time.time()
                if delay > 0:
                    time.sleep(delay)  # the schedule: message n leaves at start + n/rate
                raw = message(5 * 1024, n, tag)
                client.mail("bench@firma.example")
                client.rcpt(SUPPORT)
                code, reply = client.data(raw)
                when = time.time()
                if code == 250:
                    with lock:
                        acked[int(reply.rsplit(b" ", 1)[1])] = when

    senders = [threading.Thread(target=sender, args=(i, 4)) for i in range(4)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    engine = sa.create_engine(database_url)
    deadline = time.monotonic() + 60
    done: dict[int, datetime] = {}
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, processed_at FROM inbound WHERE status = 'done'")
            ).all()
        done = {int(r[0]): _as_datetime(r[1]) for r in rows if r[1] is not None}
        if set(acked) <= set(done):
            break
        time.sleep(0.2)
    engine.dispose()
    missing = set(acked) - set(done)
    if missing:
        raise SystemExit(f"{len(missing)} accepted messages never became a ticket")
    return sorted(done[i].timestamp() - acked[i] for i in acked)


def _as_datetime(value: object) -> datetime:
    from datetime import UTC

    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12, help="client processes (8-16)")
    parser.add_argument("--small-count", type=int, default=1200, help="5 KB messages")
    parser.add_argument("--large-count", type=int, default=96, help="1 MB messages")
    parser.add_argument("--rate", type=float, default=20.0, help="steady msg/s for latency")
    parser.add_argument("--seconds", type=float, default=15.0, help="latency run length")
    parser.add_argument("--database-url", default="", help="default: fresh SQLite")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="measure intake alone (worker disabled in the daemon)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="measurements per server")
    parser.add_argument(
        "--worker-nice", type=int, default=None, help="service.worker_nice (default: config's)"
    )
    parser.add_argument(
        "--skip-throughput", action="store_true", help="only the latency measurement"
    )
    parser.add_argument("--bare-server", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return

    sizes = [("5 KB", 5 * 1024, args.small_count), ("1 MB", 1024 * 1024, args.large_count)]
    mode = "SMTP only" if args.no_worker else "SMTP + worker"
    kind = (args.database_url or "sqlite").split(":", 1)[0]
    print(
        f"{args.clients} client processes, loopback, {os.cpu_count()} CPUs; "
        f"mailtriage run: {mode}, {kind}; median of {args.rounds} rounds, servers one at a time"
    )
    with tempfile.TemporaryDirectory(prefix="mt-smtp-bench-") as tmp:
        work = Path(tmp)
        runs = iter(range(1 << 30))
        for label, size, count in [] if args.skip_throughput else sizes:
            bare_rates, our_rates, filed_after = [], [], []
            for _ in range(args.rounds):
                bare_rates.append(bare_rate(work / f"run{next(runs)}", args.clients, size, count))
                rate, drained = daemon_rate(
                    work / f"run{next(runs)}", args, args.clients, size, count
                )
                our_rates.append(rate)
                filed_after.append(drained)
            base, ours = statistics.median(bare_rates), statistics.median(our_rates)
            filed = "" if args.no_worker else f"; all filed {max(filed_after):.1f} s after"
            print(
                f"{label:>5}: bare aiosmtpd+fsync {base:8.1f} msg/s | mailtriage run "
                f"{ours:8.1f} msg/s | ratio {ours / base:.2f}x (goal >= 0.8x){filed}"
            )
        latency_dir = work / "latency"
        latency_dir.mkdir()
        db = args.database_url or f"sqlite:///{latency_dir / 'mailtriage.db'}"
        daemon = Daemon(latency_dir, db, worker=True, nice=args.worker_nice)
        try:
            _drain(db)  # a shared database may hold the throughput runs' backlog
            # Warm up (worker start, parser pool, caches), unmeasured: steady state only.
            latency(daemon.port, db, args.rate, 3.0, tag="warm")
            lat = latency(daemon.port, db, args.rate, args.seconds)
        finally:
            daemon.stop()
        print(
            f"250 -> ticket committed at {args.rate:.0f} msg/s ({len(lat)} msgs): "
            f"p50 {statistics.median(lat) * 1000:.0f} ms, "
            f"p95 {percentile(lat, 95) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
        )


def bare_rate(work: Path, clients: int, size: int, count: int) -> float:
    """messages/s of the bare server, started for this run alone."""
    bare = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", str(work)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert bare.stdout is not None
        port = int(bare.stdout.readline())
        return throughput(port, clients, size, count, f"bare-{work.name}")
    finally:
        bare.terminate()
        bare.wait(30)


def daemon_rate(
    work: Path, args: argparse.Namespace, clients: int, size: int, count: int
) -> tuple[float, float]:
    """messages/s of a fresh `mailtriage run` (its own storage and, default, database),
    and the seconds from the last 250 until every message is filed (0 without worker):
    while mail floods in, the worker waits (worker.flood_per_second)."""
    work.mkdir(parents=True)
    db = args.database_url or f"sqlite:///{work / 'mailtriage.db'}"
    daemon = Daemon(work, db, worker=not args.no_worker, nice=args.worker_nice)
    try:
        rate = throughput(daemon.port, clients, size, count, f"mt-{work.name}")
        sent = time.monotonic()
        if args.no_worker:
            return rate, 0.0
        _drain(db)
        return rate, time.monotonic() - sent
    finally:
        daemon.stop()


def _drain(database_url: str, timeout: float = 600) -> None:
    """Wait until the worker has processed everything the throughput runs left."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM inbound WHERE status IN "
                        "('received', 'processing', 'waiting')"
                    )
                ).scalar_one()
            if not left:
                return
            time.sleep(0.05)  # (the time to file everything is printed to 0.1 s)
        sys.exit(f"{left} messages still not filed after {timeout:.0f} s")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
