"""Classification latency per message over a labelled directory, against a baseline.

Usage: python bench/classify.py [DIR] [--rounds N]

DIR defaults to tests/labeled/dev. The .eml files are parsed once (MIME parsing is not
part of classification). Then, in the same process and interleaved round by round:
  1. baseline: email.message_from_bytes on the raw bytes plus one trivial regex scan of
     the parsed subject and body text,
  2. classify: input_from_text (body splitting) + classify (rules, language detection).
Prints median and p95 milliseconds per message for both and their ratio; machines here
are noisy, so compare the ratio across runs rather than the absolute numbers.
The packaged linear model (rules/model.json) is used, as load_rules() gives it.
OCR is off here: the goal (< 5 ms) is without it; Tesseract takes about 0.4 s per
screenshot (OMP_THREAD_LIMIT=1) and runs only in the worker. No corrections model is used.
"""

from __future__ import annotations

import argparse
import email
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mailtriage.pipeline.classify import classify, input_from_text  # noqa: E402
from mailtriage.pipeline.parse import parse_message  # noqa: E402
from mailtriage.triage.rules_file import load_rules  # noqa: E402

_TRIVIAL = re.compile(r"\b(?:passwor\w*|error|fehler\w*|vpn|api)\b", re.IGNORECASE)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", nargs="?", default=str(ROOT / "tests" / "labeled" / "dev"))
    ap.add_argument("--rounds", type=int, default=5, help="passes over the directory (default 5)")
    args = ap.parse_args()

    files = sorted(Path(args.directory).glob("*.eml"))
    if not files:
        print(f"no .eml files in {args.directory}", file=sys.stderr)
        return 1
    raws = [f.read_bytes() for f in files]
    msgs = [parse_message(raw) for raw in raws]
    rules = load_rules()
    # warm up: language model load, regex caches
    for m in msgs[:5]:
        classify(
            input_from_text(m.subject, m.text, [a.filename for a in m.attachments], m.sender), rules
        )

    base: list[float] = []
    ours: list[float] = []
    for _ in range(args.rounds):
        for raw, m in zip(raws, msgs, strict=True):
            t0 = time.perf_counter()
            parsed = email.message_from_bytes(raw)
            _TRIVIAL.findall(str(parsed.get("Subject", "")) + "\n" + m.text)
            t1 = time.perf_counter()
            inp = input_from_text(m.subject, m.text, [a.filename for a in m.attachments], m.sender)
            classify(inp, rules)
            t2 = time.perf_counter()
            base.append((t1 - t0) * 1000)
            ours.append((t2 - t1) * 1000)

    bm, bp = statistics.median(base), _pct(base, 0.95)
    om, op = statistics.median(ours), _pct(ours, 0.95)
    print(f"messages {len(files)} x {args.rounds} rounds")
    print(f"baseline (message_from_bytes + regex scan): median {bm:.3f} ms  p95 {bp:.3f} ms")
    print(f"classify (split + rules + language):        median {om:.3f} ms  p95 {op:.3f} ms")
    print(f"ratio classify/baseline: median {om / bm:.1f}x  p95 {op / bp:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
