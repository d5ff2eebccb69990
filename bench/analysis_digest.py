"""A stable digest of the full Analysis of every message, to prove a speed-up changes no
result.

Usage:
  python bench/analysis_digest.py --out BEFORE.json PATH...      # with the old code
  python bench/analysis_digest.py --compare BEFORE.json PATH...  # with the new code

PATH: .eml files or directories (searched recursively for *.eml); ``--first N`` takes
only the first N files (sorted) of each directory given. To digest another checkout's
code, put its ``src`` first on PYTHONPATH (this script does not touch sys.path), e.g.
``git archive main | tar -x -C /tmp/main`` and
``PYTHONPATH=/tmp/main/src .venv/bin/python bench/analysis_digest.py --out main.json ...``.

Every field of the ParsedMessage (long texts as sha256, attachments without their bytes
but with their hash), of the loop verdict and of the classification (labels,
confidence, reasons, language) is recorded per file, or the ParseError's message.
``--compare`` prints each file and field that differs and exits 1 if any does. The
settings are the configured ones ($MAILTRIAGE_CONFIG): OCR is on by default, so the
screenshots' text is compared too (600 corpus mails take about 2 minutes; a config with
``[triage] ocr = false`` takes seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from mailtriage.config import load_settings
from mailtriage.pipeline.analyse import Analysis, analyse
from mailtriage.pipeline.parse import ParseError
from mailtriage.runners.analysis import AnalyserSource


def _short(value: Any) -> Any:
    """JSON-able; strings over 200 characters as their length and sha256."""
    if isinstance(value, str):
        if len(value) <= 200:
            return value
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return f"<{len(value)} chars sha256 {digest}>"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes sha256 {hashlib.sha256(value).hexdigest()}>"
    if isinstance(value, tuple | list):
        return [_short(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _short(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _short(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if value is None or isinstance(value, bool | int | float):
        return value
    return repr(value)


def digest(analysis: Analysis) -> dict[str, Any]:
    parsed = analysis.parsed
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(parsed):
        value = getattr(parsed, f.name)
        if f.name == "attachments":
            value = [_short(a.without_data()) for a in value]
        elif f.name == "parts":
            # the loop guard's view: one hash over all of it (it is large), plus a count
            text = json.dumps(_short(value), sort_keys=True, ensure_ascii=False)
            value = f"{len(parsed.parts)} parts sha256 {hashlib.sha256(text.encode()).hexdigest()}"
        fields[f"parsed.{f.name}"] = _short(value)
    fields["loop"] = _short(analysis.loop)
    fields["classification"] = _short(analysis.classification)
    fields["ocr_text"] = _short(analysis.ocr_text)
    return fields


def files_of(paths: list[str], first: int | None) -> list[Path]:
    out: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob("*.eml"))
            out += found[:first] if first else found
        else:
            out.append(path)
    return out


def run(files: list[Path]) -> dict[str, Any]:
    analyser = AnalyserSource(load_settings()).current()
    result: dict[str, Any] = {}
    for path in files:
        try:
            result[str(path)] = digest(analyse(path.read_bytes(), analyser, None))
        except ParseError as exc:
            result[str(path)] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def compare(before: dict[str, Any], after: dict[str, Any]) -> int:
    differences = 0
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None or new is None:
            print(f"{name}: only {'after' if old is None else 'before'}")
            differences += 1
            continue
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differences += 1
                print(f"{name}: {key}\n  before {old.get(key)!r}\n  after  {new.get(key)!r}")
    print(f"{len(after)} messages, {differences} differences", file=sys.stderr)
    return 1 if differences else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--first", type=int, help="only the first N files of each directory")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", help="write the digest to this JSON file")
    group.add_argument("--compare", help="compare with this digest")
    args = ap.parse_args()
    result = run(files_of(args.paths, args.first))
    if args.out:
        Path(args.out).write_text(json.dumps(result, ensure_ascii=False, sort_keys=True, indent=0))
        print(f"{len(result)} messages -> {args.out}", file=sys.stderr)
        return 0
    return compare(json.loads(Path(args.compare).read_text()), result)


if __name__ == "__main__":
    raise SystemExit(main())
