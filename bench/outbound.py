"""CPU per acknowledgement of the outbox sender, next to the email package's bare cost.

Usage: python bench/outbound.py [--corpus DIR] [--count N] [--rounds R] [--profile]
                                [--relay]

Imports the first N messages of the corpus (default: the shared corpus at
/tmp/corpus-2400, ``../shared/bench/make_corpus.py --count 2400 --seed 11``) with
`mailtriage import` into a fresh SQLite database, the way a flood fills the outbox:
each new ticket has its acknowledgement queued. Then, per round, on a fresh copy of
that storage directory, it times ``Sender.flush()`` of the real sender as the daemon
builds it (the app's durable factory; the daemon's default delivery, the Maildir, or
with --relay an aiosmtpd sink on loopback, in its own process) and prints the CPU milliseconds (this
process: user + system) and wall milliseconds per mail sent. The rate limits are
raised in the bench's config so every queued acknowledgement goes out.

The baseline, in the same run: an ``email.message.EmailMessage`` (policy SMTP) with the
same From/To/Subject/Date/Message-ID and text body, serialised with ``bytes()``, for
every mail the sender wrote. The ratio sender / baseline is the figure to compare on
these noisy machines. --profile prints a cProfile of one flush (by own time).
"""

from __future__ import annotations

import argparse
import cProfile
import email
import os
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAILTRIAGE = Path(sys.executable).parent / "mailtriage"

CONFIG = """\
[storage]
dir = "{storage}"
[triage]
ocr = false
[worker]
processes = 1
[outbound]
ticket_limit = 1000000
address_limit = 1000000
{relay}
"""


def prepare(work: Path, files: list[Path], relay: str) -> Path:
    """A config whose storage directory holds the imported tickets and their queued
    acknowledgements (the template every round copies)."""
    config = work / "bench.toml"
    config.write_text(CONFIG.format(storage=work / "var", relay=relay), encoding="utf-8")
    env = os.environ | {"MAILTRIAGE_CONFIG": str(config), "MAILTRIAGE_DATABASE_URL": ""}
    env.pop("MAILTRIAGE_STORAGE_DIR", None)
    listing = work / "files"
    listing.mkdir()
    for f in files:  # import takes paths; one directory of links keeps argv short
        (listing / f.name).symlink_to(f.resolve())
    started = time.perf_counter()
    subprocess.run(
        [str(MAILTRIAGE), "import", "--json", str(listing)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"imported {len(files)} messages in {time.perf_counter() - started:.1f} s", flush=True)
    return config


def one_round(template: Path, config_text: str, profile: bool) -> tuple[int, float, float, Path]:
    """(mails sent, CPU s, wall s, Maildir or sink file) of one flush on a copy."""
    from mailtriage.app import App
    from mailtriage.config import load_settings
    from mailtriage.outbound.mailer import maildir_path
    from mailtriage.outbound.sender import Sender

    work = Path(tempfile.mkdtemp(prefix="mt-outbound-round-"))
    shutil.copytree(template / "var", work / "var")
    config = work / "bench.toml"
    config.write_text(config_text.replace(str(template / "var"), str(work / "var")), "utf-8")
    os.environ["MAILTRIAGE_CONFIG"] = str(config)
    os.environ["MAILTRIAGE_DATABASE_URL"] = ""
    settings = load_settings(config)
    with App.from_settings(settings) as app:
        sender = Sender(app.factory, settings)  # as start_outbound builds it
        profiler = cProfile.Profile() if profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        report = sender.flush()
        if profiler is not None:
            profiler.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    if report.sent == 0 or report.total() != report.sent:
        sys.exit(f"flush: {report.to_dict()} (expected every mail sent)")
    return report.sent, cpu, wall, maildir_path(settings)


def baseline(maildir: Path) -> tuple[int, float]:
    """(mails, CPU s) of building the same headers and text with EmailMessage + bytes()."""
    parsed = []
    for path in sorted((maildir / "new").iterdir()):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        body = msg.get_body(("plain",))
        assert body is not None
        parsed.append(
            (
                str(msg["From"]),
                str(msg["To"]),
                str(msg["Subject"]),
                str(msg["Date"]),
                str(msg["Message-ID"]),
                body.get_content(),
            )
        )
    cpu = time.process_time()
    for from_, to, subject, date, message_id, text in parsed:
        m = EmailMessage(policy=policy.SMTP)
        m["From"] = from_
        m["To"] = to
        m["Subject"] = subject
        m["Date"] = date
        m["Message-ID"] = message_id
        m.set_content(text, charset="utf-8")
        bytes(m)
    return len(parsed), time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/corpus-2400"))
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one more flush")
    parser.add_argument("--relay", action="store_true", help="deliver to aiosmtpd on loopback")
    args = parser.parse_args()
    files = sorted(args.corpus.glob("*.eml"))[: args.count]
    if not files:
        sys.exit(f"{args.corpus}: no .eml files (make_corpus.py --count 2400 --seed 11 --out DIR)")
    sink: subprocess.Popen[bytes] | None = None
    relay = ""
    if args.relay:
        # The sink in a process of its own: its CPU is not the sender's.
        with socket.socket() as probe:  # a free port on loopback
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        listen = f"127.0.0.1:{port}"
        sink = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", listen],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        relay = f'relay_host = "127.0.0.1"\nrelay_port = {port}\nrelay_security = "none"'
    template = Path(tempfile.mkdtemp(prefix="mt-outbound-"))
    try:
        config = prepare(template, files, relay)
        config_text = config.read_text("utf-8")
        rounds = []
        for _ in range(args.rounds):
            sent, cpu, wall, maildir = one_round(template, config_text, profile=False)
            base_n, base_cpu = baseline(maildir) if not args.relay else (0, 0.0)
            rounds.append((sent, cpu, wall, base_n, base_cpu))
            shutil.rmtree(maildir.parent.parent, ignore_errors=True)  # the round's copy
        if args.profile:
            _, _, _, maildir = one_round(template, config_text, profile=True)
            shutil.rmtree(maildir.parent.parent, ignore_errors=True)
    finally:
        shutil.rmtree(template, ignore_errors=True)
        if sink is not None:
            sink.terminate()
            sink.wait()
    sent = rounds[0][0]
    cpu_ms = [r[1] / r[0] * 1000 for r in rounds]
    wall_ms = [r[2] / r[0] * 1000 for r in rounds]
    print(
        f"{sent} acknowledgements via {'relay (aiosmtpd sink)' if args.relay else 'Maildir'}, "
        f"median of {args.rounds} rounds: sender {statistics.median(cpu_ms):.2f} CPU ms/mail, "
        f"{statistics.median(wall_ms):.2f} wall ms/mail "
        f"(rounds CPU: {', '.join(f'{x:.2f}' for x in cpu_ms)})"
    )
    if not args.relay:
        base_ms = [r[4] / r[3] * 1000 for r in rounds]
        base = statistics.median(base_ms)
        print(
            f"baseline EmailMessage + bytes() of the same headers and text: {base:.2f} CPU "
            f"ms/mail; sender / baseline = {statistics.median(cpu_ms) / base:.2f}x"
        )


if __name__ == "__main__":
    main()
