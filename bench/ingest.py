"""Import throughput against mail-parser's parse-only rate, and peak RSS on a 50 MB mail.

Usage: python bench/ingest.py [--messages N] [--seed S] [--big-mb MB]

Generates a seeded corpus of support mails (German and English, ~30% with 50 KB-2 MB
screenshots, replies, HTML), then in one run measures
  1. parse-only: mailparser.parse_from_bytes over every file, one process (the baseline),
  2. import: `mailtriage import DIR` into a fresh SQLite database and blob store,
and prints both rates and their ratio (machines here are noisy: compare ratios).
Finally it imports one message of --big-mb MB in a child process and reports that
process's peak RSS as a multiple of the message size.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import mailparser
from PIL import Image

SUBJECTS = {
    "de": [
        "Anmeldung nicht möglich",
        "Export bricht ab",
        "Fehlermeldung beim Speichern",
        "VPN verbindet nicht",
        "Frage zur Aufbewahrungsfrist",
        "Bericht ist leer",
    ],
    "en": [
        "Cannot log in",
        "Export fails with timeout",
        "Error when saving",
        "SSO login broken since update",
        "Question about retention",
        "Report is empty",
    ],
}
BODIES = {
    "de": (
        "Hallo Support-Team,\n\nseit heute Morgen erhalten wir beim Öffnen des Moduls eine "
        "Fehlermeldung. Betroffen sind etwa {n} Kollegen. Unser Helpdesk hat bereits einen "
        "Neustart versucht.\n\nMit freundlichen Grüßen\n{name}\n"
    ),
    "en": (
        "Hi support,\n\nsince this morning we get an error when opening the module. About "
        "{n} colleagues are affected. Our helpdesk already tried a restart.\n\n"
        "Best regards\n{name}\n"
    ),
}


def screenshot(rng: random.Random, size: int) -> bytes:
    """A PNG of roughly ``size`` bytes (noise does not compress)."""
    pixels = max(64 * 64, size // 3)
    width = int(pixels**0.5)
    height = max(64, pixels // width)
    img = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def generate(directory: Path, count: int, seed: int) -> int:
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sent: list[str] = []
    total = 0
    start = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
    for i in range(count):
        lang = rng.choice(["de", "en"])
        name = rng.choice(["Erika Muster", "John Smith", "Anna Schmidt", "Li Wei"])
        msg = EmailMessage()
        msg["From"] = f"{name} <user{rng.randrange(200)}@customer{rng.randrange(40)}.example>"
        msg["To"] = "support@dataandmore.com"
        subject = rng.choice(SUBJECTS[lang])
        msg["Date"] = format_datetime(start + timedelta(minutes=7 * i))
        mid = make_msgid(idstring=f"b{seed}.{i}", domain="customer.example")
        msg["Message-ID"] = mid
        if sent and rng.random() < 0.25:
            parent = rng.choice(sent)
            msg["In-Reply-To"] = parent
            msg["References"] = parent
            subject = ("AW: " if lang == "de" else "Re: ") + subject
        msg["Subject"] = subject
        body = BODIES[lang].format(n=rng.randrange(2, 400), name=name)
        msg.set_content(body)
        if rng.random() < 0.5:
            html = "<html><body>" + "".join(f"<p>{line}</p>" for line in body.splitlines())
            msg.add_alternative(html + "</body></html>", subtype="html")
        if rng.random() < 0.3:
            data = screenshot(rng, rng.randrange(50_000, 2_000_000))
            msg.add_attachment(data, maintype="image", subtype="png", filename="screenshot.png")
        raw = msg.as_bytes()
        (directory / f"{i:05d}.eml").write_bytes(raw)
        total += len(raw)
        sent.append(mid)
    return total


def parse_only(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        mailparser.parse_from_bytes(path.read_bytes())
    return time.perf_counter() - start


def run_import(directory: Path, work: Path, *, ocr: bool) -> float:
    """Seconds for `mailtriage import DIR` into a fresh store (start-up included)."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "bench.toml"
    config.write_text(f"[triage]\nocr = {str(ocr).lower()}\n", encoding="utf-8")
    env = os.environ | {
        "MAILTRIAGE_STORAGE_DIR": str(work),
        "MAILTRIAGE_DATABASE_URL": "",
        "MAILTRIAGE_CONFIG": str(config),
    }
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mailtriage", "import", str(directory), "--json"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def big_message(path: Path, megabytes: float) -> int:
    msg = EmailMessage()
    msg["From"] = "big@customer.example"
    msg["To"] = "support@dataandmore.com"
    msg["Subject"] = "Large log archive"
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content("Attached is the full log archive.")
    payload = random.Random(1).randbytes(int(megabytes * 1024 * 1024 * 3 / 4))
    msg.add_attachment(payload, maintype="application", subtype="gzip", filename="logs.tar.gz")
    raw = msg.as_bytes()
    path.write_bytes(raw)
    return len(raw)


# Runs `mailtriage import` in a child and prints that process's own peak RSS (VmHWM).
# (ru_maxrss of children also counts what a child inherited before exec.)
_CHILD = """
import sys
from mailtriage.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as status:
    hwm = next(line for line in status if line.startswith("VmHWM"))
print(int(hwm.split()[1]) * 1024, file=sys.stderr)
sys.exit(code)
"""


def peak_rss_import(path: Path, work: Path) -> int:
    """Peak RSS (bytes) of a child `mailtriage import` of one file."""
    env = os.environ | {"MAILTRIAGE_STORAGE_DIR": str(work), "MAILTRIAGE_DATABASE_URL": ""}
    env.pop("MAILTRIAGE_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, "import", str(path), "--json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    return int(result.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--big-mb", type=float, default=50.0)
    parser.add_argument(
        "--ocr-messages", type=int, default=20, help="also time OCR on this many messages (0: skip)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        root = Path(tmp)
        big = root / "big.eml"
        big_size = big_message(big, args.big_mb)
        small = root / "small.eml"
        small.write_bytes(big.read_bytes()[:2000].split(b"\n\n")[0] + b"\n\nhello\n")
        rss = peak_rss_import(big, root / "var-big")
        idle = peak_rss_import(small, root / "var-small")  # the same process, a tiny mail
        corpus = root / "corpus"
        size = generate(corpus, args.messages, args.seed)
        files = sorted(corpus.glob("*.eml"))
        mb = size / 1024 / 1024
        print(f"corpus: {len(files)} messages, {mb:.1f} MB (seed {args.seed})")
        parse_s = parse_only(files)
        # OCR (an optional extra) reads every screenshot with Tesseract, ~0.4 s an image
        # and far more for the noise pictures generated here: measured apart.
        import_s = run_import(corpus, root / "var", ocr=False)
        # Start-up (interpreter, migrations of a new database, pool processes loading
        # the rules and the language model) is paid once per command: measured on a
        # one-message import and reported apart.
        one = root / "one"
        one.mkdir()
        (one / files[0].name).write_bytes(files[0].read_bytes())
        startup_s = run_import(one, root / "var-one", ocr=False)
        print(
            f"parse-only (mail-parser, 1 process): {len(files) / parse_s:8.1f} msg/s "
            f"{mb / parse_s:7.1f} MB/s"
        )
        print(
            f"mailtriage import (incl. start-up):  {len(files) / import_s:8.1f} msg/s "
            f"{mb / import_s:7.1f} MB/s"
        )
        steady_s = max(1e-9, import_s - startup_s)
        print(
            f"mailtriage import, start-up ({startup_s:.1f} s) taken out: "
            f"{len(files) / steady_s:8.1f} msg/s {mb / steady_s:7.1f} MB/s"
        )
        print(
            f"ratio import / parse-only: {parse_s / import_s:.2f}x with start-up, "
            f"{parse_s / steady_s:.2f}x without (goal >= 1.0x, stretch 1.6x)"
        )
        if args.ocr_messages:
            sample = root / "ocr-sample"
            sample.mkdir()
            for path in files[: args.ocr_messages]:
                (sample / path.name).write_bytes(path.read_bytes())
            plain = run_import(sample, root / "var-ocr-off", ocr=False)
            with_ocr = run_import(sample, root / "var-ocr-on", ocr=True)
            print(
                f"OCR on, first {args.ocr_messages} messages: {with_ocr:.1f} s "
                f"against {plain:.1f} s without ({with_ocr / plain:.1f}x)"
            )
        print(
            f"peak RSS importing one {big_size / 1024 / 1024:.1f} MB message: "
            f"{rss / 1024 / 1024:.0f} MB = {rss / big_size:.2f}x its size (goal <= 4x); "
            f"importing a tiny message: {idle / 1024 / 1024:.0f} MB, so the large one "
            f"adds {(rss - idle) / big_size:.2f}x its size"
        )


if __name__ == "__main__":
    main()
