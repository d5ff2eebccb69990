"""Parse + loop guard per message against mail-parser, and the work on very large mail.

Usage: python bench/parse.py DIR [--rounds N] [--big]

DIR: .eml files, e.g. from
  python ../shared/bench/make_corpus.py --count 300 --seed 11 --out /tmp/corpus-300
In one process, round by round: CPU time per message of mailparser.parse_from_bytes
(the baseline) and of parse_message + detect_loop; the best round of each and their
ratio are printed (machines here are noisy: compare the ratio).
--big also times a 30 MB text/plain body (parse, detect_loop, split_body) and, in a
fresh process, the peak RSS of parsing one 50 MB message that is mostly a base64
attachment (the message's share = peak minus the RSS before it was read).
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import mailparser  # noqa: E402

from mailtriage.pipeline.loops import detect_loop  # noqa: E402
from mailtriage.pipeline.parse import ParseLimits, parse_message  # noqa: E402
from mailtriage.pipeline.text import split_body  # noqa: E402

_BIG = ParseLimits(max_message_bytes=128 << 20, max_attachment_bytes=96 << 20)


def _cpu_per_message(raws: list[bytes], ours: bool) -> float:
    start = time.process_time()
    for raw in raws:
        if ours:
            detect_loop(parse_message(raw))
        else:
            mailparser.parse_from_bytes(raw)
    return (time.process_time() - start) / len(raws)


def _big_text() -> None:
    line = "Hallo, das ist eine Zeile mit Text und noch etwas mehr Text darin.\n"
    quoted = "> zitiert: eine alte Zeile aus der Antwort\n"
    body = "".join(quoted if i % 3 else line for i in range(30_000_000 // 55))
    raw = b"From: a@b.example\r\nSubject: log\r\nContent-Type: text/plain\r\n\r\n" + body.encode()
    t0 = time.perf_counter()
    parsed = parse_message(raw, _BIG)
    t1 = time.perf_counter()
    detect_loop(parsed)
    t2 = time.perf_counter()
    split_body(parsed.text)
    t3 = time.perf_counter()
    print(
        f"{len(raw) / 1e6:.0f} MB text/plain: parse {t1 - t0:.2f} s, detect_loop "
        f"{t2 - t1:.2f} s, split_body {t3 - t2:.2f} s"
    )


def _peak_kib() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    fork and exec, so a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _rss_child(path: str) -> None:
    before = _peak_kib()
    raw = Path(path).read_bytes()
    detect_loop(parse_message(raw, _BIG))
    peak = _peak_kib()
    size = len(raw) / 1024
    print(
        f"{size / 1024:.0f} MiB message: peak RSS {peak / 1024:.0f} MiB = "
        f"{peak / size:.1f}x the message; the message adds {(peak - before) / size:.1f}x"
    )


def _big_attachment() -> None:
    data = base64.encodebytes(os.urandom(36 << 20)).replace(b"\n", b"\r\n")
    raw = (
        b"From: a@b.example\r\nSubject: dump\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain"
        b"\r\n\r\nSee the dump.\r\n--b\r\nContent-Type: application/octet-stream; name=d.bin\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--b--\r\n"
    )
    with tempfile.NamedTemporaryFile(suffix=".eml") as f:
        f.write(raw)
        f.flush()
        del raw, data
        subprocess.run([sys.executable, __file__, "--rss-child", f.name], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", nargs="?")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        _rss_child(args.rss_child)
        return 0
    if args.directory:
        raws = [p.read_bytes() for p in sorted(Path(args.directory).glob("*.eml"))]
        if not raws:
            print(f"no .eml files in {args.directory}", file=sys.stderr)
            return 1
        _cpu_per_message(raws[:5], True)  # warm up: imports, regex caches
        _cpu_per_message(raws[:5], False)
        base = min(_cpu_per_message(raws, False) for _ in range(args.rounds))
        ours = min(_cpu_per_message(raws, True) for _ in range(args.rounds))
        print(
            f"{len(raws)} messages: mail-parser {base * 1000:.2f} ms/msg, parse + detect_loop "
            f"{ours * 1000:.2f} ms/msg = {ours / base:.2f}x mail-parser's parse-only cost"
        )
    if args.big:
        _big_text()
        _big_attachment()
    return 0


if __name__ == "__main__":
    sys.exit(main())
