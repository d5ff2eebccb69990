"""CPU time of pipeline.analyse() per message against mail-parser's parse of the same
bytes, in one process.

Usage: python bench/analyse.py DIR [--count N] [--rounds R] [--profile FILE]

Reads the first N (default 600) .eml files of DIR into memory (e.g. the shared corpus,
``../shared/bench/make_corpus.py --count 2400 --seed 11``), loads the settings and the
Analyser once (OCR off, as ``bench/ingest.py`` imports), then round by round times
``mailparser.parse_from_bytes`` and ``analyse(raw, analyser, None)`` over all of them
and prints the best round of each and their ratio (these machines are noisy: compare
the ratio, and A/B two checkouts alternately; the script does not touch sys.path, so
``PYTHONPATH=/other/checkout/src`` times that code). ``--profile FILE`` writes a
cProfile of one more round of analyse().
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import sys
import time
from pathlib import Path

import mailparser

from mailtriage.config import load_settings
from mailtriage.pipeline.analyse import Analyser, analyse
from mailtriage.pipeline.parse import ParseError
from mailtriage.runners.analysis import AnalyserSource


def _ours(raws: list[bytes], analyser: Analyser) -> float:
    start = time.process_time()
    for raw in raws:
        with contextlib.suppress(ParseError):
            analyse(raw, analyser, None)
    return (time.process_time() - start) / len(raws)


def _theirs(raws: list[bytes]) -> float:
    start = time.process_time()
    for raw in raws:
        mailparser.parse_from_bytes(raw)
    return (time.process_time() - start) / len(raws)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory")
    ap.add_argument("--count", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", help="write a cProfile of one analyse() round here")
    args = ap.parse_args()
    files = sorted(Path(args.directory).glob("*.eml"))[: args.count]
    if not files:
        print(f"no .eml files in {args.directory}", file=sys.stderr)
        return 1
    raws = [p.read_bytes() for p in files]
    settings = load_settings()
    settings = dataclasses.replace(settings, triage=dataclasses.replace(settings.triage, ocr=False))
    analyser = AnalyserSource(settings).current()
    _ours(raws[:20], analyser)  # warm up: language model, regex caches
    _theirs(raws[:20])
    base, ours = [], []
    for _ in range(args.rounds):
        base.append(_theirs(raws))
        ours.append(_ours(raws, analyser))
    b, o = min(base), min(ours)
    print(
        f"{len(raws)} messages: mail-parser {b * 1000:.2f} ms/msg, analyse {o * 1000:.2f} "
        f"ms/msg = {o / b:.2f}x mail-parser's parse"
    )
    if args.profile:
        cProfile.runctx("_ours(raws, analyser)", globals(), locals(), args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
