"""Every classification of labelled directories as JSON lines, to compare two versions.

Usage: python bench/classify_snapshot.py DIR... > snapshot.jsonl

One line per .eml file: the directory name, the file and the classification (labels,
confidence, reasons). Run it before and after a change that must not change results
(e.g. a faster matcher) and compare the outputs with ``diff``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mailtriage.pipeline.classify import classify, input_from_text  # noqa: E402
from mailtriage.pipeline.parse import parse_message  # noqa: E402
from mailtriage.triage.rules_file import load_rules  # noqa: E402


def main(argv: list[str]) -> int:
    rules = load_rules()
    for directory in map(Path, argv):
        for path in sorted(directory.glob("*.eml")):
            msg = parse_message(path.read_bytes())
            names = [a.filename for a in msg.attachments if a.filename]
            inp = input_from_text(msg.subject or "", msg.text or "", names, msg.sender or "")
            row = {"dir": directory.name, "file": path.name} | classify(inp, rules).to_dict()
            print(json.dumps(row, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
