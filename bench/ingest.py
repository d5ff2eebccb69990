"""Import throughput on the shared corpus against mail-parser's parse-only rate; start-up,
large messages and memory.

Usage: python bench/ingest.py [--corpus DIR | --count N --seed S] [--big-mb MB]
                              [--text-mb MB] [--no-one] [--flat N] [--ocr-messages N]

Without --corpus it writes the shared benchmark corpus with
``../shared/bench/make_corpus.py --count 2400 --seed 11`` (610 MB) into a temporary
directory. Then, in one run (machines here are noisy, 2 cores: compare ratios):
  1. parse-only: mailparser.parse_from_bytes over every file, one process, timed once
     before and once after the import; the baseline is the mean of the two;
  2. import: the whole `mailtriage import DIR --json` process into a fresh SQLite
     database and blob store (start-up included), and its counts (`pending` must be 0);
  3. importing one message into a new database (the whole process; --no-one skips it);
  4. peak RSS of importing one --big-mb MB message (a base64 attachment), as a multiple
     of its size (--big-mb 0 skips it);
  5. the time to import one message with a --text-mb MB text/plain body (0 skips it);
  6. with --flat N: the resident memory of an import of N small messages (the process
     and its pool), early against late, to show it stays flat.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import mailparser
from startup import child_environment

ROOT = Path(__file__).resolve().parent.parent
MAKE_CORPUS = ROOT.parent / "shared" / "bench" / "make_corpus.py"


def make_corpus(out: Path, count: int, seed: int, attach_ratio: float | None = None) -> None:
    if not MAKE_CORPUS.exists():
        sys.exit(f"{MAKE_CORPUS}: not found; pass --corpus DIR")
    cmd = [sys.executable, str(MAKE_CORPUS), "--count", str(count), "--seed", str(seed)]
    if attach_ratio is not None:
        cmd += ["--attach-ratio", str(attach_ratio)]
    subprocess.run([*cmd, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)


def parse_only(files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        mailparser.parse_from_bytes(path.read_bytes())
    return time.perf_counter() - start


def _env(work: Path) -> dict[str, str]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "bench.toml"
    config.write_text("[triage]\nocr = false\n", encoding="utf-8")
    # with Python's bytecode cache, as an installed package has it (see bench/startup.py)
    return child_environment(no_bytecode=False) | {
        "MAILTRIAGE_STORAGE_DIR": str(work),
        "MAILTRIAGE_DATABASE_URL": "",
        "MAILTRIAGE_CONFIG": str(config),
    }


def run_import(
    paths: list[Path], work: Path, *, ocr: bool = False, sample_rss: bool = False
) -> tuple[float, dict[str, int], list[int]]:
    """(seconds, counts, RSS samples) of a whole `mailtriage import PATH... --json` process
    into a fresh store."""
    env = _env(work)
    if ocr:
        (work / "bench.toml").write_text("[triage]\nocr = true\n", encoding="utf-8")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtriage", "import", *map(str, paths), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    samples: list[int] = []
    if sample_rss:
        done = threading.Event()
        sampler = threading.Thread(target=_sample, args=(proc.pid, samples, done), daemon=True)
        sampler.start()
    out, _ = proc.communicate()
    elapsed = time.perf_counter() - start
    if sample_rss:
        done.set()
        sampler.join()
    if proc.returncode != 0:
        sys.exit(f"mailtriage import failed with status {proc.returncode}")
    return elapsed, json.loads(out), samples


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS"):
                        total += int(line.split()[1]) * 1024
            with open(f"/proc/{current}/task/{current}/children") as children:
                stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def _sample(pid: int, samples: list[int], done: threading.Event) -> None:
    while not done.wait(0.25):
        samples.append(_tree_rss(pid))


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


def big_text_message(path: Path, megabytes: float) -> int:
    """A text/plain mail of about ``megabytes`` MB: a pasted log below a short request."""
    rng = random.Random(2)
    words = ["ERROR", "export", "timeout", "Server", "Fehler", "job", "retry", "module", "42"]
    lines = ["Hello support, the export fails every night, log below.", ""]
    size = 0
    while size < megabytes * 1024 * 1024:
        line = " ".join(rng.choice(words) for _ in range(12))
        lines.append(line)
        size += len(line) + 1
    msg = EmailMessage()
    msg["From"] = "logs@customer.example"
    msg["To"] = "support@dataandmore.com"
    msg["Subject"] = "Nightly export fails, full log inside"
    msg["Message-ID"] = make_msgid(domain="customer.example")
    msg.set_content("\n".join(lines), cte="8bit")
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
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, "import", str(path), "--json"],
        check=True,
        env=_env(work),
        capture_output=True,
        text=True,
    )
    return int(result.stderr.strip().splitlines()[-1])


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _big(root: Path, megabytes: float) -> None:
    """Peak RSS of importing one large message (a base64 attachment)."""
    big = root / "big.eml"
    big_size = big_message(big, megabytes)
    small = root / "small.eml"
    small.write_bytes(big.read_bytes()[:2000].split(b"\n\n")[0] + b"\n\nhello\n")
    rss = peak_rss_import(big, root / "var-big")
    idle = peak_rss_import(small, root / "var-small")
    print(
        f"peak RSS importing one {big_size / 1024 / 1024:.1f} MB message: "
        f"{rss / 1024 / 1024:.0f} MB = {rss / big_size:.2f}x its size (goal <= 4x); "
        f"a tiny message: {idle / 1024 / 1024:.0f} MB, so the large one adds "
        f"{(rss - idle) / big_size:.2f}x its size"
    )


def _text(root: Path, megabytes: float) -> None:
    """The time to import one message with a large text/plain body."""
    text = root / "text.eml"
    text_size = big_text_message(text, megabytes)
    text_s, text_counts, _ = run_import([text], root / "var-text")
    print(
        f"importing one {text_size / 1024 / 1024:.0f} MB text/plain message: "
        f"{text_s:.1f} s, {_counts(text_counts)} (goal < 10 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a directory of .eml files (default: make one)")
    parser.add_argument("--count", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--big-mb", type=float, default=50.0, help="size of the large message (0: skip)"
    )
    parser.add_argument(
        "--text-mb", type=float, default=30.0, help="size of the text/plain body (0: skip)"
    )
    parser.add_argument(
        "--no-one", action="store_true", help="skip importing one message into a new database"
    )
    parser.add_argument(
        "--flat", type=int, default=0, help="RSS over an import of N small messages (0: skip)"
    )
    parser.add_argument(
        "--ocr-messages", type=int, default=0, help="also time OCR on this many messages"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        root = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            corpus = root / "corpus"
            make_corpus(corpus, args.count, args.seed)
            label = f"make_corpus.py --count {args.count} --seed {args.seed}"
        else:
            label = str(corpus)
        files = sorted(corpus.glob("*.eml"))
        mb = sum(f.stat().st_size for f in files) / 1024 / 1024
        print(f"corpus: {len(files)} messages, {mb:.0f} MB ({label})")

        parse_before = parse_only(files)
        import_s, counts, _ = run_import([corpus], root / "var")
        parse_after = parse_only(files)
        parse_s = (parse_before + parse_after) / 2
        print(
            f"parse-only (mail-parser, 1 process): {len(files) / parse_s:7.1f} msg/s "
            f"({parse_before:.1f} s before, {parse_after:.1f} s after the import)"
        )
        print(
            f"mailtriage import, whole process:    {len(files) / import_s:7.1f} msg/s "
            f"({import_s:.1f} s; {_counts(counts)})"
        )
        print(f"ratio import / parse-only: {parse_s / import_s:.2f}x (goal >= 1.0x)")

        if not args.no_one:
            one = root / "one.eml"
            one.write_bytes(files[0].read_bytes())
            one_s = statistics.median(run_import([one], root / f"var-one-{i}")[0] for i in range(3))
            print(f"importing one message into a new database: {one_s:.2f} s (goal <= 1.0 s)")

        if args.big_mb > 0:
            _big(root, args.big_mb)
        if args.text_mb > 0:
            _text(root, args.text_mb)

        if args.flat:
            flat = root / "flat"
            make_corpus(flat, args.flat, args.seed, attach_ratio=0.0)
            flat_s, flat_counts, samples = run_import([flat], root / "var-flat", sample_rss=True)
            if len(samples) >= 10:
                tenth = len(samples) // 10
                early = max(samples[tenth : 2 * tenth])
                late = max(samples[-tenth:])
                print(
                    f"RSS importing {args.flat} small messages ({flat_s:.0f} s, "
                    f"{_counts(flat_counts)}): {early / 1024 / 1024:.0f} MB at 10-20% "
                    f"of the run, {late / 1024 / 1024:.0f} MB in the last 10% "
                    f"({late / early:.2f}x)"
                )

        if args.ocr_messages:
            sample = files[: args.ocr_messages]
            plain = run_import(sample, root / "var-ocr-off")[0]
            with_ocr = run_import(sample, root / "var-ocr-on", ocr=True)[0]
            print(
                f"OCR on, first {args.ocr_messages} messages: {with_ocr:.1f} s "
                f"against {plain:.1f} s without ({with_ocr / plain:.1f}x)"
            )


if __name__ == "__main__":
    main()
